"""The state archive on Kafka (docs/audit.md, "Re-deriving an alert").

The sidecar writes a partition's whole state to archive partition ``p`` (one record per
changelog key: key and value as in the changelog, headers ``input_offset``,
``labels_offset`` and ``snapshot``) in a checkpoint's transaction, with a
``state_archived`` audit record naming the snapshot, its offsets and its digest.
``detector reproduce`` reads one snapshot back, and the input (and labels) partition from
the offsets it covers.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from detector.audit.reproduce import Outcome, Replayed, plan, replay
from detector.config import KafkaClientSettings, Settings
from detector.kafka.changelog import INPUT_OFFSET_HEADER, LABELS_OFFSET_HEADER, header
from detector.kafka.clients import reader_config
from detector.kafka.follow import messages_to_end

#: Header of an archived record: the snapshot it belongs to (``state_archived.snapshot``).
SNAPSHOT_HEADER = "snapshot"
#: How far before the audit record's time the archive is searched for its snapshot.
SEEK_MARGIN_MS = 60_000
READ_TIMEOUT_S = 120.0


class ArchiveError(Exception):
    """The archive or the input topic cannot give what a reproduction needs; the message
    says what is missing."""


def archive_headers(
    snapshot: str, input_offset: int, labels_offset: int | None
) -> list[tuple[str, bytes]]:
    headers = [
        (INPUT_OFFSET_HEADER, str(input_offset).encode()),
        (SNAPSHOT_HEADER, snapshot.encode()),
    ]
    if labels_offset is not None:
        headers.append((LABELS_OFFSET_HEADER, str(labels_offset).encode()))
    return headers


def _reader(kafka: KafkaClientSettings) -> Consumer:
    return Consumer(reader_config(kafka, "drift-detector.reproduce", "drift-detector-reproduce"))


def _watermarks(consumer: Consumer, topic: str, partition: int) -> tuple[int, int]:
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10.0)
    except KafkaException as exc:
        raise ArchiveError(f"offsets of {topic}[{partition}]: {exc.args[0]}") from None
    return int(low), int(high)


def _messages(
    consumer: Consumer, topic: str, partition: int, timeout_s: float
) -> Iterator[Message]:
    """Messages of the one assigned partition until its end (read_committed)."""
    return messages_to_end(consumer, topic, [partition], timeout_s, ArchiveError)


def read_snapshot(
    kafka: KafkaClientSettings,
    topic: str,
    partition: int,
    snapshot: str,
    entries: int,
    at_ms: int,
    timeout_s: float = READ_TIMEOUT_S,
) -> dict[str, bytes]:
    """The ``entries`` records of ``snapshot`` in archive partition ``partition``, written
    about ``at_ms`` (its audit record's time); ArchiveError when they are not all there."""
    consumer = _reader(kafka)
    found: dict[str, bytes] = {}
    try:
        low, high = _watermarks(consumer, topic, partition)
        if high <= low:
            raise ArchiveError(
                f"archive topic {topic!r} partition {partition} is empty: snapshot {snapshot} "
                f"is gone (audit.retention_days) or the topic was recreated"
            )
        start = low
        try:
            [hit] = consumer.offsets_for_times(
                [TopicPartition(topic, partition, max(at_ms - SEEK_MARGIN_MS, 0))], timeout=10.0
            )
            if hit.error is None and hit.offset >= 0:
                start = max(hit.offset, low)
        except KafkaException:
            pass  # a broker without timestamp lookups: read from the start
        consumer.assign([TopicPartition(topic, partition, start)])
        for message in _messages(consumer, topic, partition, timeout_s):
            if header(message, SNAPSHOT_HEADER) != snapshot:
                if found:
                    break  # a snapshot's records are written together
                continue
            found[(message.key() or b"").decode("utf-8")] = message.value() or b""
            if len(found) == entries:
                break
    finally:
        consumer.close()
    if len(found) != entries:
        raise ArchiveError(
            f"archive topic {topic!r} partition {partition} holds {len(found)} of the "
            f"{entries} records of snapshot {snapshot}: it is gone (audit.retention_days) or "
            f"the topic was recreated"
        )
    return found


def _range(
    kafka: KafkaClientSettings,
    topic: str,
    partition: int,
    start: int,
    stop: int | None,
    labels: bool,
    timeout_s: float,
) -> Iterator[Replayed]:
    """Records of ``topic[partition]`` from ``start`` through ``stop`` (None: to the end);
    ArchiveError when the partition no longer holds ``start`` or does not reach ``stop``."""
    consumer = _reader(kafka)
    try:
        low, high = _watermarks(consumer, topic, partition)
        if start < low:
            raise ArchiveError(
                f"{topic}[{partition}] now starts at offset {low}: the events from offset "
                f"{start} on, which the replay needs, were deleted (the topic's retention)"
            )
        if stop is not None and stop >= high:
            raise ArchiveError(
                f"{topic}[{partition}] ends at offset {high - 1}, before the trigger at {stop}"
            )
        if start >= high:
            return
        consumer.assign([TopicPartition(topic, partition, start)])
        for message in _messages(consumer, topic, partition, timeout_s):
            offset = message.offset() or 0
            _, stamp = message.timestamp()
            yield Replayed(stamp, labels, offset, message.value())
            if stop is not None and offset >= stop:
                return
    finally:
        consumer.close()


def replay_records(
    kafka: KafkaClientSettings,
    input_topic: str,
    partition: int,
    start: int,
    stop: int | None,
    labels_topic: str | None = None,
    labels_start: int | None = None,
    labels_stop: int | None = None,
    timeout_s: float = READ_TIMEOUT_S,
) -> Iterator[Replayed]:
    """The input partition from ``start`` through ``stop`` (None: to its end), and with
    ``labels_topic`` its labels partition from ``labels_start`` (through ``labels_stop``,
    else to its end), merged by record time (an input record first on a tie): the order
    the sidecar read them in, as far as the records can tell."""
    streams = [_range(kafka, input_topic, partition, start, stop, False, timeout_s)]
    if labels_topic is not None:
        streams.append(
            _range(kafka, labels_topic, partition, labels_start or 0, labels_stop, True, timeout_s)
        )
    yield from heapq.merge(*streams, key=_order)


def reproduce(settings: Settings, alert_id: str) -> Outcome:
    """``detector reproduce``: find the alert in the audit log, read the snapshot its plan
    names from the archive, replay the input (and labels) partition and compare.
    ReproduceError, ArchiveError or AuditLogError when something it needs is missing."""
    import orjson

    from detector.kafka.audit import read_log

    kafka = settings.kafka

    def records() -> Iterator[dict[str, Any]]:
        audit_topic = settings.audit.topic_for(kafka)
        for _, _, value in read_log(kafka, audit_topic, group_id=kafka.group_id):
            try:
                doc = orjson.loads(value or b"")
            except orjson.JSONDecodeError:
                continue  # verify reports it; it is no alert, config or snapshot
            if isinstance(doc, dict):
                yield doc

    found = plan(records(), alert_id)
    origin = found.origin
    entries: dict[str, bytes] = {}
    if origin.snapshot is not None:
        topic = settings.audit.archive_topic_for(kafka)
        entries = read_snapshot(
            kafka, topic, found.partition, origin.snapshot, origin.entries, origin.at_ms
        )
    labels_topic = (found.config.get("kafka") or {}).get("labels_topic") or None
    stream = replay_records(
        kafka,
        str(found.alert["trigger"]["topic"]),
        found.partition,
        origin.input_offset,
        found.input_stop,
        labels_topic,
        origin.labels_offset,
        found.label_offset,
    )
    return replay(found, entries, stream)


def _order(record: Replayed) -> tuple[int, bool, int]:
    return (record.timestamp_ms, record.labels, record.offset)


__all__ = [
    "SNAPSHOT_HEADER",
    "ArchiveError",
    "archive_headers",
    "read_snapshot",
    "replay_records",
    "reproduce",
]
