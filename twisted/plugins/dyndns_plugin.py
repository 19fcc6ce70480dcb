"""
twistd plugin: C{twistd dyndns --config FILE}.

The lazy L{ServiceMaker} imports L{dyndns_plugin.tap} only when the plugin is
used, so an import problem in our package never breaks C{twistd --help} for
every other plugin.
"""

from twisted.application.service import ServiceMaker

dyndns = ServiceMaker(
    "DynDNS",
    "dyndns_plugin.tap",
    "A dynamic DNS service: <user>.<suffix> names updated by their owners.",
    "dyndns",
)
