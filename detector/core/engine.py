"""Per-partition detection state: raw records in, detections and rejections out. No I/O.

One :class:`PartitionDetectors` holds every detector fed by one input partition, grouped by
model and feature. Its changelog form is one entry per model (see :mod:`detector.core.state`).

Every event takes the same path, one at a time, in offset order:

1. **parse** (:func:`detector.core.events.parse_event`): invalid events are rejections;
2. **admit**: check the model's limits and each feature's kind, register new features
   (:meth:`PartitionDetectors._admit`). The model's :class:`Layout` remembers what was
   admitted: an event with only known features, with values of the kinds seen before, in
   any key order, is recognised by it in one pass and needs no admission;
3. **feed** every tracker of the model (:meth:`PartitionDetectors._feed`), in the order
   the features were registered: the missing-rate tracker, then the value tracker;
4. **sweep** features not seen for ``feature_ttl_s``, every SWEEP_EVERY events of a model.

The module is compiled (Cython's pure-Python mode, C types in ``engine.pxd``) and runs as
plain Python too, with the same results (the tests run both).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import cython
import numpy as np
import orjson

from detector.core.estimation import EstimatedPerformance
from detector.core.estimation import fingerprint as estimation_fingerprint
from detector.core.events import (
    MISSING,
    READ,
    InvalidEvent,
    PredictionEvent,
    check_feature_types,
    event_of,
    parse_event,
)
from detector.core.fairness import FairnessMonitor, decision
from detector.core.hits import Hit
from detector.core.jsonscan import (
    FALSE,
    GIVE_UP,
    KEY,
    NULL,
    NUMBER,
    STRING,
    TRUE,
    Cursor,
    Texts,
    plain,
)
from detector.core.labels import KEY_PREFIX, Joined, JoinStateError, LabelJoin, parse_label
from detector.core.performance import PerformanceTracker, binary_label, legacy, score_of
from detector.core.performance import fingerprint as performance_fingerprint
from detector.core.records import BatchResult, Detection, InputRecord, Rejection
from detector.core.settings import ERROR, PREDICTION, DetectionSettings, SegmentSettings
from detector.core.state import StateFormatError, decode_model, encode_model
from detector.core.trackers import CategoricalTracker, NumericTracker, RateTracker, _restore
from detector.core.values import categorical, kind_of, prediction_value

#: Stale features are swept every this many admitted events of a model, and every this
#: many events refused for lack of room for a new feature.
SWEEP_EVERY = 1024
_SWEEP_EVERY = SWEEP_EVERY  # compiled: a C constant (engine.pxd)
REFUSED_SWEEP_EVERY = 256

# What a layout slot takes (Layout.kinds).
IGNORED = 0  # an ignored feature: any scalar value, not fed
NUMERIC = 1
CATEGORICAL = 2
NULL_ONLY = 3  # only nulls seen so far: a value needs admission (it sets the kind)
CONFIGURED = 4  # configured categorical: numbers are categories too

# Compiled: C constants (engine.pxd).
_STRING = STRING
_NUMBER = NUMBER
_TRUE = TRUE
_FALSE = FALSE
_NULL = NULL
_KEY = KEY
_GIVE_UP = GIVE_UP
_MISSING = MISSING
_READ = READ
#: How many distinct strings of a feature, of model names and of model versions the event
#: reader reuses (beyond these, each event's are new str objects).
_TEXTS = 16
_NAMES = 64

# The top-level fields the event reader looks for (bits of PartitionDetectors._scan).
_VERSION = 1
_EVENT_ID = 2
_MODEL = 4
_MODEL_VERSION = 8
_TIMESTAMP = 16
_FEATURES = 32
_PREDICTION = 64
_LABEL = 128
_SEGMENT = 256

#: Changelog keys (and ``models`` keys) of slices: SLICE_PREFIX + JSON [model, key, value].
#: No model name can take them (names starting with NUL are refused).
SLICE_PREFIX = "\x00slice/"


def slice_name(model: str, key: str, value: str) -> str:
    return SLICE_PREFIX + orjson.dumps([model, key, value]).decode()


def parse_slice_name(name: str) -> tuple[str, str, str]:
    """(model, key, value) of a slice's key; raises StateFormatError."""
    try:
        parts = orjson.loads(name[len(SLICE_PREFIX) :])
    except orjson.JSONDecodeError:
        parts = None
    if (
        type(parts) is not list
        or len(parts) != 3
        or not all(type(part) is str and part for part in parts)
    ):
        raise StateFormatError(f"changelog key {name[1:64]!r} is not a slice's key")
    return parts[0], parts[1], parts[2]


def _fingerprint(settings: DetectionSettings, model: str, name: str) -> str:
    spec = settings.feature_detector(model, name)
    return (
        f"{spec.name}{sorted(spec.params.items())}/{settings.block_size}/{settings.reference_size}"
        f"/{settings.window_size}/{settings.rearm_after}/{settings.max_categories}"
        f"/{settings.min_category_share}/{settings.feature_kind(model, name)}"
    )


class FeatureMonitor:
    """Missing rate plus value drift of one feature of one model. The value tracker exists
    once the feature's kind is known (a feature seen only as null has none)."""

    fingerprint: str
    kind: str | None
    last_seen_ms: int
    missing: RateTracker
    values: NumericTracker | CategoricalTracker | None

    def __init__(
        self, settings: DetectionSettings, model: str, name: str, kind: str | None
    ) -> None:
        self.fingerprint = _fingerprint(settings, model, name)
        self.last_seen_ms = 0
        self.missing = RateTracker(settings.feature_detector(model, name), settings, "missing_rate")
        self.kind = None
        self.values = None
        if kind is not None:
            self.set_kind(settings, model, name, kind)

    def set_kind(self, settings: DetectionSettings, model: str, name: str, kind: str) -> None:
        """The feature's first non-null value told its kind: track its values."""
        spec = settings.feature_detector(model, name)
        drift_type = "prediction" if name == PREDICTION else None
        self.kind = kind
        if kind == "numeric":
            self.values = NumericTracker(spec, settings, drift_type)
        else:
            self.values = CategoricalTracker(spec, settings, drift_type)

    @property
    def detector_count(self) -> int:
        values = self.values
        if values is None:
            return 1
        if isinstance(values, NumericTracker):
            return 3
        assert isinstance(values, CategoricalTracker)
        return 1 + max(1, len(values.detectors))

    def __getstate__(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "kind": self.kind,
            "last_seen_ms": self.last_seen_ms,
            "missing": self.missing,
            "values": self.values,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.fingerprint = state["fingerprint"]
        self.kind = state["kind"]
        self.last_seen_ms = state["last_seen_ms"]
        self.missing = state["missing"]
        self.values = state["values"]

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (FeatureMonitor, self.__getstate__()))


