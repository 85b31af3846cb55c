"""`detector demo` (what `make run` runs): the whole path on the embedded broker.

Starts the embedded Tansu broker, produces a seeded stream of three models with injected
drifts, runs the sidecar and the router (with a local Slack-like receiver), prints each
alert as it arrives (read with read_committed) and each notification as the receiver
accepts it, then a summary table of what was injected and what was detected, with delays
in events.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from dataclasses import dataclass

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from detector.alerts import alert_line
from detector.config import DetectionSettings, KafkaSettings, LogSettings, Settings
from detector.kafka.runner import Sidecar
from detector.router.delivery import DeliveryReport
from detector.router.local_receiver import LocalReceiver
from detector.router.runner import Router
from detector.router.settings import RouterSettings
from detector.tuning.synthetic import Drift, StreamSpec, generate

INPUT_TOPIC = "demo.predictions"
ALERT_TOPIC = "demo.drift-alerts"
DEADLINE_S = 110.0
#: After the stream: how long the demo waits for the router to resolve its groups.
RESOLVE_DEADLINE_S = 30.0

#: The demo router: one Slack notification per model and incident, resolved 5 s after the
#: model's last alert. Production values are longer (README, "Routing alerts").
DEMO_ROUTES: dict[str, object] = {
    "resolve_timeout": "5s",
    "route": {
        "receiver": "demo-slack",
        "group_by": ["model"],
        "group_wait": "2s",
        "group_interval": "5s",
        "repeat_interval": "4h",
    },
}


@dataclass(frozen=True)
class Injected:
    model: str
    drift: Drift


def demo_streams(events_per_model: int, seed: int) -> list[StreamSpec]:
    n = events_per_model
    return [
        StreamSpec("fraud", n, seed, drifts=(Drift("amount", "mean", n * 4 // 10),)),
        StreamSpec(
            "credit",
            n,
            seed + 1,
            drifts=(
                Drift("utilisation", "variance", n * 3 // 10),
                Drift("country", "categorical", n * 6 // 10),
            ),
        ),
        StreamSpec(
            "recommender",
            n,
            seed + 2,
            drifts=(
                Drift("channel", "missing_rate", n * 5 // 10),
                Drift("__prediction__", "prediction", n * 7 // 10),
            ),
        ),
    ]


def _produce(bootstrap: str, specs: list[StreamSpec], done: threading.Event) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10})
    streams = [generate(spec) for spec in specs]
    # Interleave the models, a few thousand events a second, so alerts arrive over time.
    for i, batch in enumerate(zip(*streams, strict=True)):
        for event in batch:
            producer.produce(INPUT_TOPIC, key=event["model"], value=orjson.dumps(event))
        if i % 500 == 499:
            producer.flush()
            time.sleep(0.2)
    producer.flush()
    done.set()


def _caught_up(bootstrap: str, group: str, partitions: int) -> bool:
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = [TopicPartition(INPUT_TOPIC, p) for p in range(partitions)]
        committed = probe.committed(tps, timeout=10)
        for tp in committed:
            _, high = probe.get_watermark_offsets(tp, timeout=10)
            if high > 0 and tp.offset < high:
                return False
        return True
    finally:
        probe.close()


def _index(event_id: str) -> int:
    return int(event_id.rsplit("-", 1)[1])


def run_demo(events_per_model: int = 20_000, seed: int = 7) -> int:
    from detector.broker import EmbeddedBroker
    from detector.log import configure_logging

    configure_logging(LogSettings(level="warning"))
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None if external else EmbeddedBroker().start()
    try:
        bootstrap = external or (broker.bootstrap_servers if broker else "")
        print(f"broker:  {bootstrap}" + (" (embedded Tansu)" if broker else ""))
        with LocalReceiver() as receiver:
            code = _run(bootstrap, events_per_model, seed, Sidecar, receiver.url)
        gc.collect()  # close every Kafka client before the broker goes away
        return code
    finally:
        if broker is not None:
            broker.stop()


def demo_router_settings(bootstrap: str, group: str, receiver_url: str) -> RouterSettings:
    tree = {
        **DEMO_ROUTES,
        "receivers": [{"name": "demo-slack", "slack_configs": [{"api_url": receiver_url}]}],
        "kafka": {
            "bootstrap_servers": bootstrap,
            "alert_topic": ALERT_TOPIC,
            "group_id": f"{group}-router",
            "session_timeout_ms": 6000,
        },
        "log": {"level": "warning"},
    }
    return RouterSettings.model_validate(tree)


def notification_line(report: DeliveryReport) -> str:
    """One readable line for an accepted notification."""
    note = report.notification
    features = ", ".join(f"{a.labels['feature']} {a.labels['drift_type']}" for a in note.alerts)
    ids = ", ".join(a.alert_id[:8] for a in note.alerts)
    status = note.status.upper()
    where = note.integration.receiver
    if not report.outcome.accepted:
        return f"-> {where:10} DEAD-LETTERED ({report.outcome.reason}) {note.group_key} [{ids}]"
    return f"-> {where:10} {status:8} {note.group_key}: {features} [alert ids {ids}]"


def _run(
    bootstrap: str,
    events_per_model: int,
    seed: int,
    sidecar_type: type[Sidecar],
    receiver_url: str,
) -> int:
    started = time.monotonic()
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(INPUT_TOPIC, 3, 1), NewTopic(ALERT_TOPIC, 1, 1)])
    for future in futures.values():
        try:
            future.result(timeout=30)
        except Exception as exc:  # already exists on an external cluster: fine
            if "already exists" not in str(exc).lower():
                raise
    group = f"demo-{int(time.time())}"
    settings = Settings(
        kafka=KafkaSettings(
            bootstrap_servers=bootstrap,
            input_topic=INPUT_TOPIC,
            alert_topic=ALERT_TOPIC,
            group_id=group,
            session_timeout_ms=6000,
            checkpoint_interval_s=0.5,
        ),
        detection=DetectionSettings(),
    )
    specs = demo_streams(events_per_model, seed)
    injected = [Injected(s.model, d) for s in specs for d in s.drifts]
    print(
        f"stream:  {len(specs)} models x {events_per_model:,} events, seed {seed}, "
        f"{len(injected)} injected drifts"
    )
    sidecar = sidecar_type(settings)
    runner = threading.Thread(target=sidecar.run, name="sidecar", daemon=True)
    runner.start()
    notifications: list[DeliveryReport] = []

    def accepted(report: DeliveryReport) -> None:
        notifications.append(report)
        print("  " + notification_line(report), flush=True)

    router = Router(demo_router_settings(bootstrap, group, receiver_url), on_report=accepted)
    routing = threading.Thread(target=router.run, name="router", daemon=True)
    routing.start()
    produced = threading.Event()
    producer = threading.Thread(
        target=_produce, args=(bootstrap, specs, produced), name="producer", daemon=True
    )
    reader = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{group}-reader",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "session.timeout.ms": 6000,
        }
    )
    reader.subscribe([ALERT_TOPIC])
    sidecar.started.wait(30)
    producer.start()
    print("alerts (as they arrive) and notifications (-> as the receiver accepts them):")
    alerts: list[dict[str, object]] = []
    last_check = 0.0
    while time.monotonic() - started < DEADLINE_S:
        message = reader.poll(0.25)
        if message is not None and message.error() is None:
            alert = orjson.loads(message.value() or b"{}")
            alerts.append(alert)
            print("  " + alert_line(alert), flush=True)
            continue
        if produced.is_set() and time.monotonic() - last_check > 1.0:
            last_check = time.monotonic()
            if _caught_up(bootstrap, group, 3):
                # Committed offsets cover everything; their alerts are committed too.
                break
    sidecar.stop()
    runner.join(30)
    # The router resolves each model's group resolve_timeout after its last alert.
    deadline = time.monotonic() + RESOLVE_DEADLINE_S
    while time.monotonic() < deadline and (
        router.counts["alerts"] < len(alerts) or router.dispatcher.open_groups()
    ):
        message = reader.poll(0.25)
        if message is not None and message.error() is None:
            alert = orjson.loads(message.value() or b"{}")
            alerts.append(alert)
            print("  " + alert_line(alert), flush=True)
    router.stop()
    routing.join(30)
    while True:
        message = reader.poll(1.0)
        if message is None:
            break
        if message.error() is None:
            alert = orjson.loads(message.value() or b"{}")
            alerts.append(alert)
            print("  " + alert_line(alert), flush=True)
    reader.close()
    _summary(injected, alerts, sidecar.counts, time.monotonic() - started)
    firing = sum(1 for r in notifications if r.notification.status == "firing")
    print(
        f"  notifications accepted: {sum(r.outcome.accepted for r in notifications)} "
        f"({firing} firing, {len(notifications) - firing} resolved) for "
        f"{router.counts['alerts']} alerts routed"
    )
    _audit_line(settings)
    reproduced = _reproduce_line(settings, alerts)
    missed = [i for i in injected if not _match(i, alerts)]
    return 1 if missed or not reproduced else 0


def _audit_line(settings: Settings) -> None:
    """The audit log's verification, as `detector audit verify` does it."""
    from detector.audit.chain import verify
    from detector.kafka.audit import read_log

    topic = settings.audit.topic_for(settings.kafka)
    result = verify(read_log(settings.kafka, topic, group_id=settings.kafka.group_id))
    alerts = sum(chain.kinds.get("alert", 0) for chain in result.chains.values())
    state = "intact" if result.ok else f"BROKEN at {result.broken}"
    print(
        f"  audit log {topic}: {state}, {result.records} records ({alerts} alerts) in "
        f"{len(result.chains)} chains (detector audit verify)"
    )


