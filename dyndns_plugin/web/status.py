"""
The status page: a small HTML document (inline CSS) and its script (vanilla
JavaScript, no build step, nothing from any other origin) that show every
user from C{GET /api/state} in a sortable table, refresh it every two
seconds without a reload, and set a user offline with
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
so it cannot go stale). Data goes into the page through C{textContent}
only, never C{innerHTML}. Both answers are C{Cache-Control: no-store} (the
page and its script never mix versions, and no state lingers in a cache),
C{X-Frame-Options: DENY} (with C{frame-ancestors 'none'}: no clickjacking
of the "Set offline" button) and C{X-Content-Type-Options: nosniff}.
"""

from __future__ import annotations

import base64
import hashlib
import html
from typing import Any

from twisted.web import http, resource, server

from dyndns_plugin.web.common import finish

#: Methods the page answers; anything else gets 405. HEAD is GET without the
#: body (HTTP requires a server that has GET to have HEAD).
ALLOWED = (b"GET", b"HEAD")

#: How often the page asks for the state (milliseconds).
POLL_INTERVAL_MS = 2000

STYLE = """
:root { color-scheme: light dark; --fg: #1d232a; --bg: #fff; --muted: #5b6570;
  --line: #d6dbe0; --head: #f1f3f5; --on: #1a7f37; --off: #9a6700; --never: #57606a;
  --dis: #b42318; --err: #b42318; --focus: #0969da; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6edf3; --bg: #0d1117; --muted: #9198a1; --line: #30363d;
    --head: #161b22; --on: #3fb950; --off: #d29922; --never: #9198a1; --dis: #f85149;
    --err: #f85149; --focus: #4493f8; }
}
* { box-sizing: border-box; }
body { margin: 0; padding: 1.25rem; font: 15px/1.4 system-ui, sans-serif;
  color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: .5rem 1.5rem;
  margin-bottom: 1rem; }
h1 { font-size: 1.35rem; margin: 0; }
#summary { color: var(--muted); }
#indicator { margin: 0 0 0 auto; color: var(--muted); font-variant-numeric: tabular-nums; }
#indicator.error { color: var(--err); font-weight: 600; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid var(--line);
  white-space: nowrap; }
thead th { background: var(--head); font-weight: 600; position: sticky; top: 0; }
th button { all: unset; cursor: pointer; display: inline-flex; gap: .3rem;
  align-items: center; }
th button:focus-visible, td button:focus-visible { outline: 2px solid var(--focus);
  outline-offset: 2px; }
.arrow { display: inline-block; width: 1em; color: var(--muted); }
th[aria-sort] .arrow { color: var(--fg); }
td.address, td[data-col="last_update"] { font-variant-numeric: tabular-nums; }
td.address { font-family: ui-monospace, monospace; font-size: .92em; }
.state { font-weight: 600; }
.state-online { color: var(--on); }
.state-offline { color: var(--off); }
.state-never { color: var(--never); font-weight: 400; }
.state-disabled { color: var(--dis); }
.none { color: var(--muted); }
td button { font: inherit; padding: .15rem .6rem; cursor: pointer; }
td button:disabled { cursor: default; }
#empty { color: var(--muted); }
#message { margin: 0 0 .75rem; }
#message.error { color: var(--err); font-weight: 600; }
@media (max-width: 700px) { th, td { padding: .3rem .35rem; } body { padding: .6rem; } }
"""