class ModelState:
    """All monitors of one model on one partition."""

    features: dict[str, FeatureMonitor]
    prediction_kind: str | None
    prediction: FeatureMonitor | None
    #: The performance tracker (a format 4 error-rate RateTracker until reconfigure()).
    performance: Any
    #: The estimated performance (None until the model's first labelled prediction, or off).
    estimation: EstimatedPerformance | None
    #: Per protected segment key: the disparity of the model's decisions across its values.
    fairness: dict[str, FairnessMonitor]
    latest_ms: int
    events: int
    refused: int

    def __init__(self) -> None:
        self.features = {}
        self.prediction_kind = None
        self.prediction = None
        self.performance = None
        self.estimation = None
        self.fairness = {}
        self.latest_ms = 0
        self.events = 0
        self.refused = 0

    def __getstate__(self) -> dict[str, Any]:
        return {
            "features": self.features,
            "prediction_kind": self.prediction_kind,
            "prediction": self.prediction,
            "performance": self.performance,
            "estimation": self.estimation,
            "fairness": self.fairness,
            "latest_ms": self.latest_ms,
            "events": self.events,
            "refused": self.refused,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.features = state["features"]
        self.prediction_kind = state["prediction_kind"]
        self.prediction = state["prediction"]
        # Format 4 and earlier: the error-rate tracker, made the performance tracker by
        # PartitionDetectors.reconfigure (which every restore runs).
        self.performance = state["performance"] if "performance" in state else state["error"]
        self.estimation = state.get("estimation")
        self.fairness = state.get("fairness", {})
        self.latest_ms = state["latest_ms"]
        self.events = state["events"]
        self.refused = state["refused"]

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (ModelState, self.__getstate__()))


def _slot_kind(monitor: FeatureMonitor, configured: str | None) -> int:
    if monitor.kind is None:
        return NULL_ONLY
    if monitor.kind == "numeric":
        return NUMERIC
    return CONFIGURED if configured == "categorical" else CATEGORICAL


def _fits(kind: int, value: object) -> bool:
    """Whether a slot of this kind takes the value as it stands (no admission needed)."""
    t = type(value)
    if value is None:
        return True
    if kind == NUMERIC:
        return t is float or t is int
    if kind == CATEGORICAL:
        return t is str or t is bool
    if kind == CONFIGURED or kind == IGNORED:  # noqa: SIM109 (C ints: two compares)
        return t is str or t is float or t is int or t is bool
    return False


