"""
Remote IP detection: C{<base>myip} answers the caller's address as plain
text (the original), C{checkip} answers checkip.dyndns.org's exact page,
which ddclient (C{use=web}), inadyn and OpenWrt all parse.
"""

from __future__ import annotations

from typing import Any

from twisted.web import http, resource, server

from dyndns_plugin.web.common import ClientAddressDetector, finish

CHECKIP_PAGE = "<html><head><title>Current IP Check</title></head><body>Current IP Address: {address}</body></html>\r\n"


class _DetectResource(resource.Resource):
    isLeaf = True
    allowedMethods = (b"GET", b"POST", b"HEAD")

    def __init__(self, detector: ClientAddressDetector) -> None:
        super().__init__()
        self.detector = detector

    def body(self, address: str) -> tuple[bytes, bytes]:  # pragma: no cover
        raise NotImplementedError

    def render_GET(self, request: server.Request) -> Any:
        address = self.detector.detect(request)
        if address is None:
            finish(request, b"no client address\n", code=http.BAD_REQUEST)
        else:
            body, content_type = self.body(str(address))
            finish(request, body, content_type)
        return server.NOT_DONE_YET

    render_POST = render_GET
    render_HEAD = render_GET


class MyIPResource(_DetectResource):
    def body(self, address: str) -> tuple[bytes, bytes]:
        return address.encode("ascii"), b"text/plain; charset=utf-8"


class CheckIPResource(_DetectResource):
    def body(self, address: str) -> tuple[bytes, bytes]:
        return CHECKIP_PAGE.format(address=address).encode("ascii"), b"text/html"


class DisabledMethod(resource.Resource):
    """What a switched-off method answers: the original's message, 404."""

    isLeaf = True

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def render(self, request: server.Request) -> Any:
        finish(request, self.text.encode("ascii") + b"\n", code=http.NOT_FOUND)
        return server.NOT_DONE_YET
