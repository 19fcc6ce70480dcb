"""
The status page: a small HTML document (inline CSS) and its script (vanilla
JavaScript, no build step, nothing from any other origin) that show every
user from C{GET /api/state} in a sortable table, a page of L{PAGE_SIZE}
users at a time in id order (C{?limit=&after=}: First, Previous, Next;
sorting orders the page shown; the totals come with each page), refresh it
every two seconds without a reload, and set a user offline with
C{POST /api/users/<id>/offline} (see the admin API contract).

The admin listener mounts L{StatusPage} at C{/status} and L{StatusScript} at
C{/status.js}, behind its own authentication: the browser sends the Basic
credentials it used for the page with the script and with the page's
same-origin API requests; the page holds no secret of its own.

Why a second resource for the script: the page's C{Content-Security-Policy}
then allows scripts only from our own origin (C{script-src 'self'}, no
C{'unsafe-inline'}), so an injected C{<script>} element or event-handler
attribute cannot run even if some data ever slipped into the markup, and
the policy needs no hash that must track every edit of the script. The
small style sheet stays inline, allowed by its SHA-256 hash (computed here,
so it cannot go stale). Both live as package data, C{static/status.css} and
C{static/status.js}, read once at import. Data goes into the page through C{textContent}
only, never C{innerHTML}. Both answers are C{Cache-Control: no-store} (the
page and its script never mix versions, and no state lingers in a cache),
C{X-Frame-Options: DENY} (with C{frame-ancestors 'none'}: no clickjacking
of the "Set offline" button) and C{X-Content-Type-Options: nosniff}.
"""

from __future__ import annotations

import base64
import hashlib
import html
from importlib import resources
from typing import Any

from twisted.web import http, resource, server

from dyndns_plugin.web.common import finish

#: Methods the page answers; anything else gets 405. HEAD is GET without the
#: body (HTTP requires a server that has GET to have HEAD).
ALLOWED = (b"GET", b"HEAD")

#: How often the page asks for the state (milliseconds).
POLL_INTERVAL_MS = 2000
#: Users per page: the page asks for one page of C{/api/state} at a time
#: (C{?limit=&after=}), never for every user.
PAGE_SIZE = 100


def _static(name: str) -> str:
    """A file of C{static/}, shipped as package data (setup.cfg C{package_data})."""
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


#: The page's style sheet, inlined into the page and allowed by its hash.
STYLE = _static("status.css")

#: The page's script, served by L{StatusScript}.
SCRIPT = _static("status.js")


_HEADERS = (
    ("id", "User"),
    ("state", "State"),
    ("ipv4", "IPv4"),
    ("ipv6", "IPv6"),
    ("last_update", "Last update"),
    ("method", "Method"),
)


def _csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


#: The page's policy: scripts only from our own origin (the page loads
#: exactly one, L{StatusScript}), the inline style sheet only by its hash,
#: requests only to our own origin, nothing else at all: no inline script,
#: no event-handler attribute, no frame, no form, no foreign image or font.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        f"style-src {_csp_hash(STYLE)}",
        "connect-src 'self'",
        "img-src data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

#: Headers of every answer of L{StatusPage} and L{StatusScript}.
_COMMON_HEADERS = (
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


def render_page(
    api_base: str = "/api/",
    script_url: str = "/status.js",
    poll_interval_ms: int = POLL_INTERVAL_MS,
    page_size: int = PAGE_SIZE,
) -> bytes:
    """
    The page as bytes: the API at C{api_base} (a URL ending in C{/}), the
    script (L{StatusScript}) at C{script_url}, same origin both.
    """
    columns = "".join(
        f'<th scope="col" data-key="{key}"><button type="button">{label}'
        '<span class="arrow" aria-hidden="true"></span></button></th>'
        for key, label in _HEADERS
    )
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="dyndns-api" content="{html.escape(api_base, quote=True)}">
<meta name="dyndns-poll-ms" content="{int(poll_interval_ms)}">
<meta name="dyndns-page-size" content="{int(page_size)}">
<link rel="icon" href="data:,">
<title>DynDNS status</title>
<style>{STYLE}</style>
<script src="{html.escape(script_url, quote=True)}" defer></script>
</head>
<body>
<header>
<h1>DynDNS status</h1>
<span id="summary"></span>
<p id="indicator" role="status" aria-live="polite">loading\u2026</p>
</header>
<main>
<p id="message" role="alert" hidden></p>
<noscript><p>This page needs JavaScript to load the state.</p></noscript>
<table id="users">
<caption hidden>Users and the addresses their names resolve to</caption>
<thead><tr>{columns}<th scope="col"><span hidden>Actions</span></th></tr></thead>
<tbody></tbody>
</table>
<p id="empty" hidden>No users.</p>
<nav id="pager" aria-label="Pages of users">
<button type="button" id="first" disabled>First</button>
<button type="button" id="previous" disabled>Previous</button>
<span id="page"></span>
<button type="button" id="next" disabled>Next</button>
</nav>
</main>
</body>
</html>
"""
    return page.encode("utf-8")


def _same_origin_path(url: str, what: str) -> None:
    if not url.startswith("/") or url.startswith("//") or "\\" in url:
        raise ValueError(f"{what} must be an absolute path on this origin, got {url!r}")


class _StaticResource(resource.Resource):
    """A fixed body for C{GET} and C{HEAD}; 405 for anything else."""

    isLeaf = True
    content_type = b"text/plain; charset=utf-8"
    extra_headers: tuple[tuple[bytes, bytes], ...] = ()

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.body = body

    def render(self, request: server.Request) -> Any:
        if request.method not in ALLOWED:
            finish(
                request,
                b"method not allowed\n",
                code=http.NOT_ALLOWED,
                headers=[(b"allow", b", ".join(ALLOWED)), *_COMMON_HEADERS],
            )
        else:
            finish(
                request,
                self.body,
                content_type=self.content_type,
                headers=[*_COMMON_HEADERS, *self.extra_headers],
            )
        return server.NOT_DONE_YET


class StatusPage(_StaticResource):
    """
    The status page. The admin API must be at C{api_base} and
    L{StatusScript} at C{script_url}, on the same origin (the defaults are
    the admin listener's layout: C{/api/...} and C{/status.js}).
    """

    content_type = b"text/html; charset=utf-8"
    extra_headers = ((b"content-security-policy", CONTENT_SECURITY_POLICY.encode("ascii")),)

    def __init__(
        self,
        api_base: str = "/api/",
        script_url: str = "/status.js",
        poll_interval_ms: int = POLL_INTERVAL_MS,
        page_size: int = PAGE_SIZE,
    ) -> None:
        _same_origin_path(api_base, "api_base")
        _same_origin_path(script_url, "script_url")
        if not api_base.endswith("/"):
            raise ValueError("api_base must end with /")
        if poll_interval_ms < 100:
            raise ValueError("poll_interval_ms must be at least 100")
        if not 1 <= page_size <= 10_000:
            raise ValueError("page_size must be 1..10000 (the API's limit)")
        super().__init__(render_page(api_base, script_url, poll_interval_ms, page_size))


class StatusScript(_StaticResource):
    """The status page's script (mount it where L{StatusPage} looks for it)."""

    content_type = b"text/javascript; charset=utf-8"

    def __init__(self) -> None:
        super().__init__(SCRIPT.encode("utf-8"))
