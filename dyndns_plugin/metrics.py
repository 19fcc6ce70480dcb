"""
Prometheus metrics: L{Metrics} and the C{/metrics} resource.

The service, the adapters and the DNS server know nothing of Prometheus;
they offer hooks, and L{Metrics.attach} subscribes to them:

 - C{DynDNSService.on_update_result}: every client write (C{update},
   C{set_addresses}, C{set_offline}) with its method, result and duration:
   C{dyndns_updates_total{method,result}} and, for writes that reached the
   store (GOOD), C{dyndns_update_duration_seconds{method}};
 - C{DynDNSService.on_auth_failure}: credentials an adapter refused (HTTP
   URL and Basic auth, C{/nic/update}, GnuDIP TCP and HTTP, TSIG):
   C{dyndns_auth_failures_total{method}};
 - C{DynDNSService.on_store_error}: store operations that failed, a client
   write (the client got 911) or a poll for other processes' writes:
   C{dyndns_store_errors_total{operation}};
 - C{DynDNSServerFactory.on_reply}: every answer to a query, NOTIFY or
   transfer request, by RCODE: C{dyndns_dns_queries_total{result}}. This one
   is on the benchmarked query path, so it is a plain list increment (about
   50 ns; a C{prometheus_client} counter's C{inc} costs about 1.2 us), read
   at scrape time.

C{dyndns_users{state}} (online, offline, never, disabled) and, with a zone
publisher, C{dyndns_zone_serial{zone}} are computed from memory at scrape
time: no bookkeeping per update.

Each L{Metrics} has its own L{CollectorRegistry}, not the process-wide one,
so several services in one process (tests, embedding) do not collide.

The C{method} label takes the L{dyndns_plugin.methods.Method} the adapters
pass to the service: C{http-url}, C{http-basic} (C{<base>ddns}), C{dyndns2}
(C{/nic/update}), C{gnudip-tcp}, C{gnudip-http}, C{dns-update} (TSIG),
C{admin}, and whatever an embedding program passes. Writes by the
C{dyndns} CLI run in its own process; the daemon picks them up from the
store and does not count them as updates.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.web import http, resource, server

from dyndns_plugin.methods import CLIENT_METHODS
from dyndns_plugin.model import UpdateStatus
from dyndns_plugin.registry import USER_STATES
from dyndns_plugin.web.common import finish

__all__ = ["Metrics", "MetricsResource", "RCODE_NAMES", "STORE_OPERATIONS"]

#: RCODE -> the C{result} label of C{dyndns_dns_queries_total}; any other
#: RCODE is shown as its number.
RCODE_NAMES = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
    6: "YXDOMAIN",
    7: "YXRRSET",
    8: "NXRRSET",
    9: "NOTAUTH",
    10: "NOTZONE",
    16: "BADVERS",
}
#: The C{operation} label of C{dyndns_store_errors_total}.
STORE_OPERATIONS = ("write", "poll")
#: Always exported (as 0 until seen), so dashboards have every series.
_COMMON_RCODES = (0, 1, 2, 3, 4, 5)
#: From 0.5 ms (a memory store) to 10 s (a stalled disk).
DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class _Collector(Collector):
    """Calls C{collect} given at construction (registries want an object)."""

    def __init__(self, collect: Callable[[], Iterator[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterator[Metric]:
        return self._collect()


class Metrics:
    """
    The metrics of one DynDNS service. Create it, L{attach} it to the
    service's parts, and serve L{MetricsResource} (or C{generate_latest} of
    L{registry}).

    @ivar count_reply: C{count_reply(rcode)}, the DNS factory's C{on_reply}.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.updates = Counter(
            "dyndns_updates",
            "Address updates by clients through the service, by method and result.",
            ["method", "result"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "dyndns_auth_failures",
            "Refused client credentials (wrong password or GnuDIP hash, unknown "
            "user or TSIG key, bad signature or time), by method.",
            ["method"],
            registry=self.registry,
        )
        self.update_duration = Histogram(
            "dyndns_update_duration_seconds",
            "Time from the service receiving a client write to it being durable "
            "(writes that reached the store), by method.",
            ["method"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.auth_locked = Counter(
            "dyndns_auth_locked",
            "Requests refused without checking their credentials because the "
            "source or user id is locked out after failed logins, by method.",
            ["method"],
            registry=self.registry,
        )
        self.store_errors = Counter(
            "dyndns_store_errors",
            "Store operations that failed: a client write (answered 911) or a "
            "poll for changes made by other processes, by operation.",
            ["operation"],
            registry=self.registry,
        )
        self.zone_updates = Counter(
            "dyndns_zone_updates",
            "RFC 2136 updates of host zones (from allowed sources or with zone keys), by zone and RCODE.",
            ["zone", "result"],
            registry=self.registry,
        )
        for operation in STORE_OPERATIONS:
            self.store_errors.labels(operation)
        # Every client method's auth counters exist from the start.
        for method in CLIENT_METHODS:
            self.auth_failures.labels(method)
            self.auth_locked.labels(method)
        self._update_children: dict[tuple[str, UpdateStatus], Any] = {}
        self._duration_children: dict[str, Any] = {}
        self._services: list[Any] = []
        self._publishers: list[Any] = []

        replies = [0] * 4096  # every 12-bit (extended) RCODE

        def count_reply(rcode: int) -> None:
            replies[rcode] += 1

        self._replies = replies
        self.count_reply: Callable[[int], None] = count_reply
        self.registry.register(_Collector(self._collect_dns))
        self.registry.register(_Collector(self._collect_users))
        self.registry.register(_Collector(self._collect_zones))

    # -- wiring

    def attach(self, service: Any, dns_factory: Any = None, publisher: Any = None) -> None:
        """
        Subscribe to a L{DynDNSService} (updates, auth failures, store
        errors, users), a L{DynDNSServerFactory} (answers; it has one
        C{on_reply} slot, which this takes) and a L{ZonePublisher} (zone serials). Auth failures
        come from the adapters through the service, so a custom password
        checker needs nothing to be counted.
        """
        service.on_update_result.append(self.update_result)
        service.on_auth_failure.append(self.auth_failed)
        service.on_auth_locked.append(self.locked)
        service.on_store_error.append(self.store_failed)
        self._services.append(service)
        if dns_factory is not None:
            dns_factory.on_reply = self.count_reply
            self.attach_dns_protection(dns_factory)
            handler = getattr(dns_factory, "update_handler", None)
            if handler is not None and hasattr(handler, "on_zone_update"):
                handler.on_zone_update.append(self.zone_update)
        if publisher is not None:
            self._publishers.append(publisher)

    def attach_tree(self, top: Any) -> None:
        """L{attach} to the parts of a L{dyndns_plugin.tap.build_service} tree."""
        self.attach(top.dyndns, getattr(top, "dns_factory", None), getattr(top, "publisher", None))

    # -- the hooks

    def update_result(self, method: str, status: UpdateStatus, seconds: float) -> None:
        """C{DynDNSService.on_update_result}."""
        key = (method, status)
        child = self._update_children.get(key)
        if child is None:
            child = self._update_children[key] = self.updates.labels(method or "unknown", status.value)
        child.inc()
        if status is UpdateStatus.GOOD:
            duration = self._duration_children.get(method)
            if duration is None:
                duration = self._duration_children[method] = self.update_duration.labels(method or "unknown")
            duration.observe(max(0.0, seconds))

    def zone_update(self, zone: str, result: str) -> None:
        self.zone_updates.labels(zone, result).inc()

    def auth_failed(self, method: str) -> None:
        """C{DynDNSService.on_auth_failure}."""
        self.auth_failures.labels(method or "unknown").inc()

    def locked(self, method: str) -> None:
        """C{DynDNSService.on_auth_locked}."""
        self.auth_locked.labels(method or "unknown").inc()

    def store_failed(self, operation: str) -> None:
        """C{DynDNSService.on_store_error}."""
        self.store_errors.labels(operation).inc()

    # -- computed at scrape time

    def _collect_dns(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "dyndns_dns_queries",
            "DNS answers to queries, NOTIFY and transfer requests, by RCODE.",
            labels=["result"],
        )
        replies = self._replies
        for rcode, count in enumerate(replies):
            if count or rcode in _COMMON_RCODES:
                family.add_metric([RCODE_NAMES.get(rcode, str(rcode))], count)
        yield family

    def _collect_users(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("dyndns_users", "Users by state, now.", labels=["state"])
        # Kept by the registry with every write: a scrape walks no users.
        counts = dict.fromkeys(USER_STATES, 0)
        for service in self._services:
            for name, count in service.registry.counts_by_state().items():
                counts[name] += count
        for name in USER_STATES:
            family.add_metric([name], counts[name])
        yield family

    def _collect_zones(self) -> Iterator[Metric]:
        if not self._publishers:
            return
        family = GaugeMetricFamily("dyndns_zone_serial", "The SOA serial each published zone has now.", labels=["zone"])
        for publisher in self._publishers:
            for zone in publisher.zones:
                family.add_metric([zone.origin], zone.serial)
        yield family

    # -- connections (dyndns_plugin.connections)

    def attach_connections(self, limiters: Any) -> None:
        """
        Export the L{ConnectionLimiter}s (listener -> limiter, as
        C{build_service} makes them) at scrape time:
        C{dyndns_connections_open{listener}},
        C{dyndns_connections_max{listener}},
        C{dyndns_connections_refused_total{listener,reason}} (C{per_source},
        C{total}) and C{dyndns_connections_timed_out_total{listener,reason}}
        (C{idle}, C{header_timeout}, C{request_timeout}, C{line_timeout},
        C{timeout}, C{message_timeout}).
        """
        first = not getattr(self, "_limiters", None)
        self._limiters: dict[str, Any] = {**getattr(self, "_limiters", {}), **dict(limiters)}
        if first and self._limiters:
            self.registry.register(_Collector(self._collect_connections))

    def _collect_connections(self) -> Iterator[Metric]:
        opened = GaugeMetricFamily(
            "dyndns_connections_open",
            "Open TCP connections now, by listener.",
            labels=["listener"],
        )
        capped = GaugeMetricFamily(
            "dyndns_connections_max",
            "The cap on concurrent TCP connections, by listener (after fitting under the open-files limit).",
            labels=["listener"],
        )
        refused = CounterMetricFamily(
            "dyndns_connections_refused",
            "TCP connections closed at accept because a cap was reached, by listener and cap (per_source, total).",
            labels=["listener", "reason"],
        )
        timed_out = CounterMetricFamily(
            "dyndns_connections_timed_out",
            "TCP connections closed by a deadline or idle timeout, by listener and reason.",
            labels=["listener", "reason"],
        )
        for name, limiter in self._limiters.items():
            opened.add_metric([name], limiter.open)
            if limiter.max_total is not None:
                capped.add_metric([name], limiter.max_total)
            for reason, count in limiter.refused.items():
                refused.add_metric([name, reason], count)
            for reason, count in limiter.timed_out.items():
                timed_out.add_metric([name, reason], count)
        yield opened
        yield capped
        yield refused
        yield timed_out

    # -- DNS abuse protection (dyndns_plugin.dns.rrl, .cookies, bad input)

    def attach_dns_protection(self, factory: Any) -> None:
        """
        Export, at scrape time, what the DNS factory counts in plain lists
        and dicts on its query path:
        C{dyndns_dns_rrl_responses_total{action,class}} (UDP responses
        C{dropped} or C{slipped} (sent truncated) by response rate limiting,
        by response class), C{dyndns_dns_cookies_total{result}} (queries
        with a COOKIE option: C{client_only}, C{good}, C{bad}) and
        C{dyndns_dns_bad_input_total{kind}} (C{malformed}, C{bad_name},
        C{bad_cookie}: FORMERR; C{error}: SERVFAIL after an internal error).
        """
        first = not getattr(self, "_dns_factories", None)
        self._dns_factories: list[Any] = [*getattr(self, "_dns_factories", []), factory]
        if first:
            self.registry.register(_Collector(self._collect_dns_protection))

    def _collect_dns_protection(self) -> Iterator[Metric]:
        from dyndns_plugin.dns.rrl import CLASS_NAMES

        rrl = CounterMetricFamily(
            "dyndns_dns_rrl_responses",
            "UDP responses limited by response rate limiting, by action "
            "(dropped, slipped: sent truncated with TC) and response class.",
            labels=["action", "class"],
        )
        cookies = CounterMetricFamily(
            "dyndns_dns_cookies",
            "Queries with a DNS COOKIE option, by what it held (client_only, "
            "good: our server cookie verified, bad: a server cookie that did not).",
            labels=["result"],
        )
        bad = CounterMetricFamily(
            "dyndns_dns_bad_input",
            "DNS messages refused with FORMERR (malformed, bad_name, bad_cookie) "
            "or answered SERVFAIL after an internal error (error), by kind.",
            labels=["kind"],
        )
        dropped = [0] * len(CLASS_NAMES)
        slipped = [0] * len(CLASS_NAMES)
        cookie_counts: dict[str, int] = {}
        bad_counts: dict[str, int] = {}
        for factory in self._dns_factories:
            limiter = getattr(factory, "rrl", None)
            if limiter is not None:
                for i in range(len(CLASS_NAMES)):
                    dropped[i] += limiter.dropped[i]
                    slipped[i] += limiter.slipped[i]
            for key, count in getattr(factory, "cookie_queries", {}).items():
                cookie_counts[key] = cookie_counts.get(key, 0) + count
            for key, count in getattr(factory, "bad_input", {}).items():
                bad_counts[key] = bad_counts.get(key, 0) + count
        for i, name in enumerate(CLASS_NAMES):
            rrl.add_metric(["dropped", name], dropped[i])
            rrl.add_metric(["slipped", name], slipped[i])
        for key, count in cookie_counts.items():
            cookies.add_metric([key], count)
        for key, count in bad_counts.items():
            bad.add_metric([key], count)
        yield rrl
        yield cookies
        yield bad

    # -- output

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class MetricsResource(resource.Resource):
    """
    C{GET} (and C{HEAD}) the metrics in the Prometheus text format; any
    other method is answered 405. Mount it where only Prometheus can reach
    it (the admin site), or behind authentication.
    """

    isLeaf = True
    allowedMethods = (b"GET", b"HEAD")

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def render(self, request: server.Request) -> Any:
        if request.method not in self.allowedMethods:
            finish(
                request,
                b"method not allowed\n",
                code=http.NOT_ALLOWED,
                headers=[(b"allow", b", ".join(self.allowedMethods))],
            )
        else:
            finish(
                request,
                self.metrics.render(),
                CONTENT_TYPE_LATEST.encode("ascii"),
                headers=[(b"cache-control", b"no-store")],
            )
        return server.NOT_DONE_YET
