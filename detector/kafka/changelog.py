"""Restore one input partition's detector state from its changelog partition.

Changelog records: key = model name (UTF-8), value = the engine's snapshot bytes (``None``
is a tombstone), header ``input_offset`` = the input offset the snapshot was taken at,
i.e. the offset committed in the same checkpoint.

Reading is ``read_committed`` from the beginning up to the high watermark, so a restore
waits for an open transaction of a previous owner to finish. Brokers that do not filter
aborted transactions (Tansu) would still hand back snapshots of a checkpoint that never
committed; those are recognised by an ``input_offset`` beyond the group's committed offset
and ignored in favour of the newest earlier entry of the same key.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from detector.config import Settings
from detector.core.engine import PartitionDetectors, StateFormatError
from detector.kafka.clients import restore_consumer_config

log = structlog.get_logger()

INPUT_OFFSET_HEADER = "input_offset"
#: With a labels topic: the labels offset committed in the same checkpoint.
LABELS_OFFSET_HEADER = "labels_offset"
#: Longest wait for a changelog partition to become readable to its end.
RESTORE_TIMEOUT_S = 120.0
_PROGRESS_LOG_S = 10.0


class ChangelogError(Exception):
    """A changelog partition cannot be read to its end."""


@dataclass
class _Latest:
    """Per key: the newest entry taken at or before the committed input offset."""

    valid: dict[str, bytes | None] = field(default_factory=dict)
    records: int = 0
    ignored: int = 0

    def add(
        self,
        key: str,
        value: bytes | None,
        offset: int | None,
        committed: int | None,
        labels_offset: int | None = None,
        labels_committed: int | None = None,
    ) -> None:
        self.records += 1
        if labels_offset is not None and (
            labels_committed is None or labels_offset > labels_committed
        ):
            self.ignored += 1  # a checkpoint that consumed labels beyond the committed ones
            return
        # A snapshot taken beyond the committed offset (no committed offset at all: beyond
        # everything) belongs to a checkpoint that never committed: an aborted transaction
        # that the broker did not filter, or an at-least-once crash between flush and
        # offset commit. Restoring it and replaying from the committed offset would feed
        # those events twice, so it is never used, even when it is all there is for a key.
        if offset is not None and (committed is None or offset > committed):
            self.ignored += 1
        else:
            self.valid[key] = value

    def entries(self) -> dict[str, bytes]:
        return {key: value for key, value in self.valid.items() if value is not None}


def header(message: Message, name: str) -> str | None:
    """The text of a message's header ``name`` (None when it has none)."""
    headers = message.headers() or []
    pairs = headers.items() if isinstance(headers, dict) else headers
    for key, raw in pairs:
        if key == name and raw is not None:
            return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return None


def _header_offset(message: Message, name: str = INPUT_OFFSET_HEADER) -> int | None:
    text = header(message, name)
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


def read_entries(
    settings: Settings,
    committed: Mapping[int, int | None],
    timeout_s: float = RESTORE_TIMEOUT_S,
    beat: Callable[[], None] = lambda: None,
    labels_committed: Mapping[int, int | None] | None = None,
) -> dict[int, _Latest]:
    """Latest entries per key of each changelog partition in ``committed``, read together.

    ``committed`` maps each partition to the group's committed input offset (None: none);
    ``labels_committed`` the same for the labels topic, when there is one.
    """
    config = restore_consumer_config(settings.kafka)
    return read_latest(
        config, settings.kafka.changelog, committed, timeout_s, beat, labels_committed
    )


def read_latest(
    config: dict[str, Any],
    topic: str,
    committed: Mapping[int, int | None],
    timeout_s: float = RESTORE_TIMEOUT_S,
    beat: Callable[[], None] = lambda: None,
    labels_committed: Mapping[int, int | None] | None = None,
) -> dict[int, _Latest]:
    """Latest entry per key of each partition of a compacted ``topic``, read to its end.

    Records with an ``input_offset`` header beyond the partition's ``committed`` offset are
    ignored (see :class:`_Latest`); records without the header are always taken.
    """
    latest = {partition: _Latest() for partition in committed}
    if not latest:
        return latest
    consumer = Consumer(config)
    try:
        # Offset 0, not OFFSET_BEGINNING: the same where the log starts at 0 (out of range
        # falls back to auto.offset.reset=earliest), and it saves a ListOffsets round trip
        # (~0.5 s per restore on Tansu).
        consumer.assign([TopicPartition(topic, p, 0) for p in latest])
        _consume_to_end(consumer, topic, committed, latest, timeout_s, beat, labels_committed)
    finally:
        consumer.close()
    return latest


