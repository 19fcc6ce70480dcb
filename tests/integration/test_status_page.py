"""
The status page in a real browser: a headless Debian Chromium driven by
Playwright (its sync API, in the test's own thread) against a real
C{twistd -n dyndns} with an HTTP update listener and the admin listener on
127.0.0.1, users imported with the C{dyndns} CLI, updates sent through
C{/nic/update}, and every DNS effect checked with a real query over UDP.

What is checked: the table shows what the real update path wrote; clicking
a header sorts (both ways, with C{aria-sort} and the arrow); "Set offline"
asks first (dismissing sends nothing), then takes the user offline and the
DNS answer changes to the offline address; a change made outside the page
appears without a reload; data is only ever text (a hostile state document
runs nothing); the Content-Security-Policy is sent and enforced; a dead
server shows an error and keeps the last table.

Nothing leaves 127.0.0.1: the servers listen there only, Chromium runs with
background networking, component updates, sync and proxies off, and every
request the page makes is routed through a guard that refuses (and
records) any URL outside the admin origin.

C{DYNDNS_SCREENSHOT=1} also saves the page to C{docs/status.png}.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rcode

from dyndns_plugin.document import export_document
from dyndns_plugin.model import User
from dyndns_plugin.passwords import hash_password
from tests.integration.clients import SUFFIX, get_request, http_exchange
from tests.integration.harness import ServerTestCase
from tests.tools import require_tool, unavailable

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCREENSHOT = os.path.join(ROOT, "docs", "status.png")

ADMIN, ADMIN_PW = "admin", "admin-pw"
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "dave": "dave-pw", "erin": "erin-pw"}
ALICE_OFFLINE = "192.0.2.254"

#: Addresses chosen so that sorting as text and as numbers differ
#: (".100" < ".20" as text).
ALICE_V4, BOB_V4, ERIN_V4, DAVE_V4 = "203.0.113.100", "203.0.113.20", "203.0.113.7", "203.0.113.9"
ALICE_V6 = "2001:db8::a"

#: Chromium without anything that talks to the network on its own.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--no-proxy-server",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--no-pings",
]

#: Bound (ms) for anything the page should show after one poll (2 s) or a
#: click; generous for a loaded CI machine.
UI_TIMEOUT_MS = 30_000
#: Bound (ms) for Chromium to start.
LAUNCH_TIMEOUT_MS = 30_000
#: Bound (s) for one DNS query.
DNS_TIMEOUT = 2.0


def require_playwright() -> Any:
    """The C{sync_playwright} entry point, or skip (locally) / fail (in CI)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip package playwright)")
    return sync_playwright


def query_a(port: int, name: str) -> list[str]:
    """The A records 127.0.0.1:C{port} answers for C{name} (over UDP)."""
    query = dns.message.make_query(name, "A")
    query.flags &= ~dns.flags.RD
    reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=DNS_TIMEOUT)
    if reply.rcode() != dns.rcode.NOERROR:
        return [dns.rcode.to_text(reply.rcode())]
    return sorted(rd.address for rrset in reply.answer for rd in rrset if rrset.rdtype == 1)


def write_users(path: str) -> None:
    """
    The users document to import: alice (offline IP, two more names), bob,
    carol (disabled), dave (never updated), erin.
    """
    hashes = {user: hash_password(pw, log2_n=10) for user, pw in PASSWORDS.items()}
    users = [
        User(
            "alice",
            password_hash=hashes["alice"],
            offline_ipv4=ALICE_OFFLINE,
            hostnames=["alice.example.org", "*.alice.example.net"],
        ),
        User("bob", password_hash=hashes["bob"]),
        User("carol", password_hash=hashes["carol"], disabled=True),
        User("dave", password_hash=hashes["dave"]),
        User("erin", password_hash=hashes["erin"]),
    ]
    with open(path, "w") as f:
        json.dump(export_document(users, {}), f)


