"""Delayed labels: label events (schemas/label-event.v1.json) and the join that holds each
prediction of an input partition until its label arrives. Pure: no Kafka, no clock.

A prediction without its own ``label`` waits in the join, keyed by ``(model, event_id)``,
until a label event for it arrives, for at most the horizon (``detection.labels.horizon``,
in event time: the newest ``timestamp`` seen on the partition, predictions and labels
alike). Each entry is in one of three states:

* ``WAITING``: a prediction waiting for its label (what the error needs of it: the
  prediction, its offset, time and model version);
* ``LABELLED``: its label arrived (or it came with one); kept, without the prediction,
  until the horizon, so that a second label for it is known as a duplicate and so that the
  label coverage (the share of expired predictions that got a label) can be counted;
* ``EARLY``: a label whose prediction has not been seen (yet): it waits for it the same way.
  A label for an event the partition never sees (an unknown event, another partition, or a
  prediction already expired) expires as ``unknown``.

Entries expire in arrival order, oldest first, once older than the horizon, and beyond
``max_pending`` entries per partition (then the oldest go, down to 99 % of the bound,
counted as ``evicted``). Expiry runs every ``EXPIRE_EVERY`` join operations of the
partition (not per batch), so that what is joined does not depend on how the stream is
cut into batches.

State: entries are held in chunks of ``CHUNK`` consecutive arrivals; a checkpoint writes
the chunks that changed and the join's meta record, as JSON (:func:`encode_chunk`; read
back with type checks, no code), under changelog keys that no model name can take
(``"\\x00labels/..."``: model names starting with NUL are refused).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from detector.core.events import (
    InvalidEvent,
    check_schema_version,
    check_segment,
    required_str,
    timestamp_ms,
)
from detector.core.settings import LabelSettings

WAITING = 0
LABELLED = 1
EARLY = 2

#: Arrivals per state chunk (a changelog entry).
CHUNK = 4096
#: Expiry runs every this many join operations (predictions and labels) of a partition.
EXPIRE_EVERY = 1024
#: Changelog keys of the join (model names cannot start with NUL).
KEY_PREFIX = "\x00labels/"
META_KEY = KEY_PREFIX + "meta"
JOIN_FORMAT = 1

#: Outcomes counted per model (``BatchResult.label_outcomes``, the metric's ``outcome``).
OUTCOMES = (
    "joined",  # a label met its waiting prediction, or a prediction its early label
    "inline",  # a prediction carried its own label
    "duplicate",  # a second label for a prediction already labelled
    "duplicate_prediction",  # a second prediction with an event_id already waiting
    "expired_labelled",  # a labelled prediction left the horizon (coverage: got one)
    "expired_unlabelled",  # a prediction left the horizon without a label
    "unknown",  # a label that met no prediction within the horizon
    "evicted",  # an entry dropped beyond max_pending (also counted under its expiry)
)

Key = tuple[str, str]
# (state, seq, offset, timestamp_ms, model_version, value, segment): for WAITING the
# prediction's offset, time, version, value and the configured keys of its segment
# (detection.segments; None without); for EARLY the label's offset, time and value; for
# LABELLED the prediction's time (value and segment None).
Entry = tuple[int, int, int, int, str | None, Any, dict[str, str] | None]


class LabelEvent:
    """A valid label event."""

    __slots__ = ("event_id", "label", "model", "segment", "timestamp_ms")

    def __init__(
        self,
        event_id: str,
        model: str,
        label: Any,
        timestamp_ms: int,
        segment: dict[str, str] | None = None,
    ) -> None:
        self.event_id = event_id
        self.model = model
        self.label = label
        self.timestamp_ms = timestamp_ms
        self.segment = segment


def parse_label(value: bytes | None, max_bytes: int = 1_048_576) -> LabelEvent:
    """Parse and validate one label message. Raises InvalidEvent, nothing else."""
    if not value:
        raise InvalidEvent("empty", "message has no value")
    if len(value) > max_bytes:
        raise InvalidEvent("oversized", f"{len(value)} bytes exceeds the limit of {max_bytes}")
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise InvalidEvent("not_json", "label is not valid JSON") from None
    if not isinstance(doc, dict):
        raise InvalidEvent("not_object", f"top level is a JSON {type(doc).__name__}, not an object")
    if "schema_version" in doc:
        check_schema_version(doc["schema_version"])
    event_id = required_str(doc, "event_id")
    model = required_str(doc, "model")
    if "label" not in doc:
        raise InvalidEvent("missing_field", "required field 'label' is missing")
    label = doc["label"]
    if type(label) not in (float, int, str, bool):
        raise InvalidEvent("wrong_type", "'label' must be a number, a string or a boolean")
    if "timestamp" not in doc:
        raise InvalidEvent("missing_field", "required field 'timestamp' is missing")
    ts = timestamp_ms(doc["timestamp"])
    segment = doc.get("segment")
    if segment is not None:
        check_segment(segment)
    return LabelEvent(event_id, model, label, ts, segment)


class Joined:
    """A prediction and its label, joined: what the performance tracker is fed."""

    __slots__ = (
        "label",
        "label_ms",
        "label_offset",
        "model_version",
        "offset",
        "prediction",
        "prediction_ms",
        "segment",
    )

    def __init__(
        self,
        prediction: Any,
        label: Any,
        offset: int,
        prediction_ms: int,
        model_version: str | None,
        label_offset: int | None,
        label_ms: int,
        segment: dict[str, str] | None = None,
    ) -> None:
        self.prediction = prediction
        self.label = label
        self.offset = offset
        self.prediction_ms = prediction_ms
        self.model_version = model_version
        self.label_offset = label_offset  # None: the label came inside the prediction event
        self.label_ms = label_ms
        self.segment = segment  # the configured keys of the prediction's segment


class LabelJoin:
    """The predictions of one input partition waiting for their labels, and early labels."""

    def __init__(self, settings: LabelSettings) -> None:
        self.horizon_ms = int(settings.horizon_s * 1000)
        self.max_pending = settings.max_pending
        self.chunks: OrderedDict[int, dict[Key, Entry]] = OrderedDict()
        self.where: dict[Key, int] = {}
        self.next_seq = 0
        self.watermark_ms = 0
        self.operations = 0
        self.dirty: set[int] = set()
        self.meta_dirty = False
        #: Outcome counts since the last :meth:`take_outcomes` (not state).
        self.outcomes: dict[tuple[str, str], int] = {}

    def __len__(self) -> int:
        return len(self.where)

    # -- operations ------------------------------------------------------------------------

    def prediction(
        self,
        model: str,
        event_id: str,
        offset: int,
        ts_ms: int,
        model_version: str | None,
        prediction: Any,
        label: Any,
        segment: dict[str, str] | None = None,
    ) -> Joined | None:
        """A prediction arrived. Returns the join when its label is here (its own, or an
        early label event); else it waits (with ``segment``, the configured keys of its
        segment, for the slices and fairness groups its label feeds)."""
        key = (model, event_id)
        self._tick(ts_ms)
        found = self._get(key)
        if found is not None:
            if found[0] != EARLY:
                self._count(model, "duplicate_prediction")
                if label is None:
                    return None
                self._count(model, "inline")
                return Joined(prediction, label, offset, ts_ms, model_version, None, ts_ms, segment)
            self._set(key, (LABELLED, found[1], 0, ts_ms, None, None, None))
            if label is not None:  # its own label wins; the label event is a duplicate
                self._count(model, "inline")
                self._count(model, "duplicate")
                return Joined(prediction, label, offset, ts_ms, model_version, None, ts_ms, segment)
            self._count(model, "joined")
            return Joined(
                prediction, found[5], offset, ts_ms, model_version, found[2], found[3], segment
            )
        if label is not None:
            self._insert(key, LABELLED, 0, ts_ms, None, None, None)
            self._count(model, "inline")
            return Joined(prediction, label, offset, ts_ms, model_version, None, ts_ms, segment)
        self._insert(key, WAITING, offset, ts_ms, model_version, prediction, segment)
        return None

    def label(self, event: LabelEvent, offset: int) -> Joined | None:
        """A label event arrived. Returns the join when its prediction is waiting."""
        model = event.model
        key = (model, event.event_id)
        self._tick(event.timestamp_ms)
        found = self._get(key)
        if found is None:
            self._insert(key, EARLY, offset, event.timestamp_ms, None, event.label, None)
            return None
        if found[0] != WAITING:
            self._count(model, "duplicate")
            return None
        self._set(key, (LABELLED, found[1], 0, found[3], None, None, None))
        self._count(model, "joined")
        return Joined(
            found[5],
            event.label,
            found[2],
            found[3],
            found[4],
            offset,
            event.timestamp_ms,
            found[6],
        )

    def take_outcomes(self) -> dict[tuple[str, str], int]:
        outcomes, self.outcomes = self.outcomes, {}
        return outcomes

    # -- internals -------------------------------------------------------------------------

    def _count(self, model: str, outcome: str, n: int = 1) -> None:
        key = (model, outcome)
        self.outcomes[key] = self.outcomes.get(key, 0) + n

    def _tick(self, ts_ms: int) -> None:
        if ts_ms > self.watermark_ms:
            self.watermark_ms = ts_ms
        self.operations += 1
        self.meta_dirty = True
        if self.operations % EXPIRE_EVERY == 0:
            self.expire()

    def _get(self, key: Key) -> Entry | None:
        chunk = self.where.get(key)
        return None if chunk is None else self.chunks[chunk][key]

    def _set(self, key: Key, entry: Entry) -> None:
        chunk = self.where[key]
        self.chunks[chunk][key] = entry
        self.dirty.add(chunk)

    def _insert(
        self,
        key: Key,
        state: int,
        offset: int,
        ts_ms: int,
        version: str | None,
        value: Any,
        segment: dict[str, str] | None,
    ) -> None:
        seq = self.next_seq
        self.next_seq = seq + 1
        chunk_no = seq // CHUNK
        chunk = self.chunks.get(chunk_no)
        if chunk is None:
            chunk = self.chunks[chunk_no] = {}
        chunk[key] = (state, seq, offset, ts_ms, version, value, segment)
        self.where[key] = chunk_no
        self.dirty.add(chunk_no)
        if len(self.where) > self.max_pending:
            self._evict()

    def _drop(self, key: Key, entry: Entry, evicted: bool) -> None:
        model = key[0]
        if entry[0] == WAITING:
            self._count(model, "expired_unlabelled")
        elif entry[0] == LABELLED:
            self._count(model, "expired_labelled")
        else:
            self._count(model, "unknown")
        if evicted:
            self._count(model, "evicted")

    def _pop_oldest(self, keep: Callable[[Entry], bool], limit: int, evicted: bool) -> int:
        """Drop up to ``limit`` entries, oldest first, until one that ``keep`` keeps."""
        dropped = 0
        while self.chunks and dropped < limit:
            chunk_no, chunk = next(iter(self.chunks.items()))
            gone: list[Key] = []
            for key, entry in chunk.items():
                if dropped + len(gone) >= limit or keep(entry):
                    break
                gone.append(key)
            for key in gone:
                self._drop(key, chunk.pop(key), evicted)
                del self.where[key]
            dropped += len(gone)
            if gone:
                self.dirty.add(chunk_no)
            if chunk:
                break
            del self.chunks[chunk_no]
            self.dirty.add(chunk_no)
        return dropped

    def expire(self) -> int:
        """Drop entries older than the horizon (in arrival order); returns how many."""
        cutoff = self.watermark_ms - self.horizon_ms
        return self._pop_oldest(lambda entry: entry[3] >= cutoff, len(self.where), False)

    def _evict(self) -> None:
        """Beyond max_pending: the oldest go, down to 99 % of the bound."""
        target = max(0, self.max_pending - max(1, self.max_pending // 100))
        self._pop_oldest(lambda entry: False, len(self.where) - target, True)

    # -- state -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, bytes | None]:
        """Changelog entries for the chunks changed since the last snapshot (None: the
        chunk is gone, a tombstone) and the meta record."""
        entries: dict[str, bytes | None] = {}
        for chunk_no in sorted(self.dirty):
            chunk = self.chunks.get(chunk_no)
            key = f"{KEY_PREFIX}{chunk_no}"
            entries[key] = None if not chunk else encode_chunk(chunk)
        if self.meta_dirty or self.dirty:
            entries[META_KEY] = self._meta()
        self.dirty.clear()
        self.meta_dirty = False
        return entries

    def _meta(self) -> bytes:
        return orjson.dumps(
            {
                "format": JOIN_FORMAT,
                "next_seq": self.next_seq,
                "watermark_ms": self.watermark_ms,
                "operations": self.operations,
            }
        )

    def entries(self) -> dict[str, bytes]:
        """Every chunk and the meta record as they stand (what a restore of the changelog
        would read back), for the state archive; leaves what :meth:`snapshot` writes next
        unchanged."""
        entries = {
            f"{KEY_PREFIX}{chunk_no}": encode_chunk(chunk)
            for chunk_no, chunk in sorted(self.chunks.items())
            if chunk
        }
        entries[META_KEY] = self._meta()
        return entries

    @classmethod
    def restore(cls, settings: LabelSettings, entries: Mapping[str, bytes]) -> LabelJoin:
        """Rebuild from the join's changelog entries (keys under KEY_PREFIX); raises
        JoinStateError."""
        join = cls(settings)
        meta = entries.get(META_KEY)
        if meta is None:
            if any(key.startswith(KEY_PREFIX) for key in entries):
                raise JoinStateError("label join chunks without their meta record")
            return join
        doc = _load(meta, "meta")
        if not isinstance(doc, dict) or doc.get("format") != JOIN_FORMAT:
            raise JoinStateError(f"label join meta record is not format {JOIN_FORMAT}")
        for name in ("next_seq", "watermark_ms", "operations"):
            if type(doc.get(name)) is not int or doc[name] < 0:
                raise JoinStateError(f"label join meta record: {name} is not a count")
        join.next_seq = doc["next_seq"]
        join.watermark_ms = doc["watermark_ms"]
        join.operations = doc["operations"]
        numbers: dict[int, str] = {}
        for name in entries:
            if name.startswith(KEY_PREFIX) and name != META_KEY:
                suffix = name[len(KEY_PREFIX) :]
                if not suffix.isdigit() or str(int(suffix)) != suffix:
                    raise JoinStateError(f"unknown label join key {name[1:]!r}")
                numbers[int(suffix)] = name
        for chunk_no in sorted(numbers):
            chunk = decode_chunk(entries[numbers[chunk_no]], chunk_no, join.next_seq)
            join.chunks[chunk_no] = chunk
            for key in chunk:
                if key in join.where:
                    raise JoinStateError(f"label join: event {key[1][:64]!r} in two chunks")
                join.where[key] = chunk_no
        return join


class JoinStateError(Exception):
    """The label join's changelog entries cannot be restored."""


