"""
The Grafana dashboard and the alert rules ask only for metrics that a real
server exports: a real C{twistd -n dyndns} (HTTP, GnuDIP and admin
listeners, the suffix zone published) gets a good update, a refused login,
a DNS query, an RFC 2136 update of a host zone and an HTTP connection that
times out, so its labelled series
exist (the same metric families as docs/monitoring.md's generated table); C{curl} scrapes C{/metrics} with a bearer token the way
examples/prometheus/prometheus.yml does; and every metric name that the
dashboard's queries and variables and the alerts' expressions select (parsed
with a real PromQL parser) has a sample in that scrape, series names
following each metric type's suffix rules (C{_total}, C{_bucket}...).
"""

from __future__ import annotations

import hashlib
import os
import socket

import dns.query
import dns.rcode
import dns.update

from tests.integration.clients import SUFFIX, dig, run_curl
from tests.integration.harness import BASE_PATH, Server, SharedServerTestCase, wait_for
from tests.monitoring_helpers import (
    SCRAPE_SERIES,
    alert_expressions,
    dashboard_queries,
    every_metric_exposition,
    load_alerts,
    load_dashboard,
    metric_families,
    selected_metrics,
)

TOKEN = "monitoring-test-token-0123456789abcdef"
PASSWORD = "alice-password"
#: Bound for the HTTP header timeout (below) to close an idle connection.
TIMEOUT_SEEN_WITHIN = 10.0


class ExportedMetricsTests(SharedServerTestCase):
    tools = (("dig", "bind9-dnsutils"), ("curl", "curl"))
    server_options = {
        "listeners": ("http", "gnudip", "admin"),
        "admin": {"tokens": ["sha256:" + hashlib.sha256(TOKEN.encode()).hexdigest()]},
        # A connection that sends nothing is closed after 1 s, so the
        # timed-out counter has a sample.
        "connections": {"http_header_timeout": 1.0},
        # A host zone that takes updates from here, for the zone-update counter.
        "dns": {"zones": [{"origin": "example.org", "file": "example.org.zone", "allow_update": ["127.0.0.1/32"]}]},
    }

    @classmethod
    def prepare(cls, server: Server) -> None:
        with open(os.path.join(server.directory, "example.org.zone"), "w") as f:
            f.write("@ 300 IN SOA ns1.example.org. h.example.org. 1 3600 600 86400 60\n@ 300 IN NS ns1\n")
        server.add_user("alice", PASSWORD)

    def scrape(self) -> str:
        """GET /metrics on the admin listener with the bearer token (curl)."""
        rc, response, error = run_curl(
            "-H", f"Authorization: Bearer {TOKEN}", f"http://127.0.0.1:{self.server.admin_port}/metrics"
        )
        self.assertEqual(rc, 0, error)
        assert response is not None
        self.assertEqual(response.status, 200, response.text)
        return response.text

    def make_series(self) -> None:
        """A good update, a refused login, a DNS answer, an HTTP header timeout."""
        base = f"http://127.0.0.1:{self.server.http_port}{BASE_PATH}ddns"
        rc, response, error = run_curl(f"{base}?user=alice&pw={PASSWORD}&ip=192.0.2.10")
        self.assertEqual(rc, 0, error)
        assert response is not None
        self.assertIn("OK: 192.0.2.10", response.text)
        rc, response, error = run_curl(f"{base}?user=alice&pw=wrong&ip=192.0.2.11")
        self.assertEqual(rc, 0, error)
        assert response is not None
        self.assertIn("Incorrect user ID or password", response.text)
        self.assertEqual(dig(self.server.port, f"alice.{SUFFIX}").data("A"), ["192.0.2.10"])
        with socket.create_connection(("127.0.0.1", self.server.http_port), timeout=TIMEOUT_SEEN_WITHIN):
            timed_out, _ = wait_for(
                lambda: "dyndns_connections_timed_out_total{" in self.scrape(), TIMEOUT_SEEN_WITHIN, interval=0.2
            )
        self.assertTrue(timed_out, "no dyndns_connections_timed_out_total sample after an idle HTTP connection")
        update = dns.update.UpdateMessage("example.org")
        update.add("printer", 300, "A", "192.0.2.40")
        reply = dns.query.udp(update, "127.0.0.1", port=self.server.port, timeout=5)
        self.assertEqual(reply.rcode(), dns.rcode.NOERROR)

    def test_every_queried_metric_is_exported(self) -> None:
        self.make_series()
        exposition = self.scrape()
        families = metric_families(exposition)
        sampled = {name for _, samples in families.values() for name in samples}
        # What was done above shows in the scrape.
        self.assertRegex(exposition, r'dyndns_updates_total\{method="http-url",result="good"\} 1\.0')
        self.assertRegex(exposition, r'dyndns_auth_failures_total\{method="http-url"\} 1\.0')
        self.assertIn('dyndns_update_duration_seconds_bucket{le="+Inf",method="http-url"} 1.0', exposition)
        self.assertIn('dyndns_zone_serial{zone="dyn.example.com"}', exposition)
        self.assertIn('dyndns_zone_updates_total{result="noerror",zone="example.org"} 1.0', exposition)
        queries = [*dashboard_queries(load_dashboard()), *alert_expressions(load_alerts())]
        self.assertGreater(len(queries), 20)
        used: dict[str, list[str]] = {}
        for where, expr in queries:
            names = selected_metrics(expr)
            self.assertTrue(names, f"{where} selects no metric: {expr}")
            for name in names:
                used.setdefault(name, []).append(where)
        missing = {name: where for name, where in used.items() if name not in sampled | SCRAPE_SERIES}
        self.assertEqual(missing, {}, "metrics the dashboard or alerts use that /metrics does not export")
        # Every metric family the server exports is on the dashboard or in
        # an alert (through one of its series: _total, _bucket...).
        unused = {name for name, (series, _) in families.items() if not series & used.keys()}
        self.assertEqual(unused, set(), "metrics /metrics exports that neither the dashboard nor an alert uses")
        # The families documented in docs/monitoring.md (generated from a
        # Metrics attached to stand-ins) are the real server's.
        self.assertEqual(set(metric_families(every_metric_exposition())), set(families))
