"""
The monitoring examples are valid for the real tools: C{promtool check
rules} and C{promtool test rules} (examples/prometheus/alerts_test.yml) on
the alerts, C{promtool check config} on the scrape configuration, and the
Grafana dashboard is well formed (one datasource variable every panel uses,
unique ids, panels on the grid without overlap, every query valid PromQL).
C{promtool} is Debian's C{prometheus} package: missing, these tests skip
locally and fail in CI (L{tests.tools.require_tool}).

docs/monitoring.md's table of metrics is the one generated from the code,
and its table of alerts names every alert.

That every metric those queries name is one a running server exports is
checked against a real server in L{tests.integration.test_monitoring}; the
name extraction it relies on (L{tests.monitoring_helpers}) is checked here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from dyndns_plugin.metrics import Metrics
from dyndns_plugin.model import UpdateStatus
from tests.monitoring_helpers import (
    PROMETHEUS,
    ROOT,
    alert_expressions,
    dashboard_queries,
    every_metric_exposition,
    grafana_to_promql,
    load_alerts,
    load_dashboard,
    metric_families,
    metrics_table,
    selected_metrics,
)
from tests.tools import require_tool

#: Bound for one promtool run.
PROMTOOL_TIMEOUT = 60.0


def promtool(*args: str, cwd: str = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    """Run promtool (skip or fail if missing) with C{args} in C{cwd}."""
    program = require_tool("promtool", "prometheus")
    return subprocess.run(
        [program, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=PROMTOOL_TIMEOUT,
        check=False,
    )


class PromtoolTests(SynchronousTestCase):
    def test_check_rules(self) -> None:
        done = promtool("check", "rules", "alerts.yml")
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn(f"SUCCESS: {len(list(alert_expressions(load_alerts())))} rules found", done.stdout)

    def test_alert_unit_tests(self) -> None:
        """Every alert fires on what should trip it and not on its look-alikes."""
        done = promtool("test", "rules", "alerts_test.yml")
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn("SUCCESS", done.stdout)
        with open(os.path.join(PROMETHEUS, "alerts_test.yml")) as f:
            tested = f.read()
        for rule in load_alerts()["groups"][0]["rules"]:
            self.assertIn(f"alertname: {rule['alert']}\n", tested, "every alert has a unit test")

    def test_check_config(self) -> None:
        """
        The scrape configuration (with its rule file beside it, and the
        bearer token file it names, which promtool wants to exist).
        """
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        for name in ("prometheus.yml", "alerts.yml"):
            shutil.copy(os.path.join(PROMETHEUS, name), folder)
        with open(os.path.join(folder, "dyndns-admin.token"), "w") as f:
            f.write("a-token-from-dyndns-make-token\n")
        done = promtool("check", "config", "prometheus.yml", cwd=folder)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn("is valid prometheus config file", done.stdout)
        self.assertIn("SUCCESS: 1 rule files found", done.stdout)

    def test_check_config_refuses_a_broken_rule_file(self) -> None:
        """The check above is not vacuous: a rule file with bad PromQL fails it."""
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        shutil.copy(os.path.join(PROMETHEUS, "prometheus.yml"), folder)
        with open(os.path.join(folder, "alerts.yml"), "w") as f:
            f.write("groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: rate(dyndns_updates_total[5m)\n")
        with open(os.path.join(folder, "dyndns-admin.token"), "w") as f:
            f.write("t\n")
        done = promtool("check", "config", "prometheus.yml", cwd=folder)
        self.assertNotEqual(done.returncode, 0, done.stdout)


class DashboardTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dashboard = load_dashboard()

    def panels(self) -> list[dict[str, Any]]:
        return [p for p in self.dashboard["panels"] if p["type"] != "row"]

    def test_datasource_variable(self) -> None:
        """One Prometheus datasource variable, which every panel and query uses."""
        variables = {v["name"]: v for v in self.dashboard["templating"]["list"]}
        self.assertEqual(variables["DS_PROMETHEUS"]["type"], "datasource")
        self.assertEqual(variables["DS_PROMETHEUS"]["query"], "prometheus")
        reference = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        for panel in self.panels():
            self.assertEqual(panel["datasource"], reference, panel["title"])
            for target in panel["targets"]:
                self.assertEqual(target["datasource"], reference, panel["title"])
        for name in ("job", "instance"):
            self.assertEqual(variables[name]["datasource"], reference)
        self.assertGreaterEqual(self.dashboard["schemaVersion"], 36)

    def test_ids_and_layout(self) -> None:
        """Unique panel ids and refIds; every panel inside the 24 columns, none overlapping."""
        ids = [p["id"] for p in self.dashboard["panels"]]
        self.assertEqual(len(ids), len(set(ids)))
        taken: set[tuple[int, int]] = set()
        for panel in self.dashboard["panels"]:
            grid = panel["gridPos"]
            self.assertLessEqual(grid["x"] + grid["w"], 24, panel["title"])
            cells = {
                (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
            }
            self.assertEqual(cells & taken, set(), f"{panel['title']} overlaps another panel")
            taken |= cells
            refs = [t["refId"] for t in panel.get("targets", [])]
            self.assertEqual(len(refs), len(set(refs)), panel["title"])

    def test_sections(self) -> None:
        """What the dashboard is for: each subject has a panel."""
        titles = {p["title"] for p in self.panels()}
        for title in (
            "Updates by method and result",
            "Update latency (to durable)",
            "Auth failures by method",
            "Lockouts by method",
            "Store errors",
            "Users by state",
            "Zone serial",
            "DNS answers by RCODE",
            "Response rate limiting",
            "DNS cookies",
            "Open TCP connections",
            "Connections refused and timed out",
        ):
            self.assertIn(title, titles)

    def test_every_query_is_promql(self) -> None:
        """Every panel query and variable selector parses (after Grafana's variables) and names a metric."""
        queries = list(dashboard_queries(self.dashboard))
        self.assertEqual(len(queries), sum(len(p["targets"]) for p in self.panels()) + 2)
        for where, expr in queries:
            self.assertTrue(selected_metrics(expr), where)

    def test_latency_is_a_histogram_quantile_over_buckets(self) -> None:
        [panel] = [p for p in self.panels() if p["title"] == "Update latency (to durable)"]
        for target in panel["targets"]:
            self.assertTrue(target["expr"].startswith("histogram_quantile("), target["expr"])
            self.assertEqual(
                selected_metrics(grafana_to_promql(target["expr"])), {"dyndns_update_duration_seconds_bucket"}
            )
            self.assertIn("by (le", target["expr"])


class MetricNameTests(SynchronousTestCase):
    """The helpers the examples' checks rely on."""

    def test_selected_metrics(self) -> None:
        """Metric names only: no label names of by/on/ignoring, no functions, no matcher values."""
        expr = (
            'sum by (method, le) (rate(a_bucket{job=~"x|y"}[5m])) / ignoring (result) group_left '
            "sum(rate(b_total[5m] offset 1h)) or vector(0) and on (job) max_over_time(c[10m:1m]) > bool -d"
        )
        self.assertEqual(selected_metrics(expr), {"a_bucket", "b_total", "c", "d"})
        self.assertEqual(selected_metrics('up{job="dyndns"} == 0'), {"up"})

    def test_nameless_selector_refused(self) -> None:
        with self.assertRaises(ValueError):
            selected_metrics('sum(rate({__name__=~"dyndns_.*"}[5m]))')

    def test_bad_promql_refused(self) -> None:
        with self.assertRaises(ValueError):
            selected_metrics("rate(dyndns_updates_total[5m)")

    def test_grafana_variables(self) -> None:
        self.assertEqual(
            grafana_to_promql('rate(x{job=~"$job"}[$__rate_interval])[$__range:$__interval]'),
            'rate(x{job=~".*"}[5m])[6h:1m]',
        )
        with self.assertRaises(ValueError):
            grafana_to_promql('x{zone=~"$zone"}')

    def test_suffix_rules(self) -> None:
        """Counters are x_total, histograms x_bucket/x_sum/x_count, gauges x; _created is left out."""
        metrics = Metrics()
        metrics.update_result("dyndns2", UpdateStatus.GOOD, 0.01)
        families = metric_families(metrics.render().decode())
        self.assertEqual(families["dyndns_updates"][0], {"dyndns_updates_total", "dyndns_updates_created"})
        self.assertEqual(
            families["dyndns_update_duration_seconds"][0],
            {
                "dyndns_update_duration_seconds_bucket",
                "dyndns_update_duration_seconds_sum",
                "dyndns_update_duration_seconds_count",
                "dyndns_update_duration_seconds_created",
            },
        )
        self.assertEqual(families["dyndns_users"][0], {"dyndns_users"})
        self.assertNotIn("dyndns_updates_created", families)
        self.assertIn("dyndns_updates_total", families["dyndns_updates"][1])

    def test_alerts_name_metrics(self) -> None:
        for where, expr in alert_expressions(load_alerts()):
            self.assertTrue(selected_metrics(expr), where)


class DocsTests(SynchronousTestCase):
    def setUp(self) -> None:
        with open(os.path.join(ROOT, "docs", "monitoring.md")) as f:
            self.doc = f.read()

    def test_metrics_table_is_current(self) -> None:
        """The table between the markers is L{metrics_table} of every metric; regenerate it when this fails."""
        start = "<!-- metrics table: generated, do not edit -->\n"
        end = "<!-- end of metrics table -->"
        self.assertIn(start, self.doc)
        documented = self.doc[self.doc.index(start) + len(start) : self.doc.index(end)]
        # The table, then a blank line that ends it before the end marker.
        self.assertEqual(
            documented,
            metrics_table(every_metric_exposition()) + "\n",
            "regenerate: python -c 'from tests.monitoring_helpers import every_metric_exposition as e, "
            "metrics_table as t; print(t(e()))'",
        )

    def test_every_alert_documented(self) -> None:
        for rule in load_alerts()["groups"][0]["rules"]:
            self.assertIn(f"| `{rule['alert']}` |", self.doc)
