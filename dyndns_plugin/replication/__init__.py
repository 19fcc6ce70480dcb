"""
Replication to standard secondaries (BIND, NSD, Knot): each zone's published
content, serial and IXFR journal (C{journal}), the publisher that turns
committed user changes into new serials (C{publisher}), AXFR/IXFR
(C{transfer}) and NOTIFY (C{notify}).

It watches the service and writes its serials and journal through the store;
the DNS server hands it zone transfer requests as raw bytes.
"""
