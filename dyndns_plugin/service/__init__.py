"""
The service: every write and read of users' names goes through
L{DynDNSService} (C{core.py}: lifecycle, store polling, the public API).
Its jobs, one module each: C{ordering} (one user's writes in turn, bulk
writes holding all their users), C{writes} (client updates, the change
limit), C{accounts} (admin writes and name policy), C{changes} (registry,
then observers), C{queries} (reads).
"""

from dyndns_plugin.service.changes import Change, Observer
from dyndns_plugin.service.core import DynDNSService

__all__ = ["Change", "DynDNSService", "Observer"]
