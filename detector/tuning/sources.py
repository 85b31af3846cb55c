"""Where a backtest reads its events: a JSON-lines file, a directory of them, or a Kafka
topic range. Each yields :class:`~detector.core.records.InputRecord` in partition order.

* ``events.jsonl`` or ``events.jsonl.gz``: one event per line, as partition 0 of a topic
  named after the file; offsets count the file's non-empty lines from 0.
* a directory: its ``*.jsonl``, ``*.ndjson``, ``*.json`` files (each optionally ``.gz``) in
  name order, as one stream (partition 0 of a topic named after the directory); offsets
  continue from one file to the next.
* ``kafka://TOPIC?partitions=0,1&from=X&to=Y``: the records of those partitions (default:
  all) from ``X`` up to, not including, ``Y``; each is an offset (``1200``) or an RFC 3339
  time (``2026-12-01T00:00:00Z``) compared with the Kafka record timestamps: the range
  starts at the first record at or after ``from`` and stops at the first record at or
  after ``to``. Defaults: the start of the partition, and its end (the last stable offset
  when the read gets there). Offsets and partitions are the
  topic's own, so alerts get the ``alert_id`` that ``detector run`` gave them. Records are
  read ``read_committed``, as the sidecar reads them.

With labels (``detector replay --labels LABELS``, any of the same kinds of source), the
label events are merged into the predictions by :func:`by_event_time`: per partition (a
file is partition 0: its labels join partition 0's predictions), in the order of their
time, a prediction before a label of the same millisecond, as they would have reached a
sidecar that kept up with both topics.
"""

from __future__ import annotations

import gzip
import heapq
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

import orjson

from detector.config import KafkaClientSettings
from detector.core.events import InvalidEvent, timestamp_ms
from detector.core.records import InputRecord

#: File names a directory source reads (each may end in .gz too).
SUFFIXES = (".jsonl", ".ndjson", ".json")

#: A Kafka read that returns nothing for this long, before the range's end, is an error.
KAFKA_STALL_S = 30.0


class SourceError(ValueError):
    """A source that cannot be read, with a message that says which part and why."""


@dataclass(frozen=True)
class Bound:
    """One end of a Kafka range: an offset, or a time in epoch milliseconds."""

    offset: int | None = None
    time_ms: int | None = None


@dataclass(frozen=True)
class KafkaRange:
    topic: str
    partitions: tuple[int, ...] | None = None  # None: all
    start: Bound = field(default_factory=Bound)
    end: Bound = field(default_factory=Bound)


def _bound(uri: str, key: str, text: str) -> Bound:
    if text.isdigit():
        return Bound(offset=int(text))
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise SourceError(
            f"{uri}: {key}: expected an offset or an RFC 3339 time with an offset, got {text!r}"
        )
    return Bound(time_ms=int(moment.timestamp() * 1000))


def parse_kafka_uri(uri: str) -> KafkaRange:
    """Parse ``kafka://TOPIC?partitions=..&from=..&to=..``; SourceError names the part."""
    parts = urlsplit(uri)
    topic = (parts.netloc + parts.path).strip("/")
    if not topic:
        raise SourceError(f"{uri}: expected kafka://TOPIC?partitions=0,1&from=..&to=..")
    # A literal "+" (a time's offset, +01:00) is kept: it is not a space here.
    query = parse_qs(parts.query.replace("+", "%2B"), keep_blank_values=True)
    unknown = set(query) - {"partitions", "from", "to"}
    if unknown:
        raise SourceError(f"{uri}: {sorted(unknown)[0]}: unknown parameter (partitions, from, to)")
    partitions: tuple[int, ...] | None = None
    if "partitions" in query:
        items = query["partitions"][-1].split(",")
        if not all(item.strip().isdigit() for item in items):
            raise SourceError(f"{uri}: partitions: expected partition numbers, such as 0,1")
        partitions = tuple(sorted({int(item) for item in items}))
    start = _bound(uri, "from", query["from"][-1]) if "from" in query else Bound()
    end = _bound(uri, "to", query["to"][-1]) if "to" in query else Bound()
    return KafkaRange(topic, partitions, start, end)


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def _data_files(directory: Path) -> list[Path]:
    files = []
    for path in sorted(directory.iterdir()):
        name = path.name.removesuffix(".gz")
        if path.is_file() and name.endswith(SUFFIXES):
            files.append(path)
    return files