SCRIPT = """
(() => {
  "use strict";
  const API = document.querySelector('meta[name="dyndns-api"]').content;
  const POLL_MS = Number(document.querySelector('meta[name="dyndns-poll-ms"]').content);
  const COLUMNS = ["id", "state", "ipv4", "ipv6", "last_update", "method"];
  const STATES = new Set(["online", "offline", "never", "disabled"]);
  const table = document.getElementById("users");
  const tbody = table.tBodies[0];
  const headers = Array.from(table.tHead.querySelectorAll("th[data-key]"));
  const indicator = document.getElementById("indicator");
  const summary = document.getElementById("summary");
  const empty = document.getElementById("empty");
  const message = document.getElementById("message");

  let sortKey = "id";
  let ascending = true;
  let users = [];
  const rows = new Map();
  let issued = 0;
  let shown = 0;
  let lastGood = null;
  let timer = null;

  const pad = (value, width) => String(value).padStart(width, "0");
  const clock = (date) =>
    pad(date.getHours(), 2) + ":" + pad(date.getMinutes(), 2) + ":" + pad(date.getSeconds(), 2);

  function ipv4Key(text) {
    return text.split(".").map((octet) => pad(octet, 3)).join(".");
  }

  function ipv6Key(address) {
    let text = address.toLowerCase();
    const v4 = text.match(/(\\d+)\\.(\\d+)\\.(\\d+)\\.(\\d+)$/);
    if (v4) {
      const n = v4.slice(1).map(Number);
      text = text.slice(0, v4.index) + ((n[0] << 8) | n[1]).toString(16) + ":" +
        ((n[2] << 8) | n[3]).toString(16);
    }
    const double = text.indexOf("::");
    const head = double < 0 ? text : text.slice(0, double);
    const tail = double < 0 ? "" : text.slice(double + 2);
    const first = head ? head.split(":") : [];
    const last = tail ? tail.split(":") : [];
    const middle = double < 0 ? [] : Array(Math.max(0, 8 - first.length - last.length)).fill("0");
    return first.concat(middle, last).map((group) => pad(group, 4)).join(":");
  }

  function sortValue(user, key) {
    const value = user[key];
    if (value === null || value === undefined || value === "") return null;
    if (key === "ipv4") return ipv4Key(String(value));
    if (key === "ipv6") return ipv6Key(String(value));
    if (key === "last_update") {
      const time = Date.parse(value);
      return Number.isNaN(time) ? null : time;
    }
    return String(value);
  }

  function compare(a, b) {
    const x = sortValue(a, sortKey);
    const y = sortValue(b, sortKey);
    let order = 0;
    if (x === null || y === null) {
      order = x === y ? 0 : x === null ? 1 : -1;  // no value: last either way
    } else {
      order = (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
    }
    if (order === 0) order = a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
    return order;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function setIndicator(text, failed) {
    setText(indicator, text);
    indicator.classList.toggle("error", failed);
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      if (body && typeof body.error === "string") return `HTTP ${response.status}: ${body.error}`;
    } catch (e) {
      /* not JSON */
    }
    return `HTTP ${response.status}`;
  }

  function makeRow(id) {
    const tr = document.createElement("tr");
    tr.dataset.user = id;
    const cells = {};
    for (const key of COLUMNS) {
      const cell = document.createElement(key === "id" ? "th" : "td");
      if (key === "id") cell.scope = "row";
      cell.dataset.col = key;
      if (key === "ipv4" || key === "ipv6") cell.className = "address";
      if (key === "last_update") cell.append(document.createElement("time"));
      tr.append(cell);
      cells[key] = cell;
    }
    const action = document.createElement("td");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Set offline";
    button.setAttribute("aria-label", `Set ${id} offline`);
    button.addEventListener("click", () => setOffline(id));
    action.append(button);
    tr.append(action);
    return { tr, cells, button, pending: false, state: null };
  }

  function fillRow(row, user) {
    for (const key of ["id", "ipv4", "ipv6", "method"]) {
      const value = user[key];
      const cell = row.cells[key];
      setText(cell, value === null || value === undefined ? "\\u2014" : String(value));
      cell.classList.toggle("none", value === null || value === undefined);
    }
    const names = Array.isArray(user.names) ? user.names.map(String).join("\\n") : "";
    if (row.cells.id.title !== names) row.cells.id.title = names;
    const state = STATES.has(user.state) ? user.state : "unknown";
    row.state = state;
    const stateCell = row.cells.state;
    setText(stateCell, String(user.state));
    const stateClass = "state state-" + state;
    if (stateCell.className !== stateClass) stateCell.className = stateClass;
    const time = row.cells.last_update.firstChild;
    const iso = typeof user.last_update === "string" ? user.last_update : "";
    const parsed = iso ? new Date(iso) : null;
    if (parsed && !Number.isNaN(parsed.getTime())) {
      time.dateTime = iso;
      time.title = iso;
      setText(time, parsed.toLocaleString());
    } else {
      time.removeAttribute("datetime");
      time.removeAttribute("title");
      setText(time, "\\u2014");
    }
    row.cells.last_update.classList.toggle("none", !iso);
    row.button.disabled = row.pending || state === "offline" || state === "disabled";
  }

  function render() {
    const sorted = users.slice().sort(compare);
    const seen = new Set();
    sorted.forEach((user, index) => {
      let row = rows.get(user.id);
      if (row === undefined) {
        row = makeRow(user.id);
        rows.set(user.id, row);
      }
      fillRow(row, user);
      seen.add(user.id);
      const here = tbody.children[index] || null;
      if (here !== row.tr) tbody.insertBefore(row.tr, here);
    });
    for (const [id, row] of rows) {
      if (!seen.has(id)) {
        row.tr.remove();
        rows.delete(id);
      }
    }
    empty.hidden = users.length !== 0;
    for (const th of headers) {
      const arrow = th.querySelector(".arrow");
      if (th.dataset.key === sortKey) {
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        setText(arrow, ascending ? "\\u25B2" : "\\u25BC");
      } else {
        th.removeAttribute("aria-sort");
        setText(arrow, "");
      }
    }
    const counts = { online: 0, offline: 0, never: 0, disabled: 0 };
    for (const user of users) if (user.state in counts) counts[user.state] += 1;
    setText(summary, `${users.length} user${users.length === 1 ? "" : "s"}: ` +
      `${counts.online} online, ${counts.offline} offline, ` +
      `${counts.never} never updated, ${counts.disabled} disabled`);
  }

  async function refresh() {
    const ticket = ++issued;
    try {
      const response = await fetch(API + "state", {
        credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" },
      });
      if (!response.ok) throw new Error(await errorText(response));
      const data = await response.json();
      if (!data || !Array.isArray(data.users)) throw new Error("unexpected answer");
      if (ticket < shown) return;  // a newer answer is on the page already
      shown = ticket;
      users = data.users.filter((user) => user && typeof user.id === "string");
      render();
      lastGood = new Date();
      setIndicator("updated " + clock(lastGood), false);
      indicator.title = lastGood.toISOString();
    } catch (error) {
      if (ticket < shown) return;
      const since = lastGood === null ? "" : ` (data from ${clock(lastGood)})`;
      setIndicator(`error: ${error.message}${since}`, true);
    }
  }

  async function setOffline(id) {
    const row = rows.get(id);
    if (row === undefined || row.pending) return;
    if (!window.confirm(`Set ${id} offline?\\n\\nIts names will answer the offline address, or nothing.`)) {
      return;
    }
    row.pending = true;
    row.button.disabled = true;
    let failure = null;
    try {
      const response = await fetch(API + "users/" + encodeURIComponent(id) + "/offline", {
        method: "POST",
        credentials: "same-origin",
        cache: "no-store",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: "{}",
      });
      if (!response.ok) failure = await errorText(response);
    } catch (error) {
      failure = error.message;
    }
    row.pending = false;
    message.hidden = false;
    message.classList.toggle("error", failure !== null);
    setText(message, failure === null ? `${id} was set offline` :
      `could not set ${id} offline: ${failure}`);
    await refresh();
  }

  for (const th of headers) {
    th.querySelector("button").addEventListener("click", () => {
      const key = th.dataset.key;
      ascending = key === sortKey ? !ascending : true;
      sortKey = key;
      render();
    });
  }

  async function tick() {
    if (document.hidden) {
      timer = null;  // resumed by visibilitychange
      return;
    }
    await refresh();
    timer = setTimeout(tick, POLL_MS);
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && timer === null) {
      timer = -1;
      tick();
    }
  });

  render();
  timer = -1;
  tick();
})();
"""

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
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    f"style-src {_csp_hash(STYLE)}",
    "connect-src 'self'",
    "img-src data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])

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
                request, b"method not allowed\n", code=http.NOT_ALLOWED,
                headers=[(b"allow", b", ".join(ALLOWED)), *_COMMON_HEADERS],
            )
        else:
            finish(
                request, self.body, content_type=self.content_type,
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
    ) -> None:
        _same_origin_path(api_base, "api_base")
        _same_origin_path(script_url, "script_url")
        if not api_base.endswith("/"):
            raise ValueError("api_base must end with /")
        if poll_interval_ms < 100:
            raise ValueError("poll_interval_ms must be at least 100")
        super().__init__(render_page(api_base, script_url, poll_interval_ms))


class StatusScript(_StaticResource):
    """The status page's script (mount it where L{StatusPage} looks for it)."""

    content_type = b"text/javascript; charset=utf-8"

    def __init__(self) -> None:
        super().__init__(SCRIPT.encode("utf-8"))
