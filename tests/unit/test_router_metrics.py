"""The router's Prometheus metrics: names, labels, counts, and the /metrics endpoint."""

from __future__ import annotations

from metrics_support import Sample, parse_samples
from prometheus_client.parser import text_string_to_metric_families

from detector.ops.health import Health, HttpServer
from detector.router.delivery import DeliveryReport
from detector.router.metrics import CONTENT_TYPE_LATEST, RouterMetrics
from detector.router.model import ACCEPTED, Integration, Notification, Outcome, RoutedAlert

NS = "drift_router_"
T0_MS = 1_700_000_000_000
SECRET_URL = "https://hooks.example.test/services/T0/B0/SeCrEtXyZ"

SLACK = Integration("slack-ml/slack/0", "slack-ml", "slack", SECRET_URL, secrets=("SeCrEtXyZ",))
PAGER = Integration("oncall/pagerduty/0", "oncall", "pagerduty", "https://events.test/v2")


def _samples(metrics: RouterMetrics) -> dict[Sample, float]:
    return parse_samples(metrics.render())


def _value(metrics: RouterMetrics, name: str, **labels: str) -> float:
    return _samples(metrics).get((NS + name, tuple(sorted(labels.items()))), 0.0)


def _alert(alert_id: str, emitted_ms: int) -> RoutedAlert:
    return RoutedAlert(alert_id, {"model": "churn"}, emitted_ms, {"alert_id": alert_id})


def _report(
    integration: Integration,
    outcome: Outcome,
    *,
    attempts: int = 1,
    alerts: tuple[RoutedAlert, ...] = (),
    new_ids: frozenset[str] | None = None,
    last_ms: int | None = T0_MS,
    abandoned: bool = False,
) -> DeliveryReport:
    notification = Notification(
        integration=integration,
        route_id="root/0",
        group_key="{}:{model=churn}",
        group_labels={"model": "churn"},
        status="firing",
        alerts=alerts,
        new_ids=frozenset(a.alert_id for a in alerts) if new_ids is None else new_ids,
        created_ms=T0_MS,
        resolve_timeout_ms=300_000,
    )
    return DeliveryReport(
        notification=notification,
        outcome=outcome,
        attempts=attempts,
        retries=max(attempts - 1, 0),
        first_attempt_ms=None if last_ms is None else T0_MS,
        last_attempt_ms=last_ms,
        abandoned=abandoned,
    )


def test_render_has_every_family() -> None:
    metrics = RouterMetrics(process_metrics=False)
    text = metrics.render().decode("utf-8")
    names = {family.name for family in text_string_to_metric_families(text)}
    expected = {
        "alerts_received",
        "alerts_too_old",
        "alerts_duplicate",
        "alerts_invalid",
        "alerts_silenced",
        "notifications",
        "notification_retries",
        "dead_letters",
        "alert_to_notification_seconds",
        "open_groups",
        "in_flight_notifications",
    }
    assert {NS + name for name in expected} <= names
    assert all(name.startswith(NS) for name in names)


def test_process_metrics_are_optional() -> None:
    with_process = RouterMetrics().render().decode("utf-8")
    without = RouterMetrics(process_metrics=False).render().decode("utf-8")
    assert "python_info" in with_process
    assert "python_info" not in without


def test_alert_counters_and_gauges() -> None:
    metrics = RouterMetrics(process_metrics=False)
    metrics.received()
    metrics.received(4)
    metrics.too_old()
    metrics.duplicate(2)
    metrics.invalid()
    metrics.silenced(3)
    metrics.set_open_groups(7)
    metrics.set_in_flight(2)
    assert _value(metrics, "alerts_received_total") == 5
    assert _value(metrics, "alerts_too_old_total") == 1
    assert _value(metrics, "alerts_duplicate_total") == 2
    assert _value(metrics, "alerts_invalid_total") == 1
    assert _value(metrics, "alerts_silenced_total") == 3
    assert _value(metrics, "open_groups") == 7
    assert _value(metrics, "in_flight_notifications") == 2
    metrics.set_in_flight(0)
    assert _value(metrics, "in_flight_notifications") == 0