class StatusPageBrowserTests(ServerTestCase):
    """One server and one browser for the whole story (each step builds on the last)."""

    #: chromium and playwright are asked for in setUp; DNS is asked with dnspython.
    tools = ()

    def setUp(self) -> None:
        self.chromium = require_tool("chromium", "chromium")
        sync_playwright = require_playwright()
        self.server = self.make_server(listeners=("http", "admin"), base_path=None)
        self.server.add_admin(ADMIN, ADMIN_PW, hash_password(ADMIN_PW, log2_n=10))
        users = os.path.join(self.server.directory, "users.json")
        write_users(users)
        self.server.cli("import", users)
        self.server.start()
        self.dns_port, self.http_port = self.server.port, self.server.http_port
        self.origin = f"http://127.0.0.1:{self.server.admin_port}"

        self.playwright = sync_playwright().start()
        self.addCleanup(self.playwright.stop)
        self.browser = self.playwright.chromium.launch(
            executable_path=self.chromium,
            args=CHROMIUM_ARGS,
            headless=True,
            timeout=LAUNCH_TIMEOUT_MS,
        )
        self.addCleanup(self.browser.close)
        self.context = self.browser.new_context(
            http_credentials={"username": ADMIN, "password": ADMIN_PW},
            viewport={"width": 1100, "height": 360},
            locale="en-GB",
            timezone_id="UTC",
        )
        self.addCleanup(self.context.close)
        self.context.set_default_timeout(UI_TIMEOUT_MS)
        # The loopback guard: whatever the page asks for outside the admin
        # origin is refused and recorded (and fails the test in tearDown).
        self.foreign: list[str] = []
        self.context.route(re.compile(r".*"), self._guard)
        self.page = self.context.new_page()
        self.console_errors: list[str] = []
        self.page.on(
            "console",
            lambda m: self.console_errors.append(m.text) if m.type == "error" else None,
        )
        self.page.on("pageerror", lambda e: self.console_errors.append(str(e)))
        self.posts: list[tuple[str, str | None, str | None]] = []
        self.page.on("request", self._record_post)

    def tearDown(self) -> None:
        self.assertEqual(self.foreign, [], "the page asked for something outside 127.0.0.1")

    def _guard(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(self.origin + "/") or url.startswith("data:"):
            route.fallback()
        else:
            self.foreign.append(url)
            route.abort()

    def _record_post(self, request: Any) -> None:
        if request.method == "POST":
            self.posts.append((request.url, request.headers.get("content-type"), request.post_data))

    # -- helpers

    def nic_update(self, user: str, *addresses: str) -> str:
        """An update through the real C{/nic/update} path; its body."""
        response = http_exchange(
            self.http_port,
            get_request(
                f"/nic/update?hostname={user}.{SUFFIX}&myip={','.join(addresses)}",
                user,
                PASSWORDS[user],
            ),
        )
        self.assertEqual(response.status, 200, response.raw)
        return response.body.decode()

    def row_ids(self) -> list[str]:
        return self.page.eval_on_selector_all("#users tbody tr", "rows => rows.map(r => r.dataset.user)")

    def cell(self, user: str, column: str) -> str:
        return self.page.text_content(f'#users tbody tr[data-user="{user}"] [data-col="{column}"]')

    def wait_cell(self, user: str, column: str, text: str) -> None:
        """Wait (bounded) until the page shows C{text} in that cell."""
        self.page.wait_for_function(
            """([user, column, text]) => {
                const cell = document.querySelector(
                    `#users tbody tr[data-user="${user}"] [data-col="${column}"]`);
                return cell !== null && cell.textContent === text;
            }""",
            arg=[user, column, text],
        )

    def click_header(self, key: str) -> None:
        self.page.click(f'#users thead th[data-key="{key}"] button')

    def sort_state(self) -> list[tuple[str, str | None, str]]:
        return self.page.eval_on_selector_all(
            "#users thead th[data-key]",
            """ths => ths.map(th => [th.dataset.key, th.getAttribute("aria-sort"),
                                     th.querySelector(".arrow").textContent])""",
        )

    # -- the story

    def test_status_page(self) -> None:
        page = self.page
        # Updates through the real path before the page is opened.
        self.assertEqual(self.nic_update("alice", ALICE_V4, ALICE_V6), f"good {ALICE_V4},{ALICE_V6}\n")
        self.nic_update("bob", BOB_V4)
        self.nic_update("erin", ERIN_V4)
        self.assertEqual(query_a(self.dns_port, f"alice.{SUFFIX}"), [ALICE_V4])

        response = page.goto(self.origin + "/status")
        self.assertIsNotNone(response)
        self.assertEqual(response.status, 200, "the admin listener must mount StatusPage at /status")
        headers = response.headers
        self.assertEqual(headers["content-type"], "text/html; charset=utf-8")
        self.assertEqual(headers["cache-control"], "no-store")
        self.assertEqual(headers["x-frame-options"], "DENY")
        self.assertIn("default-src 'none'", headers["content-security-policy"])
        self.assertIn("script-src 'self'", headers["content-security-policy"])
        page.evaluate("window.__sameDocument = true")

        # The table shows what the update path wrote, sorted by id.
        self.wait_cell("alice", "ipv4", ALICE_V4)
        self.assertEqual(self.row_ids(), ["alice", "bob", "carol", "dave", "erin"])
        self.assertEqual(self.cell("alice", "state"), "online")
        self.assertEqual(self.cell("alice", "ipv6"), ALICE_V6)
        self.assertEqual(self.cell("alice", "method"), "dyndns2")
        self.assertEqual(self.cell("carol", "state"), "disabled")
        self.assertEqual(self.cell("dave", "state"), "never")
        self.assertEqual(self.cell("dave", "ipv4"), "\u2014")
        state = json.loads(page.evaluate("fetch('/api/state', {credentials: 'same-origin'}).then(r => r.text())"))
        alice = next(u for u in state["users"] if u["id"] == "alice")
        time = page.get_attribute('#users tbody tr[data-user="alice"] time', "datetime")
        self.assertEqual(time, alice["last_update"])
        self.assertTrue(self.cell("alice", "last_update").strip())
        self.assertNotEqual(self.cell("alice", "last_update"), alice["last_update"])
        self.assertRegex(page.text_content("#indicator"), r"^updated \d\d:\d\d:\d\d$")
        self.assertEqual(page.text_content("#summary"), "5 users: 3 online, 0 offline, 1 never updated, 1 disabled")
        self.assertIn(["id", "ascending", "\u25b2"], self.sort_state())
        # Buttons: disabled for a disabled user, enabled otherwise.
        self.assertTrue(page.is_disabled('tr[data-user="carol"] button'))
        self.assertTrue(page.is_enabled('tr[data-user="alice"] button'))

        # Sorting: IPv4 numerically, no address last either way.
        self.click_header("ipv4")
        self.assertEqual(self.row_ids(), ["erin", "bob", "alice", "carol", "dave"])
        self.assertIn(["ipv4", "ascending", "\u25b2"], self.sort_state())
        self.assertIn(["id", None, ""], self.sort_state())
        self.click_header("ipv4")
        self.assertEqual(self.row_ids(), ["alice", "bob", "erin", "carol", "dave"])
        self.assertIn(["ipv4", "descending", "\u25bc"], self.sort_state())
        self.click_header("id")
        self.click_header("id")
        self.assertEqual(self.row_ids(), ["erin", "dave", "carol", "bob", "alice"])
        self.click_header("ipv4")
        self.assertEqual(self.row_ids(), ["erin", "bob", "alice", "carol", "dave"])

        # Live: an update made elsewhere shows up without a reload, and the
        # chosen sort is kept.
        self.nic_update("dave", DAVE_V4)
        self.wait_cell("dave", "state", "online")
        self.assertEqual(self.cell("dave", "ipv4"), DAVE_V4)
        self.assertEqual(self.row_ids(), ["erin", "dave", "bob", "alice", "carol"])
        self.assertTrue(page.evaluate("window.__sameDocument === true"))

        # "Set offline": dismissing the question sends nothing.
        dialogs: list[str] = []

        def dismiss(dialog: Any) -> None:
            dialogs.append(dialog.message)
            dialog.dismiss()

        page.once("dialog", dismiss)
        page.click('tr[data-user="alice"] button')
        self.assertEqual(len(dialogs), 1)
        self.assertIn("alice", dialogs[0])
        page.wait_for_timeout(300)
        self.assertEqual(self.posts, [])
        self.assertEqual(self.cell("alice", "state"), "online")

        # Accepting it takes alice offline: the page and DNS both say so.
        def accept(dialog: Any) -> None:
            dialogs.append(dialog.message)
            dialog.accept()

        page.once("dialog", accept)
        page.click('tr[data-user="alice"] button')
        self.wait_cell("alice", "state", "offline")
        self.assertEqual(len(dialogs), 2)
        self.assertEqual(page.text_content("#message"), "alice was set offline")
        self.assertEqual(
            self.posts,
            [
                (self.origin + "/api/users/alice/offline", "application/json", "{}"),
            ],
        )
        self.assertEqual(self.cell("alice", "ipv4"), ALICE_OFFLINE)
        self.assertEqual(self.cell("alice", "ipv6"), "\u2014")
        self.assertTrue(page.is_disabled('tr[data-user="alice"] button'))
        self.assertEqual(query_a(self.dns_port, f"alice.{SUFFIX}"), [ALICE_OFFLINE])
        self.assertEqual(query_a(self.dns_port, "alice.example.org"), [ALICE_OFFLINE])
        self.assertEqual(page.text_content("#summary"), "5 users: 3 online, 1 offline, 0 never updated, 1 disabled")

        # Back online through the update path: the page follows by itself.
        self.nic_update("alice", "203.0.113.200")
        self.wait_cell("alice", "state", "online")
        self.assertEqual(self.cell("alice", "ipv4"), "203.0.113.200")
        self.assertTrue(page.is_enabled('tr[data-user="alice"] button'))
        self.assertEqual(query_a(self.dns_port, f"alice.{SUFFIX}"), ["203.0.113.200"])

        if os.environ.get("DYNDNS_SCREENSHOT") == "1":
            self.click_header("id")
            self.nic_update("bob", "203.0.113.21")
            self.wait_cell("bob", "ipv4", "203.0.113.21")
            page.once("dialog", lambda d: d.accept())
            page.click('tr[data-user="erin"] button')
            self.wait_cell("erin", "state", "offline")
            os.makedirs(os.path.dirname(SCREENSHOT), exist_ok=True)
            page.screenshot(path=SCREENSHOT, full_page=True)

        # The policy is enforced: an inline script added to the page never runs.
        page.evaluate("""() => {
            const s = document.createElement("script");
            s.textContent = "window.__inline = true";
            document.body.append(s);
        }""")
        self.assertIsNone(page.evaluate("window.__inline === undefined ? null : true"))
        csp = [m for m in self.console_errors if "Content Security Policy" in m]
        self.assertEqual(len(csp), 1, self.console_errors)  # that one script, nothing else
        self.assertEqual([m for m in self.console_errors if m not in csp], [])

        # A server that stops answering: an error shows, the table stays.
        self.server.stop()
        page.wait_for_function("() => document.getElementById('indicator').classList.contains('error')")
        self.assertTrue(page.text_content("#indicator").startswith("error: "))
        self.assertEqual(len(self.row_ids()), 5)
        self.assertTrue(page.evaluate("window.__sameDocument === true"))

    def test_pages_of_users(self) -> None:
        """
        The page asks for one page of 100 users at a time, never for all of
        them, and First, Previous and Next walk the pages in id order, with
        the totals of all users above.
        """
        more = os.path.join(self.server.directory, "more.json")
        with open(more, "w") as f:
            json.dump(export_document([User(f"u{n:03d}") for n in range(250)], {}), f)
        self.server.cli("import", more)
        asked: list[str] = []
        self.page.on("request", lambda r: asked.append(r.url) if "/api/state" in r.url else None)
        self.page.goto(self.origin + "/status")
        page = self.page
        page.wait_for_function("() => document.querySelectorAll('#users tbody tr').length === 100")
        ids = self.row_ids()
        self.assertEqual((ids[:6], ids[-1]), (["alice", "bob", "carol", "dave", "erin", "u000"], "u094"))
        self.assertEqual(page.text_content("#summary"), "255 users: 0 online, 0 offline, 254 never updated, 1 disabled")
        self.assertEqual(page.text_content("#page"), "page 1: users 1\u2013100 of 255, in id order")
        self.assertTrue(page.is_disabled("#first") and page.is_disabled("#previous"))
        page.click("#next")
        page.wait_for_function("() => document.querySelector('#users tbody tr').dataset.user === 'u095'")
        self.assertEqual(self.row_ids(), [f"u{n:03d}" for n in range(95, 195)])
        page.click("#next")
        page.wait_for_function("() => document.querySelector('#users tbody tr').dataset.user === 'u195'")
        self.assertEqual(self.row_ids(), [f"u{n:03d}" for n in range(195, 250)])
        self.assertEqual(page.text_content("#page"), "page 3: users 201\u2013255 of 255, in id order")
        self.assertTrue(page.is_disabled("#next"))
        page.click("#previous")
        page.wait_for_function("() => document.querySelector('#users tbody tr').dataset.user === 'u095'")
        page.click("#first")
        page.wait_for_function("() => document.querySelector('#users tbody tr').dataset.user === 'alice'")
        self.assertTrue(asked)
        self.assertEqual([u for u in asked if "limit=100" not in u], [])  # never the whole state
        self.assertIn(self.origin + "/api/state?limit=100&after=u194", asked)

    def test_data_is_only_text(self) -> None:
        """
        A state document full of markup (as if a field ever carried some)
        is shown as text; nothing in it runs or becomes an element.
        """
        hostile = '<img src=x onerror="window.__pwned=1">'
        document: dict[str, Any] = {
            "users": [
                {
                    "id": hostile,
                    "state": "<b>online</b>",
                    "ipv4": "<i>1</i>",
                    "ipv6": None,
                    "ttl": 60,
                    "last_update": "<script>window.__pwned=2</script>",
                    "method": '<svg onload="window.__pwned=3">',
                    "client_address": None,
                    "names": [hostile],
                }
            ],
            "next": None,
            "counts": {"online": 1, "offline": 0, "never": 0, "disabled": 0},
        }

        def fake_state(route: Any) -> None:
            route.fulfill(status=200, content_type="application/json", body=json.dumps(document))

        self.page.route(re.compile(re.escape(self.origin) + r"/api/state\?limit=100$"), fake_state)
        self.page.goto(self.origin + "/status")
        self.page.wait_for_selector("#users tbody tr")
        self.assertEqual(self.page.text_content("#users tbody [data-col=id]"), hostile)
        self.assertEqual(self.page.text_content("#users tbody [data-col=method]"), document["users"][0]["method"])
        self.assertEqual(self.page.text_content("#users tbody [data-col=last_update]"), "\u2014")
        self.assertEqual(
            self.page.eval_on_selector_all(
                "#users tbody img, #users tbody svg, #users tbody b, #users tbody script", "nodes => nodes.length"
            ),
            0,
        )
        self.assertEqual(self.page.get_attribute("#users tbody tr", "data-user"), hostile)
        # A refused "Set offline" says why (the id is sent encoded).
        offline_urls: list[str] = []

        def refuse(route: Any) -> None:
            offline_urls.append(route.request.url)
            route.fulfill(
                status=409, content_type="application/json", body=json.dumps({"error": "<b>nope</b>", "field": None})
            )

        self.page.route(re.compile(r".*/offline$"), refuse)
        self.page.once("dialog", lambda dialog: dialog.accept())
        self.page.click("#users tbody button")
        self.page.wait_for_selector("#message.error")
        self.assertEqual(self.page.text_content("#message"), f"could not set {hostile} offline: HTTP 409: <b>nope</b>")
        self.assertEqual(
            offline_urls,
            [
                self.origin + "/api/users/%3Cimg%20src%3Dx%20onerror%3D%22window.__pwned%3D1%22%3E/offline",
            ],
        )
        self.page.wait_for_timeout(300)
        self.assertIsNone(self.page.evaluate("window.__pwned === undefined ? null : window.__pwned"))
        self.assertEqual(self.page.eval_on_selector_all("#message *", "nodes => nodes.length"), 0)
        self.assertEqual([m for m in self.console_errors if "409" not in m], [], self.console_errors)
