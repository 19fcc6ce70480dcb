"""
HTTP update methods as Twisted Web resources: mount them in your own site
or let L{dyndns_plugin.web.site.build_site} build the whole tree.
"""