def test_delivered_counts_outcomes_retries_dead_letters_and_latency() -> None:
    metrics = RouterMetrics(process_metrics=False)
    alerts = (_alert("a1", T0_MS - 2_000), _alert("a2", T0_MS - 30_000))
    # Accepted after 2 retries: two alerts observed (2 s and 30 s).
    metrics.delivered(_report(SLACK, ACCEPTED, attempts=3, alerts=alerts), T0_MS + 999)
    # A repeat of the same group, nothing new: counted, no latency observed.
    metrics.delivered(_report(SLACK, ACCEPTED, alerts=alerts, new_ids=frozenset()), T0_MS)
    # Given up on after 5 attempts.
    exhausted = Outcome(False, False, "retries_exhausted", status=503, body="busy")
    metrics.delivered(_report(PAGER, exhausted, attempts=5, alerts=alerts), T0_MS)
    # Permanent.
    rejected = Outcome(False, False, "http_4xx", status=400)
    metrics.delivered(_report(PAGER, rejected, alerts=alerts), T0_MS)
    # Abandoned by a stop: counted by outcome, not a dead letter.
    abandoned = Outcome(False, True, "abandoned")
    metrics.delivered(_report(SLACK, abandoned, attempts=0, last_ms=None, abandoned=True), T0_MS)

    slack = {"receiver": "slack-ml", "integration": "slack-ml/slack/0"}
    pager = {"receiver": "oncall", "integration": "oncall/pagerduty/0"}
    assert _value(metrics, "notifications_total", outcome="accepted", **slack) == 2
    assert _value(metrics, "notifications_total", outcome="abandoned", **slack) == 1
    assert _value(metrics, "notifications_total", outcome="retries_exhausted", **pager) == 1
    assert _value(metrics, "notifications_total", outcome="http_4xx", **pager) == 1
    assert _value(metrics, "notification_retries_total", **slack) == 2
    assert _value(metrics, "notification_retries_total", **pager) == 4
    assert _value(metrics, "dead_letters_total", receiver="oncall", reason="retries_exhausted") == 1
    assert _value(metrics, "dead_letters_total", receiver="oncall", reason="http_4xx") == 1
    assert _value(metrics, "dead_letters_total", receiver="slack-ml", reason="abandoned") == 0

    latency = "alert_to_notification_seconds"
    assert _value(metrics, latency + "_count", receiver="slack-ml") == 2
    assert _value(metrics, latency + "_sum", receiver="slack-ml") == 32.0
    assert _value(metrics, latency + "_bucket", receiver="slack-ml", le="2.5") == 1
    assert _value(metrics, latency + "_bucket", receiver="slack-ml", le="30.0") == 2
    assert _value(metrics, latency + "_bucket", receiver="slack-ml", le="86400.0") == 2
    assert _value(metrics, latency + "_count", receiver="oncall") == 0

    text = metrics.render().decode("utf-8")
    assert "SeCrEtXyZ" not in text and "hooks.example.test" not in text


def test_latency_buckets_span_a_tenth_of_a_second_to_a_day() -> None:
    metrics = RouterMetrics(process_metrics=False)
    metrics.delivered(_report(SLACK, ACCEPTED, alerts=(_alert("x", T0_MS),)), T0_MS)
    les = sorted(
        float(dict(labels)["le"])
        for (name, labels) in _samples(metrics)
        if name == NS + "alert_to_notification_seconds_bucket"
    )
    assert les[0] == 0.1
    assert les[-2] == 86400.0 and les[-1] == float("inf")


def test_future_emitted_at_counts_as_zero_latency() -> None:
    metrics = RouterMetrics(process_metrics=False)
    report = _report(SLACK, ACCEPTED, alerts=(_alert("x", T0_MS + 60_000),))
    metrics.delivered(report, T0_MS)
    name = "alert_to_notification_seconds"
    assert _value(metrics, name + "_count", receiver="slack-ml") == 1
    assert _value(metrics, name + "_sum", receiver="slack-ml") == 0.0


def test_served_by_the_health_http_server() -> None:
    metrics = RouterMetrics(process_metrics=False)
    metrics.received(3)
    # HttpServer only calls metrics.render() (its annotation names the sidecar's Metrics).
    server = HttpServer(Health(), metrics, host="127.0.0.1", port=0)
    try:
        status, content_type, body = server.respond("/metrics")
    finally:
        server.stop()
    assert status == 200 and content_type == CONTENT_TYPE_LATEST
    assert b"drift_router_alerts_received_total 3.0" in body
