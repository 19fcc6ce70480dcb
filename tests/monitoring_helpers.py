"""
What the monitoring examples ask of Prometheus, and what a server exports:
the PromQL of the Grafana dashboard (examples/grafana/dyndns.json) and of
the alert rules (examples/prometheus/alerts.yml), the metric names each
expression selects (parsed by C{promql_parser}, a real PromQL parser, not
regular expressions), and the series names an exposition text offers
(C{prometheus_client}'s parser, with the suffix rules of each metric type).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Iterator

import promql_parser
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
DASHBOARD = os.path.join(EXAMPLES, "grafana", "dyndns.json")
PROMETHEUS = os.path.join(EXAMPLES, "prometheus")
ALERTS = os.path.join(PROMETHEUS, "alerts.yml")

#: Series that Prometheus makes itself for every scrape target: not in /metrics.
SCRAPE_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})

#: Grafana's variables, as the values they stand for in a real query: the
#: interval ones become a duration, the dashboard's own ($job, $instance)
#: the regular expression "All" selects.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "6h",
    "$job": ".*",
    "$instance": ".*",
}
_LABEL_VALUES = re.compile(r"^\s*label_values\((?P<selector>.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$")

#: The series names of a metric family, by its type.
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}


def load_dashboard() -> dict[str, Any]:
    with open(DASHBOARD) as f:
        dashboard: dict[str, Any] = json.load(f)
    return dashboard


def load_alerts() -> dict[str, Any]:
    with open(ALERTS) as f:
        alerts: dict[str, Any] = yaml.safe_load(f)
    return alerts


def grafana_to_promql(expr: str) -> str:
    """C{expr} with Grafana's variables replaced (longest names first)."""
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    if "$" in expr:
        raise ValueError(f"a Grafana variable this test does not know in {expr!r}")
    return expr


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """
    (where, PromQL) for every panel target and every query variable; a
    variable's C{label_values(SELECTOR, label)} gives its SELECTOR.
    """

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", grafana_to_promql(target["expr"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        match = _LABEL_VALUES.match(text)
        if match is None:
            raise ValueError(f"variable {variable['name']}: not label_values(selector, label): {text!r}")
        yield f"variable {variable['name']!r}", grafana_to_promql(match["selector"])


def alert_expressions(alerts: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every alerting and recording rule."""
    for group in alerts["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            yield f"rule {name!r}", rule["expr"]


def selected_metrics(expr: str) -> set[str]:
    """
    The metric names C{expr} selects. A selector without a metric name
    (C{{__name__=~...}}) is refused: it could match anything, or nothing.
    """
    tree = promql_parser.parse(expr)
    names: set[str] = set()
    nameless: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            else:
                nameless.append(node.prettify())

    promql_parser.walk(tree, visit)
    if nameless:
        raise ValueError(f"selectors without a metric name in {expr!r}: {nameless}")
    return names


def metric_families(exposition: str) -> dict[str, tuple[set[str], set[str]]]:
    """
    The metric families of a C{/metrics} text: name -> (the series names
    it may have by its type's suffix rules, those that have a sample now).
    A counter C{x} is C{x_total} (and C{x_created}), a histogram C{x} is
    C{x_bucket}, C{x_sum}, C{x_count}; a gauge is its own name. The
    C{x_created} gauges of counters and histograms are left out.
    """
    families = {
        family.name: (
            {family.name + suffix for suffix in _SUFFIXES[family.type]},
            {sample.name for sample in family.samples},
        )
        for family in text_string_to_metric_families(exposition)
    }
    for name in list(families):
        if name.endswith("_created") and name.removesuffix("_created") in families:
            del families[name]
    return families


def every_metric_exposition() -> str:
    """
    The C{/metrics} text of a L{Metrics} attached to everything it can
    export (a real service; stand-ins with the attributes the scrape-time
    collectors read for the DNS factory, zone publisher and connection
    limiters), with one update so that labelled families have samples.
    """
    from types import SimpleNamespace

    from dyndns_plugin.dns.rrl import CLASS_NAMES
    from dyndns_plugin.metrics import Metrics
    from dyndns_plugin.model import UpdateStatus
    from dyndns_plugin.service import DynDNSService
    from dyndns_plugin.store.memory import MemoryUserStore

    service = DynDNSService(MemoryUserStore(), "dyn.example.com", poll_interval=None)
    factory = SimpleNamespace(
        on_reply=None,
        update_handler=SimpleNamespace(on_zone_update=[]),
        rrl=SimpleNamespace(dropped=[0] * len(CLASS_NAMES), slipped=[0] * len(CLASS_NAMES)),
        cookie_queries={"good": 0},
        bad_input={"malformed": 0},
    )
    publisher = SimpleNamespace(zones=[SimpleNamespace(origin="dyn.example.com", serial=1)])
    limiter = SimpleNamespace(open=0, max_total=64, refused={"total": 0}, timed_out={"idle": 0})
    metrics = Metrics()
    metrics.attach(service, factory, publisher)
    metrics.attach_connections({"http": limiter})
    metrics.update_result("dyndns2", UpdateStatus.GOOD, 0.01)
    for observer in factory.update_handler.on_zone_update:
        observer("example.org", "noerror")
    return metrics.render().decode("utf-8")


def metrics_table(exposition: str) -> str:
    """
    A Markdown table of every metric family in C{exposition}: the series
    names to query, the type, the labels and the help text.
    """
    rows = ["| Series | Type | Labels | What it counts |", "| --- | --- | --- | --- |"]
    for family in text_string_to_metric_families(exposition):
        if family.name.endswith("_created"):
            continue
        series = sorted({s.name for s in family.samples if not s.name.endswith("_created")})
        if family.type == "histogram":
            series = [family.name + "_bucket", family.name + "_sum", family.name + "_count"]
        labels = sorted({label for s in family.samples for label in s.labels if label != "le"})
        if family.type == "histogram":
            labels.append("le (\\_bucket)")
        help_text = family.documentation.replace("|", "\\|")
        rows.append(
            f"| {'<br>'.join(f'`{s}`' for s in series)} | {family.type} | {', '.join(labels) or '-'} | {help_text} |"
        )
    return "\n".join(rows) + "\n"