def _reproduce_line(settings: Settings, alerts: list[dict[str, object]]) -> bool:
    """Each alert re-derived from the state archive, as `detector reproduce` does it."""
    from detector.kafka.archive import reproduce

    same = sum(reproduce(settings, str(alert["alert_id"])).reproduced for alert in alerts)
    print(
        f"  alerts re-derived from the state archive and the input topic: {same} of "
        f"{len(alerts)} the same (detector reproduce ALERT_ID)"
    )
    return same == len(alerts)


def _match(item: Injected, alerts: list[dict[str, object]]) -> dict[str, object] | None:
    kind = item.drift.kind
    for alert in alerts:
        trigger = alert["trigger"]
        assert isinstance(trigger, dict)
        if (
            alert["model"] == item.model
            and alert["feature"] == item.drift.feature
            and alert["drift_type"] == kind
            and _index(str(trigger["event_id"])) >= item.drift.start
        ):
            return alert
    return None


def _summary(
    injected: list[Injected],
    alerts: list[dict[str, object]],
    counts: dict[str, int],
    elapsed: float,
) -> None:
    print()
    print("summary:")
    header = (
        f"  {'model':12} {'feature':16} {'injected':13} {'at event':>9}  "
        f"{'detected':13} {'at event':>9} {'delay':>7}"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    matched: set[str] = set()
    for item in injected:
        alert = _match(item, alerts)
        if alert is None:
            print(
                f"  {item.model:12} {item.drift.feature:16} {item.drift.kind:13} "
                f"{item.drift.start:>9,}  {'MISSED':13} {'':>9} {'':>7}"
            )
            continue
        matched.add(str(alert["alert_id"]))
        trigger = alert["trigger"]
        assert isinstance(trigger, dict)
        at = _index(str(trigger["event_id"]))
        print(
            f"  {item.model:12} {item.drift.feature:16} {item.drift.kind:13} "
            f"{item.drift.start:>9,}  {alert['drift_type']!s:13} {at:>9,} "
            f"{at - item.drift.start:>7,}"
        )
    for alert in alerts:
        if str(alert["alert_id"]) not in matched:
            trigger = alert["trigger"]
            assert isinstance(trigger, dict)
            print(
                f"  {alert['model']!s:12} {alert['feature']!s:16} {'(none)':13} {'':>9}  "
                f"{alert['drift_type']!s:13} {_index(str(trigger['event_id'])):>9,} {'false':>7}"
            )
    print()
    print(
        f"  events processed: {counts.get('events', 0):,}   alerts: {len(alerts)}   "
        f"dead letters: {counts.get('dead_letters', 0)}   time: {elapsed:.1f} s"
    )
