"""The sidecar's failure paths on the real broker: rewind, repeated rewind, lost partitions.

The failures are injected through the Sidecar's client factories, by wrapping the real
clients: a producer whose ``commit_transaction`` fails (before it reaches the broker) at
chosen calls, and a consumer that stalls past ``max.poll.interval.ms``, so that librdkafka
leaves the group and reports the partitions lost. Everything else is Kafka's own doing:
the transactions are really aborted, the changelog really read back, the offsets really
committed. The committed alerts are read with transaction markers applied
(``support.alert_view``; Tansu hands aborted records to read_committed consumers).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer
from support import (
    DENSE_DETECTION,
    alert_view,
    expected_alerts,
    settings_for,
    wavy_events,
    write_config,
)

from detector.config import Settings
from detector.kafka.output import FatalKafkaError
from detector.kafka.runner import MAX_REWINDS, Sidecar

pytestmark = pytest.mark.integration

EVENTS_PER_PARTITION = 3000


class WrappedProducer:
    """The real producer; ``commit_transaction`` fails at the calls in ``fail_at`` (1-based;
    ``None``: every call) with an abortable error, after the transaction's records reached
    the broker (as when the commit itself fails), so they are there, and aborted. Counts
    the alerts produced in the open transaction."""

    def __init__(self, producer: Producer, alert_topic: str, fail_at: set[int] | None) -> None:
        self._producer = producer
        self._alert_topic = alert_topic
        self.fail_at = fail_at
        self.commits = 0  # calls of commit_transaction
        self.failures = 0
        self.committed_offsets: list[dict[int, int]] = []  # per successful commit
        self.open_alerts = 0
        self._offsets: dict[int, int] = {}

    def produce(self, topic: str, *args: Any, **kwargs: Any) -> None:
        self._producer.produce(topic, *args, **kwargs)
        if topic == self._alert_topic:
            self.open_alerts += 1

    def send_offsets_to_transaction(self, offsets: list[Any], *args: Any) -> None:
        self._producer.send_offsets_to_transaction(offsets, *args)
        self._offsets = {tp.partition: tp.offset for tp in offsets}

    def commit_transaction(self, *args: Any) -> None:
        self.commits += 1
        if self.fail_at is None or self.commits in self.fail_at:
            self.failures += 1
            assert self._producer.flush(30) == 0
            error = KafkaError(KafkaError._TRANSPORT, "injected", txn_requires_abort=True)
            raise KafkaException(error)
        self._producer.commit_transaction(*args)
        self.committed_offsets.append(self._offsets)
        self.open_alerts = 0

    def abort_transaction(self, *args: Any) -> None:
        self._producer.abort_transaction(*args)
        self.open_alerts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)


class WrappedConsumer:
    """The real consumer; records seeks and the rebalance callbacks, and can stall once."""

    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer
        self.seeks: list[tuple[int, int]] = []
        self.callbacks: list[tuple[str, list[int]]] = []
        self.stall_when: Any = None  # () -> bool, checked before each consume
        self.stall_s = 0.0
        self.stalled = False

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        def recorded(name: str, callback: Any) -> Any:
            def call(consumer: Any, partitions: list[Any]) -> None:
                self.callbacks.append((name, sorted(tp.partition for tp in partitions)))
                callback(consumer, partitions)

            return call

        wrapped = {name: recorded(name, cb) for name, cb in callbacks.items()}
        self._consumer.subscribe(topics, **wrapped)

    def seek(self, tp: Any) -> None:
        self.seeks.append((tp.partition, tp.offset))
        self._consumer.seek(tp)

    def consume(self, *args: Any, **kwargs: Any) -> list[Any]:
        if not self.stalled and self.stall_when is not None and self.stall_when():
            self.stalled = True
            time.sleep(self.stall_s)  # a hung loop turn: no poll for this long
        return self._consumer.consume(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)


def _setup(kafka: Any, unique: Any, tmp_path: Path) -> tuple[Settings, str, dict[int, int]]:
    """Two input partitions of wavy streams (many alerts), already produced."""
    source = kafka.create_topic(unique("in"), partitions=2)
    for partition in (0, 1):
        events = wavy_events(f"m{partition}", EVENTS_PER_PARTITION, period=300 + 70 * partition)
        kafka.produce(source, events, partition=partition)
    config = write_config(
        tmp_path / "config.yaml",
        kafka.bootstrap_servers,
        detection=DENSE_DETECTION,
        input_topic=source,
        alert_topic=f"{source}.alerts",
        group_id=f"{source}.group",
        # A checkpoint every ~1500 events: a few per run, each with alerts in it.
        checkpoint_events=1500,
        checkpoint_interval_s=30.0,
        batch_size=500,
    )
    return settings_for(config), source, kafka.end_offsets(source)


class Running:
    """A Sidecar with wrapped clients, run in a thread of the test process."""

    def __init__(self, settings: Settings, fail_at: set[int] | None, max_poll_ms: int = 0):
        self.producer: WrappedProducer | None = None
        self.consumer: WrappedConsumer | None = None

        def producer_factory(config: dict[str, Any]) -> Any:
            self.producer = WrappedProducer(Producer(config), settings.kafka.alert_topic, fail_at)
            return self.producer

        def consumer_factory(config: dict[str, Any]) -> Any:
            if max_poll_ms:
                config = {**config, "max.poll.interval.ms": max_poll_ms}
            self.consumer = WrappedConsumer(Consumer(config))
            return self.consumer

        self.sidecar = Sidecar(
            settings, producer_factory=producer_factory, consumer_factory=consumer_factory
        )
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="sidecar", daemon=True)

    def _run(self) -> None:
        try:
            self.sidecar.run()
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sidecar.stop()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "sidecar did not stop"


def _check_committed_alerts(kafka: Any, settings: Settings, source: str) -> set[Any]:
    """The committed alerts are exactly those of the pure core over the input, once each."""
    expected = expected_alerts(settings, kafka.read_all(source))
    view = alert_view(kafka, settings.kafka.alert_topic)
    assert not view.open
    duplicates = {k: c for k, c in Counter(view.committed).items() if c > 1}
    assert not duplicates, f"alerts committed twice: {duplicates}"
    assert set(view.committed) == expected
    return expected


def test_failed_checkpoints_rewind_and_give_the_same_alerts(
    kafka: Any, unique: Any, tmp_path: Path
) -> None:
    """Checkpoints 2 and 3 fail: each time the transaction is aborted, every assigned
    partition seeked back to the offset checkpoint 1 committed and its state restored from
    the changelog; the events are processed again and the committed alerts are exactly
    those of an uninterrupted run."""
    settings, source, ends = _setup(kafka, unique, tmp_path)
    with Running(settings, fail_at={2, 3}) as running:
        kafka.wait_committed(settings.kafka.group_id, source, ends)
    assert running.error is None
    producer, consumer = running.producer, running.consumer
    assert producer is not None and consumer is not None
    assert producer.failures == 2
    first = producer.committed_offsets[0]
    back = sorted((p, first.get(p, OFFSET_BEGINNING)) for p in (0, 1))
    assert any(offset > 0 for _, offset in back)  # state restored from a real changelog
    assert consumer.seeks == back + back  # once per failed checkpoint
    counts = running.sidecar.counts
    assert counts["events"] > sum(ends.values())  # some were processed twice
    expected = _check_committed_alerts(kafka, settings, source)
    assert len(expected) > 5
    assert counts["alerts"] > len(expected)  # the failed checkpoints held alerts too


def test_max_rewinds_consecutive_failures_stop_the_sidecar(
    kafka: Any, unique: Any, tmp_path: Path
) -> None:
    """Every checkpoint fails: after MAX_REWINDS rewinds the next failure ends run() with
    FatalKafkaError, every transaction aborted and no offset committed."""
    settings, source, _ = _setup(kafka, unique, tmp_path)
    with Running(settings, fail_at=None) as running:
        running.thread.join(timeout=120)
        assert not running.thread.is_alive(), "the sidecar did not give up"
    assert isinstance(running.error, FatalKafkaError)
    assert f"{MAX_REWINDS} consecutive checkpoints failed" in str(running.error)
    assert running.producer is not None and running.consumer is not None
    assert running.producer.failures == MAX_REWINDS + 1
    assert len(running.consumer.seeks) == 2 * MAX_REWINDS  # both partitions, per rewind
    assert set(running.consumer.seeks) == {(0, OFFSET_BEGINNING), (1, OFFSET_BEGINNING)}
    assert kafka.committed(settings.kafka.group_id, source) == {}
    view = alert_view(kafka, settings.kafka.alert_topic)
    assert not view.committed and not view.open
    assert view.aborted  # alerts were produced, and aborted


def test_lost_partitions_abort_and_restore_from_the_changelog(
    kafka: Any, unique: Any, tmp_path: Path
) -> None:
    """A loop turn hangs past max.poll.interval.ms while a transaction holds alerts:
    librdkafka leaves the group and reports the partitions lost. The sidecar aborts the
    transaction and drops their state; when they are assigned again, their state comes back
    from the changelog and the committed alerts are exactly those of an uninterrupted run."""
    settings, source, ends = _setup(kafka, unique, tmp_path)
    max_poll_ms = settings.kafka.session_timeout_ms  # the least librdkafka accepts
    running = Running(settings, fail_at=set(), max_poll_ms=max_poll_ms)

    def open_alerts_after_a_commit() -> bool:
        producer = running.producer
        return (
            producer is not None and bool(producer.committed_offsets) and producer.open_alerts > 0
        )

    with running:
        deadline = time.monotonic() + 30
        while running.consumer is None:  # created at start-up, in the sidecar's thread
            assert time.monotonic() < deadline and running.thread.is_alive()
            time.sleep(0.01)
        running.consumer.stall_when = open_alerts_after_a_commit
        running.consumer.stall_s = max_poll_ms / 1000 + 4.0
        kafka.wait_committed(settings.kafka.group_id, source, ends)
    assert running.error is None
    producer, consumer = running.producer, running.consumer
    assert producer is not None and consumer.stalled
    events = [name for name, _ in consumer.callbacks]
    assert events[:3] == ["on_assign", "on_lost", "on_assign"], consumer.callbacks
    assert consumer.callbacks[1] == ("on_lost", [0, 1])
    view = alert_view(kafka, settings.kafka.alert_topic)
    assert view.aborted  # the open transaction's alerts
    expected = _check_committed_alerts(kafka, settings, source)
    assert len(expected) > 5