def encode_chunk(chunk: dict[Key, Entry]) -> bytes:
    """Rows of 8 fields, and a 9th (the segment) only when the entry has one: entries
    written before segments existed read the same."""
    rows = [
        [key[0], key[1], *entry] if entry[6] is not None else [key[0], key[1], *entry[:6]]
        for key, entry in chunk.items()
    ]
    return orjson.dumps({"format": JOIN_FORMAT, "entries": rows})


def _load(blob: bytes, what: str) -> Any:
    try:
        return orjson.loads(blob)
    except orjson.JSONDecodeError:
        raise JoinStateError(f"label join {what} record is not JSON") from None


_VALUE_TYPES = (float, int, str, bool)


def _value_ok(value: Any) -> bool:
    if type(value) in _VALUE_TYPES:
        return True
    if type(value) is dict:
        return all(type(k) is str and type(v) in (float, int) for k, v in value.items())
    return False


def decode_chunk(blob: bytes, chunk_no: int, next_seq: int) -> dict[Key, Entry]:
    doc = _load(blob, f"chunk {chunk_no}")
    if not isinstance(doc, dict) or doc.get("format") != JOIN_FORMAT:
        raise JoinStateError(f"label join chunk {chunk_no} is not format {JOIN_FORMAT}")
    rows = doc.get("entries")
    if type(rows) is not list:
        raise JoinStateError(f"label join chunk {chunk_no} has no entries")
    chunk: dict[Key, Entry] = {}
    last = -1
    for row in rows:
        if type(row) is not list or len(row) not in (8, 9):
            raise JoinStateError(f"label join chunk {chunk_no}: an entry is not 8 or 9 fields")
        model, event_id, state, seq, offset, ts, version, value = row[:8]
        segment = row[8] if len(row) == 9 else None
        ok = (
            type(model) is str
            and type(event_id) is str
            and state in (WAITING, LABELLED, EARLY)
            and type(state) is int
            and type(seq) is int
            and last < seq < next_seq
            and seq // CHUNK == chunk_no
            and type(offset) is int
            and offset >= 0
            and type(ts) is int
            and (version is None or type(version) is str)
            and (value is None if state == LABELLED else _value_ok(value))
            and (segment is None or (state == WAITING and _segment_ok(segment)))
        )
        if not ok:
            raise JoinStateError(f"label join chunk {chunk_no}: entry {seq!r} is not valid")
        last = seq
        chunk[(model, event_id)] = (state, seq, offset, ts, version, value, segment)
    return chunk


def _segment_ok(segment: Any) -> bool:
    return (
        type(segment) is dict
        and bool(segment)
        and all(type(k) is str and type(v) is str for k, v in segment.items())
    )


__all__ = [
    "EARLY",
    "LABELLED",
    "OUTCOMES",
    "WAITING",
    "JoinStateError",
    "Joined",
    "LabelEvent",
    "LabelJoin",
    "parse_label",
]
