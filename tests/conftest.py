"""Shared fixtures: a real Kafka-compatible broker and helpers to talk to it.

``bootstrap_servers`` is ``$KAFKA_BOOTSTRAP_SERVERS`` when set, else an embedded Tansu broker
started once per session. Every test uses its own topics and groups (``unique``).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

#: Local fakes of Slack, PagerDuty and webhooks, and a real Alertmanager (tests/vendors.py).
pytest_plugins = ["vendors"]

#: Tansu joins a group in ~3 s with this, ~23 s with the librdkafka default.
TEST_SESSION_TIMEOUT_MS = 6000
READ_TIMEOUT_S = 60.0


@pytest.fixture(scope="session")
def bootstrap_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    from detector.broker import EmbeddedBroker

    log_path = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log_path) as broker:
        yield broker.bootstrap_servers


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> Any:
    """``unique("in")`` -> a topic or group name no other test uses."""
    base = request.node.name.split("[")[0].removeprefix("test_").replace("_", "-")[:24]

    def make(prefix: str) -> str:
        return unique_name(f"{base}-{prefix}")

    return make


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes] = field(default_factory=dict)

    def json(self) -> Any:
        assert self.value is not None
        return orjson.loads(self.value)


class KafkaHelper:
    """Create topics, produce events, read a topic back completely."""

    def __init__(self, bootstrap_servers: str) -> None:
        from confluent_kafka.admin import AdminClient

        self.bootstrap_servers = bootstrap_servers
        self.admin = AdminClient({"bootstrap.servers": bootstrap_servers})

    def create_topic(
        self, name: str, partitions: int = 1, config: dict[str, str] | None = None
    ) -> str:
        from confluent_kafka.cimpl import NewTopic

        topic = NewTopic(
            name, num_partitions=partitions, replication_factor=-1, config=config or {}
        )
        for future in self.admin.create_topics([topic], operation_timeout=30).values():
            future.result()
        return name

    def partitions(self, topic: str) -> list[int]:
        metadata = self.admin.list_topics(topic, timeout=30)
        return sorted(metadata.topics[topic].partitions)

    def produce(
        self,
        topic: str,
        values: Iterable[bytes | dict[str, Any] | None],
        *,
        key: bytes | None = None,
        partition: int | None = None,
        keys: Iterable[bytes | None] | None = None,
    ) -> int:
        """Produce values in order (dicts as JSON), wait for delivery; returns the count."""
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": self.bootstrap_servers, "linger.ms": 5})
        errors: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        key_iter = iter(keys) if keys is not None else None
        count = 0
        for value in values:
            raw = orjson.dumps(value) if isinstance(value, dict) else value
            kwargs: dict[str, Any] = {"value": raw, "on_delivery": delivered}
            kwargs["key"] = next(key_iter) if key_iter is not None else key
            if partition is not None:
                kwargs["partition"] = partition
            while True:
                try:
                    producer.produce(topic, **kwargs)
                    break
                except BufferError:
                    producer.poll(0.1)
            count += 1
        assert producer.flush(30) == 0, "produce did not complete"
        assert not errors, errors
        return count

    def end_offsets(self, topic: str) -> dict[int, int]:
        """High watermark per partition, as the fetch responses report it.

        Not ListOffsets: Tansu answers ListOffsets(latest) with the base offset of the last
        batch + 1, and with 0 under read_committed while a transaction is open.
        """
        return self.read_topic(topic, isolation="read_uncommitted")[1]

    def read_all(
        self, topic: str, *, isolation: str = "read_committed", timeout_s: float = READ_TIMEOUT_S
    ) -> list[Record]:
        """Every record of ``topic`` up to its end, in partition/offset order."""
        return self.read_topic(topic, isolation=isolation, timeout_s=timeout_s)[0]

    def read_topic(
        self, topic: str, *, isolation: str = "read_committed", timeout_s: float = READ_TIMEOUT_S
    ) -> tuple[list[Record], dict[int, int]]:
        """Records up to the end of every partition, and the high watermarks reached.

        A partition is done at an end-of-partition event at its high watermark. Under
        read_committed an open transaction holds the read below it: then this fails after
        ``timeout_s`` rather than return a partial view.
        """
        from confluent_kafka import Consumer, KafkaError, TopicPartition

        partitions = self.partitions(topic)
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap_servers,
                "group.id": unique_name("reader"),
                "isolation.level": isolation,
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 10,
            }
        )
        records: list[Record] = []
        ends: dict[int, int] = {}
        try:
            # Offset 0 (earliest if out of range): faster than OFFSET_BEGINNING on Tansu.
            consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
            deadline = time.monotonic() + timeout_s
            while len(ends) < len(partitions):
                for message in consumer.consume(num_messages=1000, timeout=0.2):
                    error = message.error()
                    partition = message.partition()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            tp = TopicPartition(topic, partition)
                            high = consumer.get_watermark_offsets(tp, cached=True)[1]
                            if message.offset() >= high:
                                ends[partition] = high
                        continue
                    headers = {k: bytes(v or b"") for k, v in (message.headers() or [])}
                    records.append(
                        Record(
                            topic,
                            partition,
                            message.offset(),
                            message.key(),
                            message.value(),
                            headers,
                        )
                    )
                if len(ends) < len(partitions) and time.monotonic() > deadline:
                    positions = consumer.position([TopicPartition(topic, p) for p in partitions])
                    raise AssertionError(
                        f"{topic}: not readable ({isolation}) to the end within {timeout_s} s; "
                        f"positions {[(tp.partition, tp.offset) for tp in positions]}"
                    )
        finally:
            consumer.close()
        return sorted(records, key=lambda r: (r.partition, r.offset)), ends

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """The group's committed offsets on ``topic`` (partitions without one omitted)."""
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

        request = ConsumerGroupTopicPartitions(
            group, [TopicPartition(topic, p) for p in self.partitions(topic)]
        )
        futures = self.admin.list_consumer_group_offsets([request], require_stable=True)
        result = futures[group].result()
        return {tp.partition: tp.offset for tp in result.topic_partitions if tp.offset >= 0}

    def wait_committed(
        self,
        group: str,
        topic: str,
        targets: dict[int, int],
        timeout_s: float = 120.0,
        watch: Sequence[Any] = (),
    ) -> None:
        """Poll the group's committed offsets until they reach ``targets``.

        ``watch``: sidecar processes that must stay alive meanwhile (fail fast if one dies).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            _check_alive(watch)
            committed = self.committed(group, topic)
            if all(committed.get(p, 0) >= end for p, end in targets.items()):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"group {group} committed {committed}, wanted {targets}")
            time.sleep(0.2)  # polling the broker for an offset commit: no event to wait on

    def wait_committed_progress(
        self,
        group: str,
        topic: str,
        before: dict[int, int],
        timeout_s: float = 120.0,
        watch: Sequence[Any] = (),
    ) -> dict[int, int]:
        """Poll until some partition's committed offset moved past ``before``."""
        deadline = time.monotonic() + timeout_s
        while True:
            _check_alive(watch)
            committed = self.committed(group, topic)
            if any(offset > before.get(p, 0) for p, offset in committed.items()):
                return committed
            if time.monotonic() > deadline:
                raise AssertionError(f"group {group} made no progress past {before}")
            time.sleep(0.05)  # polling the broker for an offset commit: no event to wait on


def _check_alive(processes: Sequence[Any]) -> None:
    for process in processes:
        if process.proc is not None and process.proc.poll() is not None:
            raise AssertionError(
                f"sidecar exited with {process.proc.returncode}:\n{process.output()[-3000:]}"
            )


@pytest.fixture
def kafka(bootstrap_servers: str) -> KafkaHelper:
    return KafkaHelper(bootstrap_servers)


@pytest.fixture(scope="session")
def session_kafka(bootstrap_servers: str) -> KafkaHelper:
    """The same helper, for module-scoped fixtures (one sidecar run shared by tests)."""
    return KafkaHelper(bootstrap_servers)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