class Layout:
    """What admission has settled for one model, as slots an event can be matched against
    in one pass: first the keys of the event last admitted, in its order (so the usual
    event matches slot by slot), then the model's other features. An event matches when
    every key is a slot taking its value (:func:`_fits`), its prediction has the model's
    kind, and a label finds the error-rate tracker; then admission would change nothing.
    Not state: rebuilt by the next admission."""

    def __init__(
        self,
        model: str,
        state: ModelState,
        features: dict[str, Any],
        settings: DetectionSettings,
        base: str | None = None,
        segment: dict[str, str] | None = None,
    ) -> None:
        known = state.features
        rank_of = {name: i for i, name in enumerate(known)}
        self.model = model
        #: The model alerts name and whose config applies (a slice's model), and a slice's
        #: segment (None for the model's own layout).
        self.base = model if base is None else base
        self.segment = segment
        self.state = state
        self.keys = list(features) + [name for name in known if name not in features]
        self.index = {key: j for j, key in enumerate(self.keys)}
        #: The keys as bytes, and the values seen of each slot (scan reuses their str).
        self.raw_keys = [key.encode() for key in self.keys]
        #: Each key as JSON writes it, quoted, and its colon (b"" if JSON escapes it).
        self.heads = [b'"' + key + b'":' if plain(key) else b"" for key in self.raw_keys]
        self.texts = [Texts(_TEXTS) for _ in self.keys]
        self.slots = len(self.keys)
        self.kinds = np.zeros(self.slots, dtype=np.intc)
        self.ranks = np.zeros(self.slots, dtype=np.intp)
        self.order = np.zeros(self.slots, dtype=np.intp)
        self.stamp = np.zeros(self.slots, dtype=np.int64)
        self.epoch = 0
        self.monitors: list[FeatureMonitor | None] = []
        #: Each numeric slot's tracker (None for the others).
        self.numbers: list[NumericTracker | None] = []
        #: What admits found in the event, by position: ``count`` keys, which are null
        #: (``nulls``), the numbers as floats (``xs``), the other values (``given``), and
        #: the positions of the numbers (``todo``), whose rank searches admits starts. The
        #: feed reads these, not the event.
        self.count = 0
        self.nulls = np.zeros(self.slots, dtype=np.intc)
        self.given: list[Any] = [None] * self.slots
        self.xs = np.zeros(self.slots, dtype=np.float64)
        self.todo = np.zeros(self.slots, dtype=np.intp)
        self.pending = 0
        for j, key in enumerate(self.keys):
            monitor = known.get(key)
            self.monitors.append(monitor)
            if monitor is None:  # only ignored features are not registered
                self.kinds[j] = IGNORED
                self.numbers.append(None)
                continue
            self.kinds[j] = _slot_kind(monitor, settings.feature_kind(self.base, key))
            self.ranks[j] = rank_of[key]
            numeric = self.kinds[j] == NUMERIC
            self.numbers.append(monitor.values if numeric else None)  # type: ignore[arg-type]
        prediction = state.prediction
        assert prediction is not None and prediction.kind is not None
        self.prediction = prediction
        self.prediction_numeric = prediction.kind == "numeric"
        self.prediction_rank = len(known)
        self.error = state.performance
        self.processed = 0

    def admits(self, event: PredictionEvent) -> bool:
        """Whether admission would change nothing for this event (then ``order`` maps its
        keys, in its order, to slots, and ``stamp`` marks the slots it has)."""
        if not self.takes(event.prediction, event.label):
            return False
        features = event.features
        if len(features) > self.slots:
            return False
        self._begin()
        p = 0
        j = -1
        for key, value in features.items():
            j += 1
            if j >= self.slots or not (key is self.keys[j] or key == self.keys[j]):
                found = self.index.get(key)
                if found is None:
                    return False
                j = found
            kind = self.kinds[j]
            if not _fits(kind, value):
                return False
            if value is None:
                self._store(p, j, True, 0.0, None)
            elif kind == NUMERIC:
                self._store(p, j, False, value, None)  # type: ignore[arg-type]  # (a number: _fits)
            else:
                self._store(p, j, False, 0.0, value)
            p += 1
        self._ready(p, event.prediction)
        return True

    def scan(self, cursor: Cursor) -> bool:
        """``admits`` for the features object at ``cursor``, read from the event's bytes
        (:meth:`PartitionDetectors._scan`): whether every key is a slot taking its value;
        ``_ready`` then completes the match. A key that no slot has, a repeated key, a
        value of another kind or outside :mod:`~detector.core.jsonscan`'s subset: False
        (the event is then parsed and matched as a dict)."""
        if cursor.step() != 123:
            return False
        self._begin()
        epoch = self.epoch
        p = 0
        j = -1
        if cursor.ws() == 125:
            cursor.pos += 1
            self.count = 0
            return True
        while True:
            j += 1
            # The expected key is compared with the bytes, and its colon with it; its value
            # is read in the same call.
            token = cursor.member(self.heads[j] if j < self.slots else b"")
            if token == _KEY:
                if j >= self.slots or not cursor.is_key(self.raw_keys[j]):
                    j = self._find(cursor, j)
                    if j < 0:
                        return False
                token = cursor.value_then()
            if self.stamp[j] == epoch:
                return False  # a repeated key (orjson keeps its last value)
            kind = self.kinds[j]
            if token == _NULL:
                self._store(p, j, True, 0.0, None)
            elif token == _NUMBER:
                if kind == NUMERIC:
                    self._store(p, j, False, cursor.x, None)
                elif kind == CONFIGURED or kind == IGNORED:  # noqa: SIM109 (C ints)
                    self._store(p, j, False, 0.0, cursor.value(token))
                else:
                    return False
            elif token == _STRING:
                if kind == NUMERIC or kind == NULL_ONLY:  # noqa: SIM109 (C ints)
                    return False
                self._store(p, j, False, 0.0, cursor.cached(cython.cast(Texts, self.texts[j])))
            elif token == _TRUE or token == _FALSE:  # noqa: SIM109 (C ints)
                if kind == NUMERIC or kind == NULL_ONLY:  # noqa: SIM109 (C ints)
                    return False
                self._store(p, j, False, 0.0, token == _TRUE)
            else:
                return False  # an object, an array, or outside the reader's subset
            p += 1
            c = cursor.after
            if c == 125:
                self.count = p
                return True
            if c != 44:
                return False

    def _find(self, cursor: Cursor, after: int) -> int:
        """The slot of the key just read, out of the usual order; -1 if none has it. The
        search starts after slot ``after``: when the event leaves features out, the next
        key is usually a few slots on."""
        if cursor.escaped:  # written with an escape: its decoded text
            found = self.index.get(cursor.decoded)
            return -1 if found is None else found
        for j in range(after + 1, self.slots):
            if cursor.is_key(self.raw_keys[j]):
                return j
        for j in range(min(after + 1, self.slots)):
            if cursor.is_key(self.raw_keys[j]):
                return j
        return -1

    def takes(self, prediction: Any, label: Any) -> bool:
        """Whether the prediction has the model's kind and a label finds its error-rate
        tracker (the first part of a match)."""
        t = type(prediction)
        if self.prediction_numeric:
            if t is not float and t is not int:
                return False
            numbers = cython.cast(NumericTracker, self.prediction.values)
            numbers.fetch()
        elif t is not str and t is not dict and t is not bool:
            return False
        return label is None or self.error is not None

    def _begin(self) -> None:
        self.epoch += 1
        self.pending = 0

    def _store(self, p: int, j: int, null: bool, x: float, given: Any) -> None:
        """The event's ``p``-th key is slot ``j``; its value null, or the number ``x`` (a
        numeric slot), or ``given`` (the others)."""
        self.nulls[p] = null
        if null:
            pass
        elif self.kinds[j] == NUMERIC:
            numbers = cython.cast(NumericTracker, self.numbers[j])
            numbers.fetch()
            self.xs[p] = x
            self.todo[self.pending] = p
            self.pending += 1
        else:
            self.given[p] = given
        self.order[p] = j
        self.stamp[j] = self.epoch

    def _ready(self, count: int, prediction: Any) -> None:
        """The match is complete (``count`` keys): each numeric value's rank search starts,
        once every feature's fences are loading."""
        self.count = count
        for q in range(self.pending):
            p = self.todo[q]
            numbers = cython.cast(NumericTracker, self.numbers[self.order[p]])
            numbers.prepare(self.xs[p])
        if self.prediction_numeric:
            numbers = cython.cast(NumericTracker, self.prediction.values)
            numbers.prepare(prediction)

    def flush(self, engine: PartitionDetectors, result: BatchResult) -> None:
        """Count this layout's events of the batch, and mark the model for the snapshot."""
        if self.processed:
            if self.segment is None:  # a slice's events are its model's, counted once
                processed = result.processed
                processed[self.model] = processed.get(self.model, 0) + self.processed
            engine._dirty.add(self.model)
            self.processed = 0


def _field(cursor: Cursor) -> int:
    """At a top-level field's opening quote: the bit of the field whose name is there, in
    its quotes, stepped past (0: a field not read, or a name written with an escape; the
    cursor has not moved)."""
    if cursor.pos + 1 >= cursor.end:
        return 0
    initial = cursor.buf[cursor.pos + 1]
    if initial == 109:  # m
        if cursor.expect(b'"model"'):
            return _MODEL
        if cursor.expect(b'"model_version"'):
            return _MODEL_VERSION
    elif initial == 102:  # f
        if cursor.expect(b'"features"'):
            return _FEATURES
    elif initial == 112:  # p
        if cursor.expect(b'"prediction"'):
            return _PREDICTION
    elif initial == 116:  # t
        if cursor.expect(b'"timestamp"'):
            return _TIMESTAMP
    elif initial == 101:  # e
        if cursor.expect(b'"event_id"'):
            return _EVENT_ID
    elif initial == 108:  # l
        if cursor.expect(b'"label"'):
            return _LABEL
    elif initial == 115:  # s
        if cursor.expect(b'"segment"'):
            return _SEGMENT
        if cursor.expect(b'"schema_version"'):
            return _VERSION
    return 0


def _add(hits: list[Any] | None, rank: int, sub: int, name: str, hit: Hit) -> list[Any]:
    if hits is None:
        hits = []
    hits.append((rank, sub, name, hit))
    return hits


def _hit_order(item: tuple[Any, ...]) -> tuple[int, int]:
    return item[0], item[1]


