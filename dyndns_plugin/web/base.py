"""
The shape every update resource has: a leaf that accepts GET, POST and
HEAD, runs an async handler, and always answers (a bug gives a plain 500,
never a hung connection or a traceback page).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, resource, server

from dyndns_plugin.model import IPAddress, ValidationError, parse_address
from dyndns_plugin.web.common import finish

log = Logger()


class AsyncResource(resource.Resource):
    """A leaf resource whose C{handle(request)} coroutine writes the answer."""

    isLeaf = True
    allowedMethods = (b"GET", b"POST", b"HEAD")

    async def handle(self, request: server.Request) -> None:  # pragma: no cover
        raise NotImplementedError

    def render_GET(self, request: server.Request) -> Any:
        d = defer.ensureDeferred(self.handle(request))
        d.addErrback(self._crashed, request)
        return server.NOT_DONE_YET

    render_POST = render_GET
    render_HEAD = render_GET

    def _crashed(self, failure: Failure, request: server.Request) -> None:
        log.failure("{resource} failed", failure, resource=type(self).__name__)
        finish(request, b"server error\n", code=http.INTERNAL_SERVER_ERROR)


def parse_address_list(values: list[str], strict: bool) -> tuple[list[IPAddress], bool]:
    """
    Addresses from comma-separated parameter values; C{/len} suffixes (a
    FRITZ!Box sends its IPv6 prefix) are stripped and the first address of
    each family wins. Returns the addresses and whether anything was
    invalid; with C{strict} the first invalid item raises L{ValidationError}.
    """
    found: dict[int, IPAddress] = {}
    invalid = False
    for value in values:
        for item in value.split(","):
            item = item.strip().partition("/")[0]
            if not item:
                continue
            try:
                address = parse_address(item, "ip")
            except ValidationError:
                if strict:
                    raise
                invalid = True
                continue
            found.setdefault(address.version, address)
    return [found[v] for v in sorted(found)], invalid
