"""
The update protocols: one module per way a client changes its address, each a
thin adapter onto L{dyndns_plugin.service.DynDNSService} (parse the request,
authenticate, call the service, render the protocol's answer).

 - C{ddns}: the original plug-in's C{<base>ddns} (URL or Basic authentication);
 - C{nic}: Dyn.com's C{/nic/update} ("dyndns2"), what routers speak;
 - C{gnudip}: GnuDIP's shared logic and its TCP protocol; C{gnudip_http}: GnuDIP over HTTP;
 - C{dns_update}: TSIG-signed RFC 2136 UPDATE, with C{tsig_replay} (its replay protection);
 - C{myip}: remote IP detection, which clients ask before they update;
 - C{acme_http}: ACME DNS-01 challenge values by the acme-dns API and lego's
   httpreq API (RFC 2136 sets them through C{dns_update}).

The HTTP ones are Twisted Web resources that L{dyndns_plugin.web.site} mounts;
GnuDIP TCP is a protocol factory; RFC 2136 is handed raw UPDATE messages by
the DNS server (L{dyndns_plugin.dns.server}).
"""