def _consume_to_end(
    consumer: Consumer,
    topic: str,
    committed: Mapping[int, int | None],
    latest: dict[int, _Latest],
    timeout_s: float,
    beat: Callable[[], None],
    labels_committed: Mapping[int, int | None] | None = None,
) -> None:
    """Consume until an end-of-partition event at the high watermark, for every partition.

    The end is taken from the fetch responses, not from ListOffsets (Tansu answers
    ListOffsets(latest) with the base offset of the last batch + 1). Under read_committed
    the end event comes at the last stable offset; an open transaction keeps it below the
    high watermark, and the read goes on until that transaction ends.
    """
    started = time.monotonic()
    next_log = started + _PROGRESS_LOG_S
    remaining = set(latest)
    while remaining:
        beat()  # a long restore is not a hung process
        for message in consumer.consume(num_messages=1000, timeout=0.05):
            partition = message.partition() or 0
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    tp = TopicPartition(topic, partition)
                    _, high = consumer.get_watermark_offsets(tp, cached=True)
                    if (message.offset() or 0) >= high:
                        remaining.discard(partition)
                    continue
                if error.fatal() or not error.retriable():
                    raise ChangelogError(f"reading {topic}[{partition}]: {error.str()}")
                log.warning(
                    "changelog read error", topic=topic, partition=partition, error=error.str()
                )
                continue
            offset = message.offset()
            try:
                key = (message.key() or b"").decode("utf-8")
            except UnicodeDecodeError:
                raise StateFormatError(
                    f"changelog {topic}[{partition}] offset {offset}: key is not UTF-8"
                ) from None
            labels_offset = (
                None
                if labels_committed is None
                else (_header_offset(message, LABELS_OFFSET_HEADER))
            )
            latest[partition].add(
                key,
                message.value(),
                _header_offset(message),
                committed[partition],
                labels_offset,
                None if labels_committed is None else labels_committed.get(partition),
            )
        now = time.monotonic()
        if remaining and now - started > timeout_s:
            stuck = consumer.position([TopicPartition(topic, p) for p in sorted(remaining)])
            raise ChangelogError(
                f"changelog {topic} not readable to its end within {timeout_s:.0f} s (stuck at "
                f"{[(tp.partition, tp.offset) for tp in stuck]}): an open transaction of a "
                f"previous owner has not finished; it is aborted when that instance restarts "
                f"with the same transactional.id, or when its transaction times out"
            )
        if remaining and now >= next_log:
            next_log = now + _PROGRESS_LOG_S
            log.warning("waiting for changelog", topic=topic, partitions=sorted(remaining))


def restore_partitions(
    settings: Settings,
    committed: Mapping[int, int | None],
    beat: Callable[[], None] = lambda: None,
    labels_committed: Mapping[int, int | None] | None = None,
) -> dict[int, PartitionDetectors]:
    """Rebuild each partition's detectors; StateFormatError propagates (never start fresh)."""
    started = time.monotonic()
    read = read_entries(settings, committed, beat=beat, labels_committed=labels_committed)
    states: dict[int, PartitionDetectors] = {}
    for partition, stats in sorted(read.items()):
        entries = stats.entries()
        states[partition] = PartitionDetectors.restore(
            settings.detection, settings.kafka.input_topic, partition, entries
        )
        if settings.kafka.labels_topic:
            states[partition].labels_topic = settings.kafka.labels_topic
        log.info(
            "partition restored",
            partition=partition,
            models=len(entries),
            changelog_records=stats.records,
            uncommitted_ignored=stats.ignored,
            committed_offset=committed[partition],
        )
    log.info(
        "restore done",
        partitions=sorted(states),
        seconds=round(time.monotonic() - started, 3),
    )
    return states
