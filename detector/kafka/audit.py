"""The audit topic on Kafka: where each chain stands, and reading the whole log.

The audit topic has as many partitions as the input topic; the owner of input partition
``p`` writes chain ``sidecar/p`` to audit partition ``p``, in the same transaction as the
alerts it records (exactly-once: an alert and its audit record commit or abort together).
On assignment (and after a rewind) the chain's head is the last well-formed record of the
partition, read ``read_committed`` to the end as the changelog is: a brokers that filters
aborted transactions (Apache Kafka, Redpanda, MSK, Confluent Cloud) hands back the last
committed record; one that does not (Tansu) the last record written, aborted ones
included, so the chain stays linear either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from detector.audit.chain import Chain, Head, head_of
from detector.config import KafkaClientSettings, KafkaSettings
from detector.kafka.clients import idempotent_producer_config, reader_config
from detector.kafka.follow import messages_to_end

log = structlog.get_logger()

#: Longest wait for an audit partition to become readable to its end.
READ_TIMEOUT_S = 120.0
#: Records read back from the end of a partition for its head, at first.
TAIL = 64


class AuditLogError(Exception):
    """The audit topic cannot be read."""


def audit_reader_config(kafka: KafkaClientSettings, group_id: str) -> dict[str, Any]:
    return reader_config(kafka, f"{group_id}.audit", "drift-detector-audit")


def _read_to_end(
    consumer: Consumer,
    topic: str,
    partitions: Iterable[int],
    timeout_s: float,
    beat: Callable[[], None],
) -> Iterator[tuple[int, int, bytes | None]]:
    """(partition, offset, value) of each record until the end of every partition."""
    for message in messages_to_end(consumer, topic, partitions, timeout_s, AuditLogError, beat):
        yield message.partition() or 0, message.offset() or 0, message.value()


def read_heads(
    kafka: KafkaClientSettings,
    group_id: str,
    topic: str,
    partitions: Iterable[int],
    *,
    chain_of: Callable[[int], str] = lambda p: f"sidecar/{p}",
    timeout_s: float = READ_TIMEOUT_S,
    beat: Callable[[], None] = lambda: None,
) -> dict[int, Head]:
    """Each partition's head of its chain (``chain_of(P)``, by default the sidecar's
    ``sidecar/P``): after its last well-formed record of that chain (genesis if none;
    other chains of the partition are passed over, the tail read back further until one
    is found)."""
    todo = sorted(set(partitions))
    heads: dict[int, Head] = {}
    if not todo:
        return heads
    consumer = Consumer(audit_reader_config(kafka, group_id))
    try:
        tail = TAIL
        while todo:
            starts: dict[int, tuple[int, int]] = {}
            for p in todo:
                try:
                    low, high = consumer.get_watermark_offsets(
                        TopicPartition(topic, p), timeout=10.0
                    )
                except KafkaException as exc:
                    raise AuditLogError(f"offsets of {topic}[{p}]: {exc.args[0]}") from None
                starts[p] = (max(low, high - tail), low)
            consumer.assign([TopicPartition(topic, p, starts[p][0]) for p in todo])
            found: dict[int, Head] = {}
            for partition, _, value in _read_to_end(consumer, topic, todo, timeout_s, beat):
                head = head_of(value, chain_of(partition))
                if head is not None:
                    found[partition] = head
            for p in list(todo):
                start, low = starts[p]
                if p in found or start <= low:
                    heads[p] = found.get(p, Head())
                    todo.remove(p)
            consumer.unassign()
            tail *= 16
    finally:
        consumer.close()
    return heads


def read_log(
    kafka: KafkaClientSettings,
    topic: str,
    *,
    group_id: str = "drift-detector",
    timeout_s: float = READ_TIMEOUT_S,
) -> Iterator[tuple[int, int, bytes | None]]:
    """Every record of the audit topic, partition by partition in offset order."""
    consumer = Consumer(audit_reader_config(kafka, group_id))
    try:
        try:
            metadata = consumer.list_topics(topic, timeout=10.0)
        except KafkaException as exc:
            raise AuditLogError(f"audit topic {topic}: {exc.args[0]}") from None
        info = metadata.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            raise AuditLogError(f"audit topic {topic!r} does not exist")
        for partition in sorted(info.partitions):
            consumer.assign([TopicPartition(topic, partition, 0)])
            yield from _read_to_end(consumer, topic, [partition], timeout_s, lambda: None)
            consumer.unassign()
    finally:
        consumer.close()


#: How long a transaction of ``append_record`` may take.
WRITE_TIMEOUT_S = 30.0


def append_record(
    kafka: KafkaClientSettings,
    group_id: str,
    topic: str,
    partition: int,
    chain: str,
    writer: str,
    kind: str,
    make_body: Callable[[], dict[str, Any]],
    companions: Callable[[dict[str, Any]], list[tuple[str, bytes, bytes]]] | None = None,
) -> tuple[int, bytes]:
    """Append one record to ``chain`` on audit ``partition``, from outside the sidecar
    (``detector review``, ``detector silence``): returns its offset and bytes.

    The producer's ``transactional.id`` is the chain's (``<group_id>.audit.<chain>``), so
    a concurrent writer of the same chain is fenced (its transaction aborted) before this
    one reads the chain's head and calls ``make_body`` (which may read the log, and raise to
    write nothing). ``companions(record)`` gives (topic, key, value) records produced in the
    same transaction: they and the audit record commit or abort together."""
    config = idempotent_producer_config(kafka, "drift-detector-audit-writer")
    config["transactional.id"] = f"{group_id}.audit.{chain}"
    producer = Producer(config)
    delivered: list[int] = []

    def on_delivery(error: KafkaError | None, message: Any) -> None:
        if error is None:
            delivered.append(message.offset())

    try:
        producer.init_transactions(WRITE_TIMEOUT_S)
        body = make_body()
        head = read_heads(kafka, group_id, topic, [partition], chain_of=lambda _: chain)[partition]
        record = Chain(chain, writer, head).append(kind, body, int(time.time() * 1000))
        producer.begin_transaction()
        producer.produce(
            topic, record, key=chain.encode(), partition=partition, on_delivery=on_delivery
        )
        if companions is not None:
            import orjson

            for other, key, value in companions(orjson.loads(record)):
                producer.produce(other, value, key=key)
        producer.commit_transaction(WRITE_TIMEOUT_S)
    except KafkaException as exc:
        raise AuditLogError(f"writing to {topic}[{partition}]: {exc.args[0]}") from None
    finally:
        producer.flush(5.0)
    return (delivered[0] if delivered else -1), record


def append_decision(
    kafka: KafkaSettings, topic: str, action: str, alert_id: str, reason: str, by: str
) -> tuple[int, bytes]:
    """Record a person's decision on an alert (chain ``review``): ``detector review`` and
    the review console both write through here. The log is read, and the decision checked
    against the decisions before it (:func:`detector.audit.review.decision_body`), only
    after a concurrent reviewer is fenced; ReviewError when it does not apply, AuditLogError
    when the topic cannot be read or written. Returns the record's offset and bytes."""
    from detector.audit.review import CHAIN, PARTITION, decision_body, fold

    def body() -> dict[str, Any]:
        values = (value for _, _, value in read_log(kafka, topic, group_id=kafka.group_id))
        return decision_body(fold(values), action, alert_id, reason)

    return append_record(kafka, kafka.group_id, topic, PARTITION, CHAIN, by, "review", body)


