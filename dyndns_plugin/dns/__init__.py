"""
The DNS query path and the wire code around it: the server (C{server}: the
factory and its UDP and TCP protocols), the resolver that answers users'
names from memory (C{resolver}), the static zones (C{zones}), response rate
limiting (C{rrl}) and cookies (C{cookies}); raw-wire helpers (C{wire}), the
strict reader of UPDATE and transfer requests (C{reader}) and TSIG MACs
(C{signing}), which the RFC 2136 protocol and replication use too.
"""
