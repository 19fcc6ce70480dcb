"""
SIGHUP re-reads the configuration of a running C{twistd dyndns}: live keys
take effect in the same process (admin credentials, DNS rate limiting),
restart-only keys are logged one line each, and a configuration that does
not load is logged naming its key while the server keeps serving on the old
one.
"""

from __future__ import annotations

import os
import signal

from tests.integration.clients import SUFFIX, get_request, http_exchange
from tests.integration.harness import CHANGE_LIMIT, Server, ServerTestCase, wait_for


class ReloadTests(ServerTestCase):
    def start_server(self) -> Server:
        """A server with alice at 192.0.2.10 and the admin root (password pw-one)."""
        server = self.make_server(listeners=("admin",))
        server.add_admin("root", "pw-one")
        server.add_user("alice", "alice-pw", address=["192.0.2.10"])
        server.start()
        return server

    def admin_status(self, password: str) -> int:
        """The admin API's status for root with C{password} (200 or 401)."""
        request = get_request("/api/state", "root", password)
        return http_exchange(self.server.admin_port, request).status

    def hangup(self, server: Server) -> str:
        """SIGHUP, then wait until the log shows the reload's outcome; the new part of the log."""
        assert server.process is not None
        before = len(server.read_log())
        server.process.send_signal(signal.SIGHUP)

        def reloaded() -> str:
            text = server.read_log()[before:]
            return text if ("reload: " in text and ("; applied:" in text or "still running" in text)) else ""

        text, _ = wait_for(reloaded, CHANGE_LIMIT)
        self.assertTrue(text, server.read_log())
        self.assertIsNone(server.process.poll(), "twistd exited on SIGHUP")
        self.assertNotIn("Traceback", text)
        return str(text)

    def test_live_keys_apply_and_restart_keys_are_logged(self) -> None:
        """
        A new admin password works at once and the old one no longer does;
        the RRL rate is applied; poll_interval and the DNS listen address
        only get a "takes effect after a restart" line each, and DNS keeps
        answering where it listened.
        """
        server = self.start_server()
        self.assertEqual((self.admin_status("pw-one"), self.admin_status("pw-two")), (200, 401))
        server.add_admin("root", "pw-two")
        server.configure(
            service={"poll_interval": 0.3},
            dns={"rrl": {"responses_per_second": 50}, "listen": ["127.0.0.1:1"]},
        )
        log = self.hangup(server)
        self.assertEqual((self.admin_status("pw-two"), self.admin_status("pw-one")), (200, 401))
        self.assertIn("reload: service.poll_interval changed; it takes effect after a restart", log)
        self.assertIn("reload: dns.listen changed; it takes effect after a restart", log)
        self.assertIn("; applied: admin.users, dns.rrl.responses_per_second", log)
        self.assertNotIn("pw-two", log)
        self.assertServes(f"alice.{SUFFIX}", "A", ["192.0.2.10"])
        # A second SIGHUP on the same file: the restart-only keys are still
        # pending, and nothing more is applied.
        again = self.hangup(server)
        self.assertIn("reload: service.poll_interval changed; it takes effect after a restart", again)
        self.assertIn("; applied: nothing changed that applies live", again)

    def test_bad_configuration_keeps_the_old_one(self) -> None:
        """
        A file that does not load: one line naming the file and the key, and
        the server serves on as before (DNS, the old admin password).
        """
        server = self.start_server()
        server.add_admin("root", "pw-two")
        server.configure(service={"default_ttl": "thirty"})
        log = self.hangup(server)
        self.assertIn(
            f"reload: {server.config}: service.default_ttl: must be a whole number, not 'thirty'; "
            "still running on the previous configuration",
            log,
        )
        self.assertEqual(len([line for line in log.splitlines() if "reload:" in line]), 1, log)
        self.assertServes(f"alice.{SUFFIX}", "A", ["192.0.2.10"])
        self.assertEqual((self.admin_status("pw-one"), self.admin_status("pw-two")), (200, 401))
        self.assertTrue(os.path.exists(server.config))