class Source:
    """A readable source. ``name`` is shown in reports; ``size_hint`` (bytes or records)
    and ``done`` drive the progress bar."""

    name: str
    #: Records (Kafka) or bytes (files) in the source, if known; 0 if not.
    size_hint: int = 0
    #: How far the reading got, in the unit of size_hint.
    done: int = 0

    def records(self) -> Iterator[InputRecord]:
        raise NotImplementedError

    @property
    def topic(self) -> str:
        """The topic its records carry (a file's or directory's name, or the range's)."""
        raise NotImplementedError


class FileSource(Source):
    def __init__(self, paths: list[Path], topic: str, name: str) -> None:
        self.paths = paths
        self._topic = topic
        self.name = name
        self.size_hint = sum(p.stat().st_size for p in paths)

    @property
    def topic(self) -> str:
        return self._topic

    def records(self) -> Iterator[InputRecord]:
        offset = 0
        for path in self.paths:
            try:
                with _open(path) as handle:
                    base = self.done
                    for line in handle:
                        line = line.strip()
                        if line:
                            yield InputRecord(self._topic, 0, offset, line)
                            offset += 1
                            if offset & 1023 == 0 and not isinstance(handle, gzip.GzipFile):
                                self.done = base + handle.tell()
            except (OSError, EOFError) as exc:
                raise SourceError(f"{path}: cannot read: {exc}") from None
            self.done = base + path.stat().st_size


class KafkaSource(Source):
    """A topic range read by assignment (no consumer group, nothing committed).

    The end of a partition is the end-of-partition event at the high watermark of the fetch
    responses, as for the changelog restore (not ListOffsets, which Tansu answers with the
    base offset of the last batch + 1); under read_committed it comes at the last stable
    offset.
    """

    def __init__(self, uri: str, kafka: KafkaClientSettings) -> None:
        self.range = parse_kafka_uri(uri)
        self.name = uri
        self.kafka = kafka
        self._consumer: Any = None
        # partition, first offset (None: the start), end offset exclusive (None: the end)
        self._plan: list[tuple[int, int | None, int | None]] = []

    @property
    def topic(self) -> str:
        return self.range.topic

    def _connect(self) -> None:
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        from detector.kafka.clients import reader_config

        topic = self.range.topic
        config = reader_config(self.kafka, "drift-detector.replay", "drift-detector-replay")
        consumer = Consumer(config)
        try:
            metadata = consumer.list_topics(topic, timeout=10)
        except KafkaException as exc:
            consumer.close()
            raise SourceError(f"kafka://{topic}: cannot reach the cluster: {exc}") from None
        info = metadata.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            consumer.close()
            raise SourceError(f"kafka://{topic}: topic: no such topic")
        available = sorted(info.partitions)
        wanted = list(self.range.partitions or available)
        missing = [p for p in wanted if p not in info.partitions]
        if missing:
            consumer.close()
            raise SourceError(
                f"kafka://{topic}: partitions: {missing[0]} is not a partition of the topic "
                f"(it has {len(available)})"
            )
        plan = []
        hint = 0
        for partition in wanted:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)
            start = self._seek_offset(consumer, partition, self.range.start)
            if start == -1:  # a start time after the last record: nothing to read
                continue
            end = self.range.end.offset
            plan.append((partition, start, end))
            hint += max(0, (high if end is None else end) - (low if start is None else start))
        self._consumer = consumer
        self._plan = plan
        self.size_hint = hint

    def _seek_offset(self, consumer: Any, partition: int, bound: Bound) -> int | None:
        """Where the read starts: an offset, None (the start), or -1 (a start time after the
        last record). For a time, the broker's offset for it (ListOffsets by timestamp);
        the records' own timestamps are checked too (:meth:`_partition`)."""
        from confluent_kafka import TopicPartition

        if bound.time_ms is None:
            return bound.offset
        wanted = TopicPartition(self.range.topic, partition, bound.time_ms)
        found = consumer.offsets_for_times([wanted], 10)[0]
        if found.error is not None:
            raise SourceError(f"kafka://{self.range.topic}: offsets for a time: {found.error}")
        return -1 if found.offset < 0 else int(found.offset)

    def records(self) -> Iterator[InputRecord]:
        from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

        if self._consumer is None:
            self._connect()
        consumer, topic = self._consumer, self.range.topic
        try:
            for partition, start, end in self._plan:
                if start is not None and end is not None and start >= end:
                    continue
                tp = TopicPartition(topic, partition, OFFSET_BEGINNING if start is None else start)
                consumer.assign([tp])
                yield from self._partition(consumer, partition, end, KafkaError)
                consumer.unassign()
        finally:
            consumer.close()
            self._consumer = None

    def _partition(
        self, consumer: Any, partition: int, end: int | None, kafka_error: Any
    ) -> Iterator[InputRecord]:
        from confluent_kafka import TopicPartition

        topic = self.range.topic
        since_ms, until_ms = self.range.start.time_ms, self.range.end.time_ms
        position = -1
        last_progress = time.monotonic()
        while True:
            messages = consumer.consume(10_000, timeout=0.1)
            now = time.monotonic()
            if messages:
                last_progress = now
            elif now - last_progress > KAFKA_STALL_S:
                raise SourceError(
                    f"kafka://{topic}: partition {partition}: nothing read after offset "
                    f"{position} for {KAFKA_STALL_S:.0f} s (is a transaction left open?)"
                )
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.code() == kafka_error._PARTITION_EOF:
                        _, high = consumer.get_watermark_offsets(
                            TopicPartition(topic, partition), cached=True
                        )
                        if (message.offset() or 0) >= high:
                            return
                        continue
                    raise SourceError(f"kafka://{topic}: partition {partition}: {error.str()}")
                offset = message.offset()
                if end is not None and offset >= end:
                    return
                _, ts = message.timestamp()
                if until_ms is not None and ts >= until_ms:
                    return
                if since_ms is not None:
                    if ts < since_ms:
                        continue
                    since_ms = None  # the first record at or after the start time
                yield InputRecord(topic, partition, offset, message.value(), ts)
                self.done += 1
                position = offset