class PartitionDetectors:
    """All detectors fed by one input partition."""

    settings: DetectionSettings
    topic: str
    partition: int
    models: dict[str, ModelState]
    #: Events that needed admission (their model's layout did not take them): a model's
    #: first event, new features or kinds, a first label, and events admission refused.
    full_admissions: int
    parsed_events: int

    def __init__(self, settings: DetectionSettings, topic: str, partition: int) -> None:
        self._adopt(settings)
        self.topic = topic
        self.partition = partition
        self.models = {}
        self._layouts: dict[str, Layout] = {}
        self._slice_layouts: dict[str, Layout] = {}
        self._dirty: set[str] = set()
        #: Slices: key -> (model, segment key, value), and (model, key) -> value -> key.
        self._slices: dict[str, tuple[str, str, str]] = {}
        self._slice_index: dict[tuple[str, str], dict[str, str]] = {}
        self._gone: set[str] = set()  # slices dropped by reconfigure: tombstones
        self._max_bytes = 1 << 62
        self.full_admissions = 0
        #: Events parsed with orjson and matched as a dict: those the event reader
        #: (:meth:`_scan`) did not take (outside its subset of JSON, needing admission, or
        #: invalid).
        self.parsed_events = 0
        #: The event reader (_scan): its cursor, the model names and versions it reuses,
        #: and the layout of the event it read last.
        self._cursor = Cursor()
        self._names = Texts(_NAMES)
        self._versions = Texts(_NAMES)
        self._scanned: Layout | None = None
        #: The label join (None unless ``settings.labels.join``) and the labels topic's name.
        self.join: LabelJoin | None = LabelJoin(settings.labels) if settings.labels.join else None
        self.labels_topic = "labels"

    def _adopt(self, settings: DetectionSettings) -> None:
        """Take ``settings``, and the few of its switches that every event consults, as C
        flags (a pydantic attribute is a slow lookup, a property a Python call)."""
        self.settings = settings
        self._segmenting = settings.segments.enabled
        self._slicing = bool(settings.segments.keys)
        self._protecting = bool(settings.segments.protected)
        self._estimating = settings.estimated_performance.enabled

    def set_max_message_bytes(self, limit: int) -> None:
        self._max_bytes = limit

    # -- processing ---------------------------------------------------------------------

    def process(self, records: Sequence[InputRecord]) -> BatchResult:
        """Process records of this partition in offset order."""
        return self.process_batch(
            [r.offset for r in records],
            [r.value for r in records],
            [r.timestamp_ms for r in records],
        )

    def process_batch(
        self,
        offsets: Sequence[int],
        values: Sequence[bytes | None],
        timestamps: Sequence[int | None] | None = None,
    ) -> BatchResult:
        """Process the messages of this partition at ``offsets``, in offset order.
        ``timestamps`` (Kafka record times) are only carried into rejections.

        Every event is fed to its model's trackers before the next one is looked at, so the
        result does not depend on how the stream is cut into batches.
        """
        if len(values) != len(offsets) or (
            timestamps is not None and len(timestamps) != len(offsets)
        ):
            raise ValueError("offsets, values and timestamps must have the same length")
        result = BatchResult()
        touched: list[Layout] = []
        for i in range(len(offsets)):
            self._event(offsets[i], values[i], timestamps, i, result, touched)
        for layout in touched:
            layout.flush(self, result)
        if self.join is not None:
            result.label_outcomes = self.join.take_outcomes()
        return result

    def _event(
        self,
        offset: int,
        raw: bytes | None,
        timestamps: Sequence[int | None] | None,
        index: int,
        result: BatchResult,
        touched: list[Layout],
    ) -> None:
        """Parse, admit and feed one event."""
        layout: Layout | None
        event = self._scan(raw)
        if event is not None:
            layout = self._scanned
            if self._slicing and event.segment is not None and self._segmenting:
                # Slices match the features as a dict (raw is bytes: _scan read it).
                event.features = orjson.loads(raw)["features"]  # type: ignore[arg-type]
        else:
            self.parsed_events += 1
            try:
                event = parse_event(raw, self._max_bytes, check_features=False)
            except InvalidEvent as exc:
                self._reject(offset, raw, timestamps, index, exc, result)
                return
            layout = self._layouts.get(event.model)
            if layout is None or not layout.admits(event):
                self.full_admissions += 1
                try:
                    state = self._admit(event, result)
                except InvalidEvent as exc:
                    self._reject(offset, raw, timestamps, index, exc, result)
                    return
                layout = Layout(event.model, state, event.features, self.settings)
                self._layouts[event.model] = layout
                if not layout.admits(event):
                    raise AssertionError(
                        f"admitted event not taken by its layout at offset {offset}"
                    )
        assert layout is not None
        if layout.processed == 0:
            touched.append(layout)
        joined = self._feed(layout, event, offset, index, result)
        if event.segment is not None and self._segmenting:
            if self._slicing:
                self._feed_slices(event, offset, index, result, touched)
            if joined is not None:  # after the slices: a first event's slice exists now
                self._label_groups(event.model, layout.state, joined, event.event_id, index, result)

    def _scan(self, raw: bytes | None) -> PredictionEvent | None:
        """Parse and match in one pass over the bytes: the event, with its features read
        into its model's layout (``_scanned``), when the layout takes them and the bytes
        are in :mod:`~detector.core.jsonscan`'s subset of JSON; else None, and the event
        is parsed with orjson and matched as a dict (as every event was before), which
        also words the rejection of an invalid one. Either way the event and the match
        are the same (the tests hold the two paths to that)."""
        cursor = self._cursor
        if not cursor.start(raw, self._max_bytes):
            return None
        cursor.pos += 1
        version: Any = _MISSING
        event_id: Any = _MISSING
        model: Any = _MISSING
        model_version: Any = None
        stamp: Any = _MISSING
        prediction: Any = _MISSING
        label: Any = None
        segment: Any = None
        layout: Layout | None = None
        features_at = -1
        seen = 0
        if cursor.ws() == 125:
            return None
        while True:
            if cursor.ws() != 34:
                return None
            field = _field(cursor)
            # Another field, or a name with an escape (orjson reads it):
            if field == 0 and (not cursor.string() or cursor.escaped):
                return None
            if seen & field or cursor.step() != 58:
                return None  # a repeated field: orjson keeps the last
            seen |= field
            if field == _FEATURES:
                features_at = cursor.pos
                if type(model) is str:
                    layout = self._layouts.get(model)
                    if layout is None or not layout.scan(cursor):
                        return None
                elif not cursor.skip(0):
                    return None
            elif field == _MODEL:
                if cursor.token() != _STRING:
                    return None
                model = cursor.cached(self._names)
            elif field == _EVENT_ID:
                event_id = cursor.scalar()
            elif field == _TIMESTAMP:
                stamp = cursor.scalar()
            elif field == _PREDICTION:
                prediction = cursor.scalar() if cursor.ws() != 123 else cursor.flat()
            elif field == _MODEL_VERSION:
                token = cursor.token()
                if token == _STRING:
                    model_version = cursor.cached(self._versions)
                else:
                    model_version = cursor.value(token)
            elif field == _LABEL:
                token = cursor.token()
                label = cursor.word() if token == _STRING else cursor.value(token)
            elif field == _SEGMENT:
                segment = cursor.flat()
            elif field == _VERSION:
                version = cursor.scalar()
            elif not cursor.skip(0):
                return None
            if (
                event_id is _GIVE_UP
                or stamp is _GIVE_UP
                or prediction is _GIVE_UP
                or model_version is _GIVE_UP
                or label is _GIVE_UP
                or segment is _GIVE_UP
                or version is _GIVE_UP
            ):
                return None
            c = cursor.step()
            if c == 125:
                break
            if c != 44:
                return None
        if not cursor.finished() or features_at < 0:
            return None
        if layout is None:  # the features came before the model
            if type(model) is not str:
                return None
            layout = self._layouts.get(model)
            cursor.pos = features_at
            if layout is None or not layout.scan(cursor):
                return None
        try:
            event = event_of(
                version,
                event_id,
                model,
                model_version,
                stamp,
                _READ,
                prediction,
                label,
                segment,
                False,
            )
        except InvalidEvent:
            return None
        if not layout.takes(event.prediction, event.label):
            return None
        layout._ready(layout.count, event.prediction)
        self._scanned = layout
        return event

    def _feed_slices(
        self,
        event: PredictionEvent,
        offset: int,
        index: int,
        result: BatchResult,
        touched: list[Layout],
    ) -> None:
        """Feed the event to the slice of each configured segment key it has a value of:
        the same detectors as its model's, on that value's events only (labels reach
        slices through :meth:`_label_groups`)."""
        segment = event.segment
        model = event.model
        for key in self.settings.segments.keys:
            value = segment.get(key)  # type: ignore[union-attr]
            if value is None:
                continue
            name = self._slice(model, key, value, result)
            if name is None:
                continue
            sliced = PredictionEvent(
                event.event_id,
                name,
                event.model_version,
                event.timestamp_ms,
                event.features,
                event.prediction,
            )
            layout = self._slice_layouts.get(name)
            if layout is None or not layout.admits(sliced):
                try:
                    state = self._admit(sliced, result, model)
                except InvalidEvent:  # its model took the event: only a stale-feature race
                    continue
                layout = Layout(name, state, sliced.features, self.settings, model, {key: value})
                self._slice_layouts[name] = layout
                if not layout.admits(sliced):
                    raise AssertionError(f"admitted slice event not taken at offset {offset}")
            if layout.processed == 0:
                touched.append(layout)
            self._feed(layout, sliced, offset, index, result)

    def _slice(self, model: str, key: str, value: str, result: BatchResult) -> str | None:
        """The key of a slice; None beyond max_values for the model and key (counted)."""
        values = self._slice_index.get((model, key))
        if values is None:
            values = self._slice_index[(model, key)] = {}
        name = values.get(value)
        if name is None:
            if len(values) >= self.settings.segments.max_values:
                _untracked(result, model, key)
                return None
            name = values[value] = slice_name(model, key, value)
            self._slices[name] = (model, key, value)
        return name

    def _reject(
        self,
        offset: int,
        raw: bytes | None,
        timestamps: Sequence[int | None] | None,
        index: int,
        exc: InvalidEvent,
        result: BatchResult,
    ) -> None:
        stamp = None if timestamps is None else timestamps[index]
        record = InputRecord(self.topic, self.partition, offset, raw, stamp)
        result.rejections.append(Rejection(record, exc.reason, exc.detail))

    def _feed(
        self, layout: Layout, event: PredictionEvent, offset: int, index: int, result: BatchResult
    ) -> Joined | None:
        """Feed every tracker of the model (the layout has just admitted the event). Returns
        the labelled prediction when a label completed it (its own or from the labels
        topic), for the slices and fairness groups (:meth:`_label_groups`)."""
        state = layout.state
        ts = event.timestamp_ms
        hits: list[Any] | None = None
        for p in range(layout.count):  # the event's features, as admits found them
            j = layout.order[p]
            kind = layout.kinds[j]
            if kind == IGNORED:
                continue
            monitor = cython.cast(FeatureMonitor, layout.monitors[j])
            null = bool(layout.nulls[p])  # (uncompiled: a bool, not numpy's)
            hit = monitor.missing.flag(null, index)
            if hit is not None:
                hits = _add(hits, layout.ranks[j], 0, layout.keys[j], hit)
            if null:
                continue
            monitor.last_seen_ms = ts
            if kind == NUMERIC:
                numbers = cython.cast(NumericTracker, monitor.values)
                hit = numbers.number(layout.xs[p], index)
            else:
                value = layout.given[p]
                categories = cython.cast(CategoricalTracker, monitor.values)
                hit = categories.category(
                    value if type(value) is str else categorical(value), index
                )
            if hit is not None:
                hits = _add(
                    hits, layout.ranks[j], 1, layout.keys[j], with_missing_rates(hit, monitor)
                )
        if layout.count < layout.slots:  # features the event left out are missing
            epoch = layout.epoch
            for j in range(layout.slots):
                kind = layout.kinds[j]
                if layout.stamp[j] != epoch and kind != IGNORED:
                    monitor = cython.cast(FeatureMonitor, layout.monitors[j])
                    hit = monitor.missing.flag(True, index)
                    if hit is not None:
                        hits = _add(hits, layout.ranks[j], 0, layout.keys[j], hit)
        monitor = layout.prediction
        monitor.last_seen_ms = ts
        hit = monitor.missing.flag(False, index)
        if hit is not None:
            hits = _add(hits, layout.prediction_rank, 0, PREDICTION, hit)
        watched = prediction_value(event.prediction)
        if layout.prediction_numeric:
            numbers = cython.cast(NumericTracker, monitor.values)
            hit = numbers.number(watched, index)
        else:
            categories = cython.cast(CategoricalTracker, monitor.values)
            hit = categories.category(categorical(watched), index)
        if hit is not None:
            hits = _add(
                hits, layout.prediction_rank, 1, PREDICTION, with_missing_rates(hit, monitor)
            )
        label = event.label
        joined: Joined | None = None
        grouped: dict[str, str] | None = None
        if layout.segment is not None:
            pass  # a slice: labels arrive through _label_groups, fairness is the model's
        elif self.join is not None:
            if self._segmenting:
                grouped = self.settings.segments.sliced(event.segment)
            joined = self.join.prediction(
                event.model,
                event.event_id,
                offset,
                ts,
                event.model_version,
                event.prediction,
                label,
                grouped,
            )
            if joined is not None:
                self._joined(joined, result)
                hit = self._performance(state, event.model).observe(
                    joined.prediction, joined.label, index, self._estimation(state)
                )
                if hit is not None:
                    hits = _add(hits, layout.prediction_rank + 1, 0, ERROR, hit)
        elif label is not None:
            hit = layout.error.observe(event.prediction, label, index, self._estimation(state))
            if hit is not None:
                hits = _add(hits, layout.prediction_rank + 1, 0, ERROR, hit)
        estimation = state.estimation
        if estimation is not None and estimation.table is not None:
            score = score_of(event.prediction)
            if score is not None:
                hit = estimation.observe(score, index)
                if hit is not None:
                    hits = _add(hits, layout.prediction_rank + 1, 1, ERROR, hit)
        if self._protecting and layout.segment is None and event.segment is not None:
            hits = self._decide(state, event, index, hits, layout.prediction_rank + 2, result)
        state.events += 1
        if ts > state.latest_ms:
            state.latest_ms = ts
        layout.processed += 1
        if hits is not None:
            hits.sort(key=_hit_order)
            for item in hits:
                detection = self._detection_at(
                    item[2],
                    offset,
                    layout.base,
                    event.model_version,
                    event.event_id,
                    ts,
                    item[3],
                    layout.segment,
                )
                if joined is not None and joined.label_offset is not None and item[2] == ERROR:
                    detection = _with_label(detection, self.labels_topic, self.partition, joined)
                result.detections.append(detection)
        if state.events % _SWEEP_EVERY == 0:
            result.expired += self._expire(event.model, state, state.latest_ms)
        if joined is None and label is not None and layout.segment is None and self._segmenting:
            joined = Joined(
                event.prediction,
                label,
                offset,
                ts,
                event.model_version,
                None,
                ts,
                self.settings.segments.sliced(event.segment),
            )
        return joined

    def _admit(
        self, event: PredictionEvent, result: BatchResult, base: str | None = None
    ) -> ModelState:
        """Check limits and feature kinds; register new features, the prediction's monitor
        and, at a first label, the error-rate tracker. Raises InvalidEvent. ``base``: the
        model of a slice's event (whose config applies; slices are not counted as models)."""
        settings = self.settings
        model = event.model
        if base is None:
            if model.startswith("\x00"):
                raise InvalidEvent("wrong_type", "'model' must not start with a NUL character")
            config = model
        else:
            config = base
        state = self.models.get(model)
        if state is None:
            if base is None and self._model_count() >= settings.max_models:
                raise InvalidEvent(
                    "too_many_models",
                    f"partition already tracks the maximum of {settings.max_models} models",
                )
            state = ModelState()  # registered only once the event is admitted
        prediction = event.prediction
        # Class probabilities are watched through their argmax: a class name.
        kind = "categorical" if isinstance(prediction, dict) else kind_of(prediction)
        if state.prediction_kind is not None and kind != state.prediction_kind:
            raise InvalidEvent(
                "feature_type_changed",
                f"prediction was {state.prediction_kind}, this event has a {kind} value",
            )
        features = event.features
        check_feature_types(features)
        ignored = settings.ignored(config)
        known = state.features
        new: dict[str, str | None] = {}
        changes: dict[str, str] = {}
        value_kind: str | None
        for name, value in features.items():
            if name in ignored:
                continue
            monitor = known.get(name)
            if value is None:
                if monitor is None:
                    new[name] = None
                continue
            value_kind = kind_of(value)
            configured = settings.feature_kind(config, name)
            if configured == "categorical":
                value_kind = "categorical"
            elif configured == "numeric" and value_kind != "numeric":
                raise InvalidEvent(
                    "wrong_type", f"feature {name[:64]!r} is configured numeric, got a string"
                )
            current = monitor.kind if monitor is not None else new.get(name)
            if current is None:
                if monitor is None:
                    new[name] = value_kind
                else:
                    changes[name] = value_kind
            elif current != value_kind:
                raise InvalidEvent(
                    "feature_type_changed",
                    f"feature {name[:64]!r} was {current}, this event has a {value_kind} value",
                )
        if new and len(known) + len(new) > settings.max_features_per_model:
            # Make room: at the first refused event and every REFUSED_SWEEP_EVERY-th after
            # it, features not seen for the TTL are forgotten, here, at this event. (Not at
            # every refusal, which would make hostile input cost a sweep per event.)
            state.refused += 1
            if model in self.models:
                self._dirty.add(model)  # the refusal count is state: checkpoint it
            if state.refused % REFUSED_SWEEP_EVERY == 1:
                now_ms = max(state.latest_ms, event.timestamp_ms)
                expired = self._expire(model, state, now_ms)
                if expired:
                    result.expired += expired
                    return self._admit(event, result)
            raise InvalidEvent(
                "too_many_features",
                f"model already tracks the maximum of {settings.max_features_per_model} features",
            )
        if state.prediction_kind is None:
            state.prediction_kind = kind
        if state.prediction is None:
            state.prediction = FeatureMonitor(settings, config, PREDICTION, state.prediction_kind)
        if event.label is not None and state.performance is None:
            state.performance = self._new_performance(config)
        for name, new_kind in new.items():
            known[name] = FeatureMonitor(settings, config, name, new_kind)
        for name, changed_kind in changes.items():
            known[name].set_kind(settings, config, name, changed_kind)
        self.models.setdefault(model, state)
        return state

    def _model_count(self) -> int:
        return len(self.models) - sum(1 for name in self.models if name in self._slices)

    def _base(self, name: str) -> str:
        """The model whose config applies to a state key (a slice's model, or itself)."""
        found = self._slices.get(name)
        return name if found is None else found[0]

    def _forget_layout(self, name: str) -> None:
        self._layouts.pop(name, None)
        self._slice_layouts.pop(name, None)

    def _new_performance(self, model: str) -> PerformanceTracker:
        settings = self.settings
        spec = settings.performance_detector(model)
        return PerformanceTracker(spec, settings, performance_fingerprint(settings, model))

    def _performance(self, state: ModelState, name: str) -> PerformanceTracker:
        """The performance tracker of a model (or slice), made at its first labelled
        prediction."""
        perf = state.performance
        if perf is None:
            perf = state.performance = self._new_performance(self._base(name))
            self._forget_layout(name)  # the layout holds the tracker it had
        return perf  # type: ignore[no-any-return]

    def _decide(
        self,
        state: ModelState,
        event: PredictionEvent,
        index: int,
        hits: list[Any] | None,
        rank: int,
        result: BatchResult,
    ) -> list[Any] | None:
        """Count the event's decision in the fairness group of each protected key."""
        settings = self.settings
        d = decision(event.prediction, settings.labels.threshold)
        if d is None:
            return hits
        segments = settings.segments
        segment = event.segment
        fairness = state.fairness
        sub = 0
        for key in segments.protected:
            sub += 1
            value = segment.get(key)  # type: ignore[union-attr]
            if value is None:
                continue
            monitor = fairness.get(key)
            if monitor is None:
                monitor = fairness[key] = _new_fairness(key, segments)
            hit = monitor.decide(value, d, index)
            if hit is False:
                _untracked(result, event.model, key)
            elif isinstance(hit, Hit):
                hits = _add(hits, rank, sub, key, hit)
        return hits

    def _label_groups(
        self,
        model: str,
        state: ModelState,
        joined: Joined,
        event_id: str,
        index: int,
        result: BatchResult,
    ) -> None:
        """A labelled prediction of ``model``: feed the performance of the slices and the
        fairness groups of its segment (``joined.segment``, the configured keys)."""
        segment = joined.segment
        if segment is None:
            return
        settings = self.settings
        segments = settings.segments
        if segments.protected:
            d = decision(joined.prediction, settings.labels.threshold)
            y = binary_label(joined.label)
            if d is not None and y is not None:
                for key in segments.protected:
                    value = segment.get(key)
                    monitor = state.fairness.get(key)
                    if value is not None and monitor is not None:
                        monitor.label(value, d, y)
        for key in segments.keys:
            value = segment.get(key)
            if value is None:
                continue
            name = self._slice_index.get((model, key), {}).get(value)
            if name is None or name not in self.models:
                continue  # beyond max_values (counted with its prediction)
            sliced = self.models[name]
            self._observe_label(sliced, name, model, joined, event_id, index, result, {key: value})

    def _observe_label(
        self,
        state: ModelState,
        name: str,
        model: str,
        joined: Joined,
        event_id: str,
        index: int,
        result: BatchResult,
        segment: dict[str, str] | None = None,
    ) -> None:
        """Feed a labelled prediction to the performance tracker of a model (or slice,
        ``name``), from the labels topic or a slice's share of any label."""
        self._dirty.add(name)
        perf = self._performance(state, name)
        hit = perf.observe(joined.prediction, joined.label, index, self._estimation(state))
        if hit is not None:
            detection = self._detection_at(
                ERROR,
                joined.offset,
                model,
                joined.model_version,
                event_id,
                joined.prediction_ms,
                hit,
                segment,
            )
            if joined.label_offset is not None:
                detection = _with_label(detection, self.labels_topic, self.partition, joined)
            result.detections.append(detection)

    def _estimation(self, state: ModelState) -> EstimatedPerformance | None:
        """The model's estimated performance, made at its first labelled prediction."""
        estimation = state.estimation
        if estimation is None and self._estimating:
            estimation = state.estimation = EstimatedPerformance(self.settings)
        return estimation

    def _joined(self, joined: Joined, result: BatchResult) -> None:
        if joined.label_offset is not None:
            result.label_delays.append((joined.label_ms - joined.prediction_ms) / 1000.0)

    def process_labels(
        self,
        offsets: Sequence[int],
        values: Sequence[bytes | None],
        timestamps: Sequence[int | None] | None = None,
    ) -> BatchResult:
        """Process label events of the labels topic's partition with this partition's
        number, in offset order: each is joined to its prediction (or waits for it), and
        a joined pair feeds the model's performance tracker. Requires ``labels.join``."""
        join = self.join
        if join is None:
            raise RuntimeError("labels.join is off: this partition takes no label events")
        if len(values) != len(offsets) or (
            timestamps is not None and len(timestamps) != len(offsets)
        ):
            raise ValueError("offsets, values and timestamps must have the same length")
        result = BatchResult()
        for i in range(len(offsets)):
            offset = offsets[i]
            raw = values[i]
            try:
                label = parse_label(raw, self._max_bytes)
            except InvalidEvent as exc:
                stamp = None if timestamps is None else timestamps[i]
                record = InputRecord(self.labels_topic, self.partition, offset, raw, stamp)
                result.rejections.append(Rejection(record, exc.reason, exc.detail))
                continue
            joined = join.label(label, offset)
            if joined is None:
                continue
            model = label.model
            state = self.models[model]  # a waiting prediction's model is tracked
            self._joined(joined, result)
            self._observe_label(state, model, model, joined, label.event_id, i, result)
            if self._segmenting:
                self._label_groups(model, state, joined, label.event_id, i, result)
        result.label_outcomes = join.take_outcomes()
        result.labels = len(offsets)
        return result

    def _expire(self, model: str, state: ModelState, now_ms: int) -> int:
        """Forget features whose last non-null value is older than the TTL at ``now_ms``."""
        horizon = now_ms - int(self.settings.feature_ttl_s * 1000)
        stale = [
            name
            for name, monitor in state.features.items()
            if monitor.last_seen_ms and monitor.last_seen_ms < horizon
        ]
        for name in stale:
            del state.features[name]
        if stale:
            self._forget_layout(model)
            self._dirty.add(model)  # even when the event that swept is refused
        return len(stale)

    def _detection_at(
        self,
        feature: str,
        offset: int,
        model: str,
        model_version: str | None,
        event_id: str,
        at_ms: int,
        hit: Hit,
        segment: dict[str, str] | None = None,
    ) -> Detection:
        settings = self.settings
        effect = hit.effect
        severity = "critical" if effect is None or effect >= settings.critical_effect else "warning"
        evidence = dict(hit.evidence)
        evidence["statistic"] = hit.statistic
        evidence["effect_size"] = effect
        detector = dict(hit.detector)
        detector.setdefault("block_size", settings.block_size)
        shown = "n/a" if effect is None else f"{effect:.2f}"
        where = f"{model}/{feature}"
        if segment is not None:
            where += "".join(f" [{k}={v}]" for k, v in segment.items())
        summary = (
            f"{hit.drift_type} drift on {where}: {hit.description} "
            f"(effect {shown}, {hit.detector['name']})"
        )
        return Detection(
            model=model,
            model_version=model_version,
            feature=feature,
            drift_type=hit.drift_type,
            detector=detector,
            severity=severity,
            detected_at_ms=at_ms,
            topic=self.topic,
            partition=self.partition,
            offset=offset,
            event_id=event_id,
            evidence=evidence,
            summary=summary,
            segment=segment,
        )

    # -- state ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, bytes | None]:
        """Changelog entries (key -> value; None deletes the key) for every model changed
        since the last snapshot, and the label join's changed chunks."""
        entries: dict[str, bytes | None] = {
            model: encode_model(self.models[model]) for model in sorted(self._dirty)
        }
        for name in sorted(self._gone):
            entries[name] = None
        self._dirty.clear()
        self._gone.clear()
        if self.join is not None:
            entries.update(self.join.snapshot())
        return entries

    def archive(self) -> dict[str, bytes]:
        """Every key's entry as it stands (no tombstones): the whole state, as a restore of
        the changelog would read it back, for the state archive (docs/audit.md). What the
        next :meth:`snapshot` writes is unchanged."""
        entries = {model: encode_model(self.models[model]) for model in sorted(self.models)}
        if self.join is not None:
            entries.update(self.join.entries())
        return entries

    @classmethod
    def restore(
        cls,
        settings: DetectionSettings,
        topic: str,
        partition: int,
        entries: Mapping[str, bytes],
    ) -> PartitionDetectors:
        """Rebuild from the latest changelog entry per key; raises StateFormatError."""
        restored = cls(settings, topic, partition)
        joined = {key: blob for key, blob in entries.items() if key.startswith(KEY_PREFIX)}
        if restored.join is not None:
            try:
                restored.join = LabelJoin.restore(settings.labels, joined)
            except JoinStateError as exc:
                raise StateFormatError(str(exc)) from None
        for model, blob in entries.items():
            if model in joined:
                continue
            if model.startswith(SLICE_PREFIX):
                restored._restore_slice(model)
            state = decode_model(blob, model)
            if not isinstance(state, ModelState):
                raise StateFormatError(f"changelog entry for model {model!r} is not model state")
            restored.models[model] = state
        restored.reconfigure(settings)
        return restored

    def _restore_slice(self, name: str) -> None:
        model, key, value = parse_slice_name(name)
        self._slices[name] = (model, key, value)
        self._slice_index.setdefault((model, key), {})[value] = name

    def reconfigure(self, settings: DetectionSettings) -> int:
        """Adopt new settings, keeping every feature whose detection settings are unchanged.

        Returns how many feature monitors were reset.
        """
        self._adopt(settings)
        self._layouts.clear()
        self._slice_layouts.clear()
        reset = self._reconfigure_segments(settings.segments)
        labels = settings.labels
        if not labels.join:
            self.join = None
        elif self.join is None:
            self.join = LabelJoin(labels)
        else:
            self.join.horizon_ms = int(labels.horizon_s * 1000)
            self.join.max_pending = labels.max_pending
        for name, state in self.models.items():
            model = self._base(name)
            perf = state.performance
            if isinstance(perf, RateTracker):  # format 4 state: continue it as it was
                state.performance = legacy(perf, performance_fingerprint(settings, model), settings)
            elif perf is not None and perf.fingerprint != performance_fingerprint(settings, model):
                state.performance = self._new_performance(model)
                reset += 1
            estimation = state.estimation
            if estimation is not None and (
                not settings.estimated_performance.enabled
                or estimation.fingerprint != estimation_fingerprint(settings)
            ):
                state.estimation = None  # made again, and calibrated again, from labels
                reset += 1
            ignored = settings.ignored(model)
            for name in list(state.features):
                monitor = state.features[name]
                if name in ignored:
                    del state.features[name]
                    reset += 1
                elif monitor.fingerprint != _fingerprint(settings, model, name):
                    state.features[name] = FeatureMonitor(settings, model, name, monitor.kind)
                    reset += 1
                elif monitor.kind is not None and monitor.values is None:
                    monitor.set_kind(settings, model, name, monitor.kind)  # format 3 state
            prediction = state.prediction
            if prediction is not None and prediction.fingerprint != _fingerprint(
                settings, model, PREDICTION
            ):
                state.prediction = FeatureMonitor(settings, model, PREDICTION, prediction.kind)
                reset += 1
            elif (
                prediction is not None and prediction.kind is not None and prediction.values is None
            ):
                prediction.set_kind(settings, model, PREDICTION, prediction.kind)
        return reset

    def _reconfigure_segments(self, segments: SegmentSettings) -> int:
        """Drop the slices of keys no longer sliced on (tombstoned at the next snapshot) and
        the fairness monitors of keys no longer protected or configured otherwise."""
        reset = 0
        for name, (_model, key, _value) in list(self._slices.items()):
            if key not in segments.keys:
                del self._slices[name]
                self.models.pop(name, None)
                self._gone.add(name)
                self._dirty.discard(name)
                reset += 1
        self._slice_index = {}
        for name, (model, key, value) in self._slices.items():
            self._slice_index.setdefault((model, key), {})[value] = name
        for name, state in self.models.items():
            fairness = state.fairness
            for key in list(fairness):
                monitor = fairness[key]
                if key not in segments.protected or (
                    monitor.window,
                    monitor.min_group_size,
                    monitor.max_values,
                ) != (segments.window, segments.min_group_size, segments.max_values):
                    del fairness[key]
                    self._dirty.add(name)
                    reset += 1
        return reset

    def accuracy(self) -> dict[str, tuple[float | None, float | None]]:
        """Per model with an estimate: the estimated accuracy of its last window_size scored
        predictions and the realized accuracy of its last window_size labelled ones (the
        gauges; not state)."""
        out: dict[str, tuple[float | None, float | None]] = {}
        for model, state in self.models.items():
            estimation = state.estimation
            if model in self._slices:
                continue
            if estimation is not None and estimation.table is not None:
                perf = state.performance
                realized = perf.realized_accuracy() if perf is not None else None
                out[model] = (estimation.estimate(), realized)
        return out

    @property
    def active_detectors(self) -> int:
        total = 0
        for state in self.models.values():
            total += sum(monitor.detector_count for monitor in state.features.values())
            total += state.prediction.detector_count if state.prediction is not None else 0
            total += 1 if state.performance is not None else 0
            total += 1 if state.estimation is not None else 0
            total += len(state.fairness)
        return total


def _untracked(result: BatchResult, model: str, key: str) -> None:
    counts = result.untracked
    counts[(model, key)] = counts.get((model, key), 0) + 1


def _new_fairness(key: str, segments: SegmentSettings) -> FairnessMonitor:
    return FairnessMonitor(key, segments.window, segments.min_group_size, segments.max_values)


def _with_label(detection: Detection, topic: str, partition: int, joined: Joined) -> Detection:
    """A performance detection completed by a label event: the label record's coordinates."""
    label = {
        "topic": topic,
        "partition": partition,
        "offset": joined.label_offset,
        "timestamp_ms": joined.label_ms,
    }
    return replace(
        detection, label=label, detected_at_ms=max(joined.label_ms, joined.prediction_ms)
    )


def with_missing_rates(hit: Hit, monitor: FeatureMonitor) -> Hit:
    """Add the feature's missing rates (reference and recent) to a value hit's evidence."""
    ref_missing, cur_missing = monitor.missing.rates()
    hit.evidence["reference"]["missing_rate"] = _rate(ref_missing)
    hit.evidence["current"]["missing_rate"] = _rate(cur_missing)
    return hit


def _rate(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


__all__ = ["PartitionDetectors", "StateFormatError"]