def append_suspension(
    kafka: KafkaSettings,
    topic: str,
    control_topic: str,
    action: str,
    model: str,
    reason: str,
    by: str,
) -> tuple[int, bytes]:
    """Suspend or resume ``model`` (``detector review suspend|resume``): the audit record
    (chain ``control``) and the control event (``control_topic``, created compacted if
    missing) in one transaction. ControlError when it does not apply."""
    import orjson
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    from detector.audit.control import CHAIN, PARTITION, control_body, control_event, suspended
    from detector.kafka.clients import admin_config
    from detector.kafka.topics import create_topics, partition_counts

    admin = AdminClient(admin_config(kafka, "drift-detector-control"))
    if control_topic not in partition_counts(admin, [control_topic]):
        compact = {"cleanup.policy": "compact"}
        create_topics(admin, [NewTopic(control_topic, 1, replication_factor=-1, config=compact)])

    def body() -> dict[str, Any]:
        values = (value for _, _, value in read_log(kafka, topic, group_id=kafka.group_id))
        return control_body(suspended(values), action, model, reason, control_topic)

    def event(record: dict[str, Any]) -> list[tuple[str, bytes, bytes]]:
        value = orjson.dumps(control_event(record, topic, PARTITION))
        return [(control_topic, model.encode(), value)]

    return append_record(
        kafka, kafka.group_id, topic, PARTITION, CHAIN, by, "suspension", body, event
    )


__all__ = [
    "AuditLogError",
    "append_decision",
    "append_record",
    "append_suspension",
    "audit_reader_config",
    "read_heads",
    "read_log",
]
