"""Prometheus metrics of the alert router, in a registry of their own.

All names carry the ``drift_router_`` prefix. Label values come only from the config
(receiver names, integration ids such as ``slack-ml/slack/0``) and from the code (outcome
and dead-letter reasons, :attr:`Outcome.reason`); never a URL, routing key or other secret.
Each label is still capped (:class:`detector.ops.metrics.LabelCap`), as a guard.

Metrics:

- ``drift_router_alerts_received_total``: alert records read from the alert topic
- ``drift_router_alerts_too_old_total``: alerts dropped as older than the age limit
- ``drift_router_alerts_duplicate_total``: alerts dropped as already seen
- ``drift_router_alerts_invalid_total``: records that were not a readable alert
- ``drift_router_alerts_silenced_total``: alerts dropped by a silence
- ``drift_router_notifications_total{receiver,integration,outcome}``: notifications done,
  by final outcome (``accepted``, ``http_4xx``, ``retries_exhausted``, ``abandoned``, ...)
- ``drift_router_notification_retries_total{receiver,integration}``: requests sent again
- ``drift_router_dead_letters_total{receiver,reason}``: notifications given up on
- ``drift_router_alert_to_notification_seconds{receiver}``: from an alert's ``emitted_at``
  to the end of the accepted notification that first told the integration about it
- ``drift_router_open_groups``: aggregation groups held
- ``drift_router_in_flight_notifications``: notifications queued or being sent
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import gc_collector as _gc
from prometheus_client import platform_collector as _platform
from prometheus_client import process_collector as _process

from detector.ops.metrics import LabelCap
from detector.router.delivery import DeliveryReport

__all__ = ["CONTENT_TYPE_LATEST", "LATENCY_BUCKETS", "RouterMetrics"]

#: 0.1 s to 24 h: group_wait and group_interval are seconds to minutes, retries and
#: Retry-After can stretch a delivery to hours.
LATENCY_BUCKETS = (
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    28800.0,
    43200.0,
    86400.0,
)


class RouterMetrics:
    """The router's metrics; thread-safe (workers and the loop update, HTTP renders).

    ``max_receivers``/``max_integrations``: distinct label values kept (the config's
    counts are far below; the caps only guard against misuse). ``process_metrics`` adds the
    standard process, platform and GC collectors.
    """

    def __init__(
        self,
        *,
        process_metrics: bool = True,
        namespace: str = "drift_router",
        max_receivers: int = 1000,
        max_integrations: int = 1000,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        ns = namespace
        self._receiver = LabelCap(max_receivers)
        self._integration = LabelCap(max_integrations)
        self._reason = LabelCap(64)

        self.alerts_received = Counter(
            "alerts_received",
            "Alert records read from the alert topic.",
            namespace=ns,
            registry=reg,
        )
        self.alerts_too_old = Counter(
            "alerts_too_old",
            "Alerts dropped because they were older than the age limit.",
            namespace=ns,
            registry=reg,
        )
        self.alerts_duplicate = Counter(
            "alerts_duplicate",
            "Alerts dropped because the same alert_id was already routed.",
            namespace=ns,
            registry=reg,
        )
        self.alerts_invalid = Counter(
            "alerts_invalid",
            "Alert topic records that could not be read as an alert.",
            namespace=ns,
            registry=reg,
        )
        self.alerts_silenced = Counter(
            "alerts_silenced",
            "Alerts dropped because a silence matched them.",
            namespace=ns,
            registry=reg,
        )
        self.notifications = Counter(
            "notifications",
            "Notifications done, by integration and final outcome (Outcome.reason).",
            ["receiver", "integration", "outcome"],
            namespace=ns,
            registry=reg,
        )
        self.notification_retries = Counter(
            "notification_retries",
            "Requests of a notification sent again after a retryable failure.",
            ["receiver", "integration"],
            namespace=ns,
            registry=reg,
        )
        self.dead_letters = Counter(
            "dead_letters",
            "Notifications given up on (permanent failure or retries exhausted).",
            ["receiver", "reason"],
            namespace=ns,
            registry=reg,
        )
        self.alert_to_notification = Histogram(
            "alert_to_notification_seconds",
            "Time from an alert's emitted_at to the accepted notification that first"
            " carried it to an integration.",
            ["receiver"],
            namespace=ns,
            registry=reg,
            buckets=LATENCY_BUCKETS,
        )
        self.open_groups = Gauge(
            "open_groups",
            "Aggregation groups currently held.",
            namespace=ns,
            registry=reg,
        )
        self.in_flight_notifications = Gauge(
            "in_flight_notifications",
            "Notifications queued for delivery or being sent.",
            namespace=ns,
            registry=reg,
        )
        if process_metrics:
            _process.ProcessCollector(registry=reg)
            _platform.PlatformCollector(registry=reg)
            _gc.GCCollector(registry=reg)

    # --- what the runner calls ------------------------------------------------------------

    def received(self, n: int = 1) -> None:
        if n:
            self.alerts_received.inc(n)

    def too_old(self, n: int = 1) -> None:
        if n:
            self.alerts_too_old.inc(n)

    def duplicate(self, n: int = 1) -> None:
        if n:
            self.alerts_duplicate.inc(n)

    def invalid(self, n: int = 1) -> None:
        if n:
            self.alerts_invalid.inc(n)

    def silenced(self, n: int = 1) -> None:
        if n:
            self.alerts_silenced.inc(n)

    def delivered(self, report: DeliveryReport, now_ms: int | None = None) -> None:
        """One notification done (a :class:`DeliveryReport` taken off the results queue).

        Counts its outcome and retries; a dead letter (neither accepted nor abandoned) by
        receiver and reason. For an accepted notification, observes the latency of each
        alert it told the integration about for the first time (``notification.new_ids``):
        from the alert's ``emitted_at_ms`` to ``report.last_attempt_ms`` (``now_ms`` if the
        report has none), never negative. Alerts repeated by a later notification (repeat
        interval, resolution) are not observed again.
        """
        integration = report.notification.integration
        receiver = self._receiver(integration.receiver)
        integration_id = self._integration(integration.id)
        outcome = self._reason(report.outcome.reason)
        self.notifications.labels(receiver, integration_id, outcome).inc()
        if report.retries:
            self.notification_retries.labels(receiver, integration_id).inc(report.retries)
        if report.dead_letter:
            self.dead_letters.labels(receiver, outcome).inc()
        if not report.accepted:
            return
        end_ms = report.last_attempt_ms if report.last_attempt_ms is not None else now_ms
        if end_ms is None:
            return
        new_ids = report.notification.new_ids
        histogram = self.alert_to_notification.labels(receiver)
        for alert in report.notification.alerts:
            if alert.alert_id in new_ids:
                histogram.observe(max(end_ms - alert.emitted_at_ms, 0) / 1000.0)

    def set_open_groups(self, n: int) -> None:
        self.open_groups.set(max(n, 0))

    def set_in_flight(self, n: int) -> None:
        self.in_flight_notifications.set(max(n, 0))

    def render(self) -> bytes:
        """The Prometheus text exposition (content type :data:`CONTENT_TYPE_LATEST`)."""
        return generate_latest(self.registry)
