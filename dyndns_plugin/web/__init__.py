"""
The two HTTP listeners and what they share: L{dyndns_plugin.web.site} mounts
the HTTP update protocols (from L{dyndns_plugin.protocols}) into the public
site, L{dyndns_plugin.web.admin} is the admin API with the status page and
metrics; C{common}, C{base} and C{channel} are the request rules, resource
shape and connection deadlines both use. Mount the update resources in your
own site with L{dyndns_plugin.web.site.build_resources}, or let
L{dyndns_plugin.web.site.build_site} build the whole tree.
"""
