"""The sidecar's bookkeeping on rewinds and lost partitions, with fake Kafka clients.

The fakes stand in for the clients the ``Sidecar`` takes from its factories: they record
every seek, assignment, offset commit and transaction, and keep a toy "cluster" (input log,
committed offsets, committed changelog entries) so that the restore after a rewind reads
what the last successful checkpoint wrote. These are unit tests of the runner's
bookkeeping only; the same paths run against the real broker in
``tests/integration/test_sidecar_shell.py``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, OFFSET_INVALID, KafkaError, KafkaException
from confluent_kafka import TopicPartition as TP

from detector.config import AuditSettings, DetectionSettings, KafkaSettings, Settings
from detector.core.engine import PartitionDetectors
from detector.core.records import InputRecord
from detector.kafka import runner
from detector.kafka.clients import admin_config, consumer_config, producer_config
from detector.kafka.output import FatalKafkaError
from detector.kafka.runner import MAX_REWINDS, Sidecar

TOPIC = "in"
DETECTION = DetectionSettings(reference_size=64, window_size=64, block_size=4, rearm_after=0)


def _events(model: str, n: int, period: int, seed: int) -> list[bytes]:
    """Feature ``x`` jumps between two means every ``period`` events: many detections."""
    rng = random.Random(f"{seed}-{model}")
    return [
        orjson.dumps(
            {
                "event_id": f"{model}-{i}",
                "model": model,
                "timestamp": 1_700_000_000_000 + i * 1000,
                "features": {"x": rng.gauss(3.0 * ((i // period) % 2), 1.0), "y": rng.random()},
                "prediction": rng.random(),
            }
        )
        for i in range(n)
    ]


def _injected(code: int = KafkaError._TRANSPORT) -> KafkaException:
    """An abortable, non-retriable, non-fatal error, as a failed commit raises it."""
    return KafkaException(KafkaError(code, "injected", txn_requires_abort=True))


class FakeMessage:
    def __init__(self, partition: int, offset: int, value: bytes) -> None:
        self._partition, self._offset, self._value = partition, offset, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes | None:
        return None


class Cluster:
    """What the fakes share: the input log, the group's committed offsets, what was
    produced (changelog entries and alerts, visible once committed) and a log of every
    client call worth checking. ``script``: steps run before consume() turns 2, 3, ...
    (turn 1 assigns every partition), the test's way to fire rebalance callbacks from
    inside the loop, as librdkafka does."""

    def __init__(
        self, log: Mapping[int, list[bytes]], script: Sequence[Callable[[Any], None]] = ()
    ) -> None:
        self.input = dict(log)
        self.script = list(script)
        self.committed: dict[int, int] = {}
        # Per changelog partition: (key, value, input_offset header), in produce order.
        self.changelog: dict[int, list[tuple[str, bytes | None, int | None]]] = {}
        self.alerts: list[bytes] = []
        self.calls: list[tuple[Any, ...]] = []
        self.stop: Callable[[], None] = lambda: None
        self.consumer: FakeConsumer | None = None
        self.producer: FakeProducer | None = None

    def consumer_factory(self, config: dict[str, Any]) -> FakeConsumer:
        self.consumer = FakeConsumer(self, config)
        return self.consumer

    def producer_factory(self, config: dict[str, Any]) -> FakeProducer:
        self.producer = FakeProducer(self, config)
        return self.producer

    def admin_factory(self, config: dict[str, Any]) -> FakeAdmin:
        return FakeAdmin(self)

    def restore(
        self,
        settings: Settings,
        committed: Mapping[int, int | None],
        beat: Callable[[], None] = lambda: None,
        labels_committed: Mapping[int, int | None] | None = None,
    ) -> dict[int, PartitionDetectors]:
        """Stands in for changelog.restore_partitions: per key, the newest entry taken at or
        before the committed offset (the rule of detector.kafka.changelog)."""
        self.calls.append(("restore", dict(committed)))
        states = {}
        for partition, offset in committed.items():
            latest: dict[str, bytes | None] = {}
            for key, value, at in self.changelog.get(partition, []):
                if at is None or (offset is not None and at <= offset):
                    latest[key] = value
            entries = {k: v for k, v in latest.items() if v is not None}
            states[partition] = PartitionDetectors.restore(
                settings.detection, TOPIC, partition, entries
            )
        return states


class FakeAdmin:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def list_topics(self, timeout: float) -> Any:
        """Every topic the sidecar needs exists, with as many partitions as the input."""
        partitions = dict.fromkeys(self.cluster.input)
        kafka = KafkaSettings(input_topic=TOPIC)
        names = [TOPIC, kafka.alert_topic, kafka.dead_letter, kafka.changelog]
        return SimpleNamespace(
            topics={name: SimpleNamespace(error=None, partitions=partitions) for name in names}
        )

    def create_topics(self, topics: list[Any], **kwargs: Any) -> dict[str, Any]:
        assert not topics
        return {}


class FakeConsumer:
    """A group consumer of ``cluster.input``: half of each batch from each partition.

    Stops the sidecar once every assigned partition is consumed to its end.
    """

    def __init__(self, cluster: Cluster, config: dict[str, Any]) -> None:
        self.cluster = cluster
        self.positions: dict[int, int] = {}
        self.callbacks: dict[str, Any] = {}
        self.script: list[Callable[[FakeConsumer], None]] = [
            lambda c: c.fire("on_assign", sorted(cluster.input)),
            *cluster.script,
        ]
        self.turns = 0
        self.commit_failures = 0

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        assert topics == [TOPIC]
        self.callbacks = callbacks

    def fire(self, callback: str, partitions: list[int]) -> None:
        self.callbacks[callback](self, [TP(TOPIC, p) for p in partitions])

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        self.turns += 1
        if self.script:
            self.script.pop(0)(self)
        log = self.cluster.input
        if self.positions and all(self.positions[p] == len(log[p]) for p in self.positions):
            self.cluster.stop()  # the stop checkpoint commits what is pending
        assert self.turns < 1000, "the sidecar makes no progress"
        out = []
        for partition in sorted(self.positions):
            start = self.positions[partition]
            stop = min(len(log[partition]), start + num_messages // 2)
            out += [FakeMessage(partition, o, log[partition][o]) for o in range(start, stop)]
            self.positions[partition] = stop
        return out

    def committed(self, partitions: list[TP], timeout: float) -> list[TP]:
        return [
            TP(TOPIC, tp.partition, self.cluster.committed.get(tp.partition, OFFSET_INVALID))
            for tp in partitions
        ]

    def assign(self, partitions: list[TP]) -> None:
        self.cluster.calls.append(("assign", [(tp.partition, tp.offset) for tp in partitions]))
        for tp in partitions:
            self.positions[tp.partition] = max(tp.offset, 0)

    def seek(self, tp: TP) -> None:
        self.cluster.calls.append(("seek", tp.partition, tp.offset))
        assert tp.partition in self.positions, "seek of a partition not assigned"
        self.positions[tp.partition] = 0 if tp.offset == OFFSET_BEGINNING else tp.offset

    def unassign(self, partitions: list[int]) -> None:
        for p in partitions:
            del self.positions[p]

    def get_watermark_offsets(self, tp: TP, cached: bool = False) -> tuple[int, int]:
        return 0, len(self.cluster.input[tp.partition])

    def consumer_group_metadata(self) -> object:
        return object()

    def commit(self, offsets: list[TP], asynchronous: bool) -> None:  # at-least-once
        if self.commit_failures:
            self.commit_failures -= 1
            self.cluster.calls.append(("commit failed",))
            raise _injected()
        self.cluster.calls.append(("commit",))
        self.cluster.committed.update({tp.partition: tp.offset for tp in offsets})

    def close(self) -> None:
        if self.positions:
            self.fire("on_revoke", sorted(self.positions))


class FakeProducer:
    """Transactions (exactly-once) or plain produce and flush (at-least-once): what is
    produced becomes visible in the cluster when it commits (flush, for at-least-once)."""

    def __init__(self, cluster: Cluster, config: dict[str, Any]) -> None:
        self.cluster = cluster
        self.transactional = "transactional.id" in config
        self.pending: list[tuple[str, int | None, dict[str, Any], bytes | None]] = []
        self.offsets: list[TP] = []
        self.commit_failures = 0

    def init_transactions(self, timeout: float) -> None:
        pass

    def begin_transaction(self) -> None:
        assert not self.pending
        self.cluster.calls.append(("begin",))

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.pending.append((topic, kwargs.get("partition"), kwargs, kwargs["value"]))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        if not self.transactional:
            self._publish()
        return 0

    def send_offsets_to_transaction(self, offsets: list[TP], *args: Any) -> None:
        self.offsets = list(offsets)

    def commit_transaction(self, timeout: float) -> None:
        if self.commit_failures:
            self.commit_failures -= 1
            self.cluster.calls.append(("commit failed",))
            raise _injected()
        self.cluster.calls.append(("commit",))
        self._publish()
        self.cluster.committed.update({tp.partition: tp.offset for tp in self.offsets})
        self.offsets = []

    def abort_transaction(self, timeout: float) -> None:
        self.cluster.calls.append(("abort", len(self.pending)))
        self.pending, self.offsets = [], []

    def _publish(self) -> None:
        kafka = KafkaSettings(input_topic=TOPIC)
        for topic, partition, kwargs, value in self.pending:
            if topic == kafka.changelog:
                assert partition is not None
                headers = dict(kwargs.get("headers") or [])
                at = headers.get("input_offset")
                entry = (kwargs["key"].decode(), value, None if at is None else int(at))
                self.cluster.changelog.setdefault(partition, []).append(entry)
            elif topic == kafka.alert_topic:
                assert value is not None
                self.cluster.alerts.append(value)
        self.pending = []


def _settings(guarantee: str) -> Settings:
    kafka = KafkaSettings(
        input_topic=TOPIC,
        processing_guarantee=guarantee,  # type: ignore[arg-type]
        checkpoint_events=700,
        checkpoint_interval_s=3600.0,
        batch_size=400,
    )
    # The audit log reads its topic with a consumer of its own (not from the factories):
    # it runs against the real broker (tests/integration/test_audit.py, test_recovery.py).
    return Settings(kafka=kafka, detection=DETECTION, audit=AuditSettings(enabled=False))


def _expected(log: Mapping[int, list[bytes]], partitions: list[int]) -> set[tuple[int, int, str]]:
    """(partition, offset, feature) of every detection of an uninterrupted run."""
    out = set()
    for partition in partitions:
        core = PartitionDetectors(DETECTION, TOPIC, partition)
        records = [InputRecord(TOPIC, partition, o, v) for o, v in enumerate(log[partition])]
        out |= {(d.partition, d.offset, d.feature) for d in core.process(records).detections}
    return out


def _alerts(cluster: Cluster) -> list[tuple[int, int, str]]:
    keys = []
    for value in cluster.alerts:
        alert = orjson.loads(value)
        keys.append((alert["trigger"]["partition"], alert["trigger"]["offset"], alert["feature"]))
    return keys


@pytest.fixture
def log() -> dict[int, list[bytes]]:
    return {0: _events("a", 3000, 300, 1), 1: _events("b", 3000, 370, 2)}


def _sidecar(settings: Settings, cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Sidecar:
    # The changelog is read by a consumer of its own (not one of the factories').
    monkeypatch.setattr(runner, "restore_partitions", cluster.restore)
    sidecar = Sidecar(
        settings,
        consumer_factory=cluster.consumer_factory,  # type: ignore[arg-type]
        producer_factory=cluster.producer_factory,  # type: ignore[arg-type]
        admin_factory=cluster.admin_factory,  # type: ignore[arg-type]
    )
    cluster.stop = sidecar.stop
    return sidecar


def _fail_commits(cluster: Cluster, n: int) -> None:
    """Make the next ``n`` commits fail: of the transaction (exactly-once) or of the offsets
    (at-least-once)."""
    assert cluster.producer is not None and cluster.consumer is not None
    if cluster.producer.transactional:
        cluster.producer.commit_failures = n
    else:
        cluster.consumer.commit_failures = n


def _noop(consumer: FakeConsumer) -> None:
    pass


# Turn 1 assigns and consumes 200 events of each partition, turn 2 as many: 800 events, the
# first checkpoint (checkpoint_events=700), which commits offsets 400 and 400. Then a
# checkpoint every second turn. The first detections are at offsets 495 and 527.


@pytest.mark.parametrize("guarantee", ["exactly-once", "at-least-once"])
def test_failed_checkpoint_rewinds_every_partition_to_its_committed_offset(
    guarantee: str, log: dict[int, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first checkpoint commits; the next two fail. Each failure aborts, restores every
    assigned partition's state from the changelog at its committed offset and seeks it back
    there; the events are processed again and the detections are exactly those of an
    uninterrupted run."""
    cluster = Cluster(log, script=[_noop, lambda c: _fail_commits(cluster, 2)])
    sidecar = _sidecar(_settings(guarantee), cluster, monkeypatch)
    sidecar.run()

    calls = cluster.calls
    failures = [i for i, call in enumerate(calls) if call == ("commit failed",)]
    assert len(failures) == 2
    assert calls.index(("commit",)) < failures[0]
    for failure in failures:
        after = calls[failure + 1 : failure + 5]
        if guarantee == "exactly-once":
            assert after[0][0] == "abort"  # the open transaction
            after = after[1:]
        assert after[0] == ("restore", {0: 400, 1: 400})
        assert sorted(after[1:3]) == [("seek", 0, 400), ("seek", 1, 400)]
    assert sidecar._rewinds == 0  # reset by the next successful checkpoint
    assert sidecar.counts["events"] == 6000 + 2 * 800  # two rewinds of 400 per partition
    alerts = _alerts(cluster)
    expected = _expected(log, [0, 1])
    assert len(expected) == 9
    assert any(400 <= offset < 800 for _, offset, _ in expected)  # in the failed checkpoints
    assert set(alerts) == expected
    if guarantee == "exactly-once":
        assert len(alerts) == len(expected)  # what was aborted never became visible
    assert cluster.committed == {0: 3000, 1: 3000}