def _timed(
    records: Iterable[InputRecord], kind: int
) -> Iterator[tuple[int, int, int, InputRecord]]:
    """(partition, time, kind, record): the record's Kafka timestamp, else its event's own
    ``timestamp``, else the time of the record before it (its place is kept)."""
    last = 0
    partition = None
    for record in records:
        if record.partition != partition:
            partition, last = record.partition, 0
        stamp = record.timestamp_ms
        if stamp is None:
            try:
                doc = orjson.loads(record.value) if record.value is not None else None
                if isinstance(doc, dict) and "timestamp" in doc:
                    stamp = timestamp_ms(doc["timestamp"])
            except (orjson.JSONDecodeError, InvalidEvent):
                stamp = None
        if stamp is None or stamp < last:
            stamp = last  # out of order or untimed: where it stands in its own source
        last = stamp
        yield record.partition, stamp, kind, record


def by_event_time(
    predictions: Iterable[InputRecord], labels: Iterable[InputRecord]
) -> Iterator[InputRecord]:
    """Predictions and label events merged per partition in time order (a prediction
    first on a tie); each source's own order is kept."""
    merged = heapq.merge(_timed(predictions, 0), _timed(labels, 1), key=lambda t: t[:3])
    for item in merged:
        yield item[3]


def open_source(spec: str, kafka: KafkaClientSettings | None = None) -> Source:
    """The source ``spec`` names; SourceError if there is none."""
    if spec.startswith("kafka://"):
        return KafkaSource(spec, kafka or KafkaClientSettings())
    path = Path(spec)
    if path.is_dir():
        files = _data_files(path)
        if not files:
            raise SourceError(
                f"{spec}: no event files in the directory (expected *.jsonl, *.ndjson or "
                "*.json, optionally .gz)"
            )
        return FileSource(files, path.name, spec)
    if not path.is_file():
        raise SourceError(f"{spec}: no such file or directory")
    return FileSource([path], path.name, spec)


__all__ = [
    "Bound",
    "FileSource",
    "KafkaRange",
    "KafkaSource",
    "Source",
    "SourceError",
    "by_event_time",
    "open_source",
    "parse_kafka_uri",
]