def test_failed_first_checkpoint_rewinds_to_the_beginning(
    log: dict[int, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing committed yet, a rewind seeks to the beginning and starts fresh."""
    cluster = Cluster(log, script=[lambda c: _fail_commits(cluster, 1)])
    sidecar = _sidecar(_settings("exactly-once"), cluster, monkeypatch)
    sidecar.run()
    failure = cluster.calls.index(("commit failed",))
    assert cluster.calls[failure + 2] == ("restore", {0: None, 1: None})
    assert sorted(cluster.calls[failure + 3 : failure + 5]) == [
        ("seek", 0, OFFSET_BEGINNING),
        ("seek", 1, OFFSET_BEGINNING),
    ]
    alerts = _alerts(cluster)
    assert sorted(alerts) == sorted(_expected(log, [0, 1]))


@pytest.mark.parametrize("guarantee", ["exactly-once", "at-least-once"])
def test_max_rewinds_consecutive_failures_are_fatal(
    guarantee: str, log: dict[int, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """MAX_REWINDS consecutive failed checkpoints rewind; the next failure raises
    FatalKafkaError, and no offset is ever committed."""
    cluster = Cluster(log, script=[lambda c: _fail_commits(cluster, 10**6)])
    sidecar = _sidecar(_settings(guarantee), cluster, monkeypatch)
    with pytest.raises(FatalKafkaError, match=f"{MAX_REWINDS} consecutive checkpoints failed"):
        sidecar.run()
    calls = cluster.calls
    assert calls.count(("commit failed",)) == MAX_REWINDS + 1
    assert ("commit",) not in calls
    # One restore at assignment, one per rewind; none after the last failure.
    restores = [i for i, call in enumerate(calls) if call[0] == "restore"]
    assert len(restores) == 1 + MAX_REWINDS
    last_failure = max(i for i, call in enumerate(calls) if call == ("commit failed",))
    assert restores[-1] < last_failure
    assert cluster.committed == {}
    if guarantee == "exactly-once":
        assert cluster.alerts == []
    assert sidecar.assigned_partitions == []  # closed: the revoke dropped everything


def test_lost_partition_is_dropped_and_the_others_restored(
    log: dict[int, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Partition 1 is lost mid-stream, with alerts in the open transaction: the transaction
    is aborted, partition 1's state dropped (its events are no longer processed here), and
    partition 0 restored from its changelog and seeked back to its committed offset, so that
    its detections are still exactly those of an uninterrupted run."""
    expected = _expected(log, [0, 1])
    seen: dict[str, Any] = {}

    def lose(consumer: FakeConsumer) -> None:
        """At the first turn with alerts in the open transaction."""
        assert cluster.producer is not None
        if not any(topic.endswith("alerts") for topic, *_ in cluster.producer.pending):
            consumer.script.insert(0, lose)  # again at the next turn
            return
        seen.update(before=sidecar.assigned_partitions, committed=dict(cluster.committed))
        seen["at"] = len(cluster.calls)
        consumer.fire("on_lost", [1])
        consumer.unassign([1])  # the client unassigns after the callback
        seen["after"] = sidecar.assigned_partitions

    cluster = Cluster(log, script=[lose])
    sidecar = _sidecar(_settings("exactly-once"), cluster, monkeypatch)
    sidecar.run()

    assert seen["before"] == [0, 1] and seen["after"] == [0]
    committed = seen["committed"]
    assert committed == {0: 400, 1: 400}  # turn 3 brought the alerts at 495 and 527
    at = seen["at"]
    assert cluster.calls[at][0] == "abort"
    assert cluster.calls[at + 1 : at + 3] == [("restore", {0: 400}), ("seek", 0, 400)]
    assert cluster.committed == {0: 3000, 1: 400}
    alerts = _alerts(cluster)
    assert len(alerts) == len(set(alerts))
    assert {a for a in alerts if a[0] == 0} == {a for a in expected if a[0] == 0}
    # Partition 1: only what was committed before the loss.
    assert {a for a in alerts if a[0] == 1} == {a for a in expected if a[0] == 1 and a[1] < 400}


def test_factories_get_the_configurations_of_the_default_clients(
    log: dict[int, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each factory is called once, with the configuration the default client would get."""
    settings = _settings("exactly-once")
    cluster = Cluster(log)
    configs: dict[str, dict[str, Any]] = {}

    def recording(name: str, factory: Callable[[dict[str, Any]], Any]) -> Any:
        def make(config: dict[str, Any]) -> Any:
            assert name not in configs
            configs[name] = config
            return factory(config)

        return make

    monkeypatch.setattr(runner, "restore_partitions", cluster.restore)
    sidecar = Sidecar(
        settings,
        consumer_factory=recording("consumer", cluster.consumer_factory),
        producer_factory=recording("producer", cluster.producer_factory),
        admin_factory=recording("admin", cluster.admin_factory),
    )
    cluster.stop = sidecar.stop
    sidecar.run()

    def comparable(config: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in config.items() if k != "logger"}

    kafka = settings.kafka
    assert comparable(configs["admin"]) == comparable(admin_config(kafka))
    assert comparable(configs["producer"]) == comparable(producer_config(kafka))
    assert comparable(configs["consumer"]) == comparable(consumer_config(kafka))
    assert sorted(_alerts(cluster)) == sorted(_expected(log, [0, 1]))
