# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The compiled hot path: River detector drivers, trackers and the per-event loop.

Everything here has a readable reference: :mod:`detector.core.trackers` for the trackers
and the per-event path of :class:`detector.core.engine.PartitionDetectors` for the loop.
``tests/unit/test_kernel.py`` proves that both give identical hits on the same streams,
and every detector step is a call into River's own detector object.
"""

from collections import Counter

import numpy as np

from detector.core.hits import (
    RANK_WINDOW,
    Rearm,
    block_scale,
    categorical_hit,
    learn_categories,
    located,
    numeric_hit,
    rate_hit,
)

cdef extern from *:
    """
    #define DD_PREFETCH(p) __builtin_prefetch((const void *)(p))
    """
    void DD_PREFETCH(const void *p) noexcept nogil

cdef enum:
    RANKS = 512  # hits.RANK_WINDOW, as a C constant

assert RANKS == RANK_WINDOW


cdef object _build(object spec):
    from detector.core.detectors import build_detector

    return build_detector(spec)


# -- River detectors -----------------------------------------------------------------------


cdef class Detector:
    """One value in, whether drift was detected at it."""

    cpdef bint step(self, double x) except -1:
        raise NotImplementedError

    def describe(self):
        raise NotImplementedError


cdef class AdwinFast(Detector):
    """``river.drift.ADWIN`` with the per-call Python overhead removed.

    ``river.drift.ADWIN.update`` resets its Rust helper on the call after a detection and
    then forwards to ``helper.update``; this does the same, directly.

    Zeros are shown late: while the window holds nothing but zeros (since the start or the
    last reset), another zero cannot be a change (both sub-window means are 0), so zeros
    are counted and handed to River, in order, just before the next non-zero value. River
    sees the same calls and detects at the same positions; a statistic that stays at 0
    (a feature that is never missing, a category that never occurs) costs nothing.
    """

    cdef object _adwin
    cdef object _update
    cdef bint _detected
    cdef long long _pending  # zeros not yet handed to River
    cdef bint _zeros_only  # River's window holds only zeros (or nothing)

    def __init__(self, adwin, detected=False, pending=0, zeros_only=None):
        self._adwin = adwin
        self._update = adwin._helper.update
        self._detected = detected
        self._pending = pending
        self._zeros_only = adwin.width == 0 if zeros_only is None else zeros_only

    cpdef bint step(self, double x) except -1:
        if x == 0.0 and self._zeros_only:
            self._pending += 1
            return False
        while self._pending:
            self._pending -= 1
            self._river(0.0)  # cannot fire: the window is all zeros
        self._zeros_only = False
        if self._river(x):
            self._zeros_only = True  # River starts a new window at the next value
            return True
        return False

    cdef bint _river(self, double x) except -1:
        if self._detected:
            self._adwin._reset()
            self._update = self._adwin._helper.update
        self._detected = self._update(x)
        return self._detected

    def describe(self):
        return {"name": "ADWIN", "params": dict(self._adwin._get_params())}

    def __reduce__(self):
        return (AdwinFast, (self._adwin, self._detected, self._pending, self._zeros_only))


cdef class RiverDetector(Detector):
    """Any ``river.drift`` detector, through its public ``update``/``drift_detected``."""

    cdef str _name
    cdef object _det

    def __init__(self, name, det):
        self._name = name
        self._det = det

    cpdef bint step(self, double x) except -1:
        self._det.update(x)
        return bool(self._det.drift_detected)

    def describe(self):
        return {"name": self._name, "params": dict(self._det._get_params())}

    def __reduce__(self):
        return (RiverDetector, (self._name, self._det))


# -- trackers ------------------------------------------------------------------------------


def _restore(cls, state):
    obj = cls.__new__(cls)
    obj.__setstate__(state)
    return obj


cdef inline Py_ssize_t _slot(int* head, int* length, Py_ssize_t cap) noexcept nogil:
    """Where a ring of ``cap`` slots takes its next value; advances head and length."""
    cdef Py_ssize_t at = head[0]
    head[0] = <int>(at + 1 if at + 1 < cap else 0)
    if length[0] < cap:
        length[0] += 1
    return at


cdef class Tracker:
    """What the three trackers share: the Python ``update`` over their typed ``push``, and
    pickling through ``__getstate__``/``__setstate__``."""

    cdef object _push(self, object value, Py_ssize_t index):
        raise NotImplementedError

    def update(self, values):
        """Feed values in order; hits are indexed into ``values``."""
        hits = []
        for i, value in enumerate(values):
            hit = self._push(value, i)
            if hit is not None:
                hits.append(hit)
        return hits

    def __reduce__(self):
        return (_restore, (type(self), self.__getstate__()))


cdef class RateTracker(Tracker):
    """Rate of a 0/1 flag per observation (missing value, wrong prediction)."""

    cdef public int k
    cdef public double scale
    cdef public str drift_type
    cdef public Detector detector
    cdef public int ref_blocks
    cdef public object rearm
    cdef public long long seen
    cdef long long ref_sum
    cdef int ref_len
    cdef long long[::1] recent  # block counts, a ring
    cdef int recent_head
    cdef int recent_len
    cdef int cnt
    cdef long long acc

    def __init__(self, spec, settings, str drift_type):
        self.k = settings.block_size
        self.scale = block_scale(self.k)
        self.drift_type = drift_type
        self.detector = _build(spec)
        self.ref_blocks = max(1, settings.reference_size // self.k)
        self.recent = np.zeros(max(1, settings.window_size // self.k), dtype=np.int64)
        self.rearm = Rearm(settings.rearm_after)

    cdef object push(self, bint flag, Py_ssize_t index):
        cdef long long count
        self.seen += 1
        self.acc += flag
        self.cnt += 1
        if self.cnt < self.k:
            return None
        count = self.acc
        self.acc = 0
        self.cnt = 0
        if self.ref_len < self.ref_blocks:
            self.ref_sum += count
            self.ref_len += 1
        self.recent[_slot(&self.recent_head, &self.recent_len, self.recent.shape[0])] = count
        if self.detector.step(count * self.scale):
            return self._hit(index)
        return None

    cdef object _hit(self, Py_ssize_t index):
        ref_rate, cur_rate = self.rates()
        self.ref_sum = 0
        self.ref_len = 0
        self.recent_len = 0
        self.recent_head = 0
        if not self.rearm.fresh(self.drift_type, self.seen):
            return None
        return rate_hit(index, self.drift_type, self.detector.describe(), ref_rate, cur_rate)

    cdef object _push(self, object value, Py_ssize_t index):
        return self.push(bool(value), index)

    def rates(self):
        """The reference rate and the rate over the recent window (None: no block yet)."""
        cdef long long total = 0
        cdef int i
        ref = self.ref_sum / <double>(self.ref_len * self.k) if self.ref_len else None
        if not self.recent_len:
            return ref, None
        for i in range(self.recent_len):
            total += self.recent[i]
        return ref, total / <double>(self.recent_len * self.k)

    def __getstate__(self):
        return {
            "k": self.k, "drift_type": self.drift_type, "detector": self.detector,
            "ref_blocks": self.ref_blocks, "rearm": self.rearm, "seen": self.seen,
            "ref_sum": self.ref_sum, "ref_len": self.ref_len,
            "recent": np.asarray(self.recent).copy(), "recent_head": self.recent_head,
            "recent_len": self.recent_len, "cnt": self.cnt, "acc": self.acc,
        }

    def __setstate__(self, state):
        self.k = state["k"]
        self.scale = block_scale(self.k)
        self.drift_type = state["drift_type"]
        self.detector = state["detector"]
        self.ref_blocks = state["ref_blocks"]
        self.rearm = state["rearm"]
        self.seen = state["seen"]
        self.ref_sum = state["ref_sum"]
        self.ref_len = state["ref_len"]
        self.recent = state["recent"]
        self.recent_head = state["recent_head"]
        self.recent_len = state["recent_len"]
        self.cnt = state["cnt"]
        self.acc = state["acc"]


cdef inline Py_ssize_t _left(const double* ref, Py_ssize_t n, double x) noexcept nogil:
    # First index i with ref[i] >= x (numpy.searchsorted side="left"), without branches
    # to mispredict: the search halves n with conditional moves.
    cdef const double* base = ref
    cdef Py_ssize_t half
    while n > 1:
        half = n >> 1
        base = base + half if base[half] < x else base
        n -= half
    return (base - ref) + (base[0] < x)


cdef inline Py_ssize_t _right(const double* ref, Py_ssize_t n, double x) noexcept nogil:
    # First index i with ref[i] > x (numpy.searchsorted side="right").
    cdef const double* base = ref
    cdef Py_ssize_t half
    while n > 1:
        half = n >> 1
        base = base + half if base[half] <= x else base
        n -= half
    return (base - ref) + (base[0] <= x)


cdef class NumericTracker(Tracker):
    """Location and spread of a numeric stream, shape-free through a reference rank transform."""

    cdef public int k
    cdef public double scale
    cdef public object spec
    cdef public int ref_size
    cdef public object drift_type
    cdef public int window
    cdef public list building
    cdef public object reference
    cdef double[::1] ref
    cdef double[::1] fences  # the last value of each bucket of 8 reference values
    cdef Py_ssize_t size
    cdef Py_ssize_t buckets
    cdef double ca
    cdef double cb
    cdef double[::1] recent  # a ring of the last max(window, RANKS) values
    cdef int cap
    cdef int recent_head
    cdef int recent_len
    cdef int since  # values ranked since the reference was learned, up to RANKS
    cdef int cnt
    cdef long long sum_a
    cdef long long sum_b
    cdef public Detector mean_det
    cdef public Detector spread_det
    cdef public long long seen
    cdef public object rearm

    def __init__(self, spec, settings, drift_type):
        self.k = settings.block_size
        self.scale = block_scale(self.k)
        self.spec = spec
        self.ref_size = settings.reference_size
        self.drift_type = drift_type  # None: "mean"/"variance"; else e.g. "prediction"
        self.window = settings.window_size
        self.building = []
        self.reference = None
        self.cap = max(self.window, RANKS)
        self.recent = np.zeros(self.cap, dtype=np.float64)
        self.mean_det = _build(spec)
        self.spread_det = _build(spec)
        self.rearm = Rearm(settings.rearm_after)

    cdef void _learn(self):
        self.reference = np.sort(np.asarray(self.building, dtype=np.float64))
        self.building = []
        self._bind()
        self.since = 0

    cdef void _bind(self):
        self.ref = self.reference
        self.size = self.ref.shape[0]
        self.buckets = (self.size + 7) // 8
        self.fences = self.reference[np.minimum(np.arange(self.buckets) * 8 + 7, self.size - 1)]
        self.ca = self.scale / (2.0 * self.size)
        self.cb = self.scale / self.size

    cdef object push(self, double x, Py_ssize_t index):
        cdef long long a
        cdef bint fired_mean, fired_spread
        self.seen += 1
        self.recent[_slot(&self.recent_head, &self.recent_len, self.cap)] = x
        if self.reference is None:
            self.building.append(x)
            if len(self.building) >= self.ref_size:
                self._learn()
            return None
        a = self._ranks(x)
        if self.since < RANKS:
            self.since += 1
        self.sum_a += a
        self.sum_b += a - self.size if a >= self.size else self.size - a
        self.cnt += 1
        if self.cnt < self.k:
            return None
        fired_mean = self.mean_det.step(self.sum_a * self.ca)
        fired_spread = self.spread_det.step(self.sum_b * self.cb)
        self.cnt = 0
        self.sum_a = 0
        self.sum_b = 0
        if fired_mean or fired_spread:
            return self._hit(index, fired_mean)
        return None

    cdef inline void prefetch(self, double x) noexcept:
        """Start loading the reference bucket that ``push(x)`` will search, so that the
        loads of all of an event's features overlap instead of waiting one by one."""
        cdef Py_ssize_t bucket
        if self.reference is None:
            return
        bucket = _left(&self.fences[0], self.buckets, x)
        if bucket < self.buckets:
            DD_PREFETCH(&self.ref[bucket * 8])

    cdef inline long long _ranks(self, double x) noexcept:
        """numpy.searchsorted left + right on the reference, touching two cache lines: the
        fences (small, shared by every search, so cached) find the bucket of 8 values,
        then one bucket is searched. The right rank differs only on ties."""
        cdef Py_ssize_t bucket, start, left
        bucket = _left(&self.fences[0], self.buckets, x)
        if bucket == self.buckets:
            return 2 * self.size
        start = bucket * 8
        left = start + _left(&self.ref[start], min(8, self.size - start), x)
        if left < self.size and self.ref[left] == x:
            return 2 * left + _right(&self.ref[left], self.size - left, x)
        return 2 * left

    cdef object _hit(self, Py_ssize_t index, bint fired_mean):
        cdef long long total = 0
        cdef double value
        # The mean rank of the values since the reference was learned (the last RANKS).
        for value in self._recent(self.since):
            total += self._ranks(value)
        u_mean = (total / <double>self.since) / (2.0 * self.size)
        ref = self.reference
        current = self._recent(self.window)
        is_location = located(fired_mean, u_mean)
        drift_type = self.drift_type or ("mean" if is_location else "variance")
        detector = (self.mean_det if fired_mean else self.spread_det).describe()
        # Re-learn the reference from the values after the trigger; fresh detectors.
        self.reference = None
        self.building = []
        self.mean_det = _build(self.spec)
        self.spread_det = _build(self.spec)
        if not self.rearm.fresh(drift_type, self.seen):
            return None
        return numeric_hit(index, drift_type, is_location, ref, current, detector)

    cdef object _recent(self, int count):
        """The last ``count`` values (at most those kept), oldest first."""
        arr = np.asarray(self.recent)
        if self.recent_len < self.cap:
            ordered = arr[: self.recent_len]
        else:
            ordered = np.concatenate((arr[self.recent_head :], arr[: self.recent_head]))
        return ordered[max(0, ordered.shape[0] - count) :].copy()

    cdef object _push(self, object value, Py_ssize_t index):
        return self.push(value, index)

    def __getstate__(self):
        return {
            "k": self.k, "spec": self.spec, "ref_size": self.ref_size,
            "drift_type": self.drift_type, "window": self.window,
            "building": list(self.building), "reference": self.reference,
            "recent": self._recent(self.cap), "since": self.since, "cnt": self.cnt,
            "sum_a": self.sum_a, "sum_b": self.sum_b, "mean_det": self.mean_det,
            "spread_det": self.spread_det, "seen": self.seen, "rearm": self.rearm,
        }

    def __setstate__(self, state):
        self.k = state["k"]
        self.scale = block_scale(self.k)
        self.spec = state["spec"]
        self.ref_size = state["ref_size"]
        self.drift_type = state["drift_type"]
        self.window = state["window"]
        self.building = state["building"]
        self.reference = state["reference"]
        if self.reference is not None:
            self._bind()
        self.cap = max(self.window, RANKS)
        recent = state["recent"]
        self.recent = np.zeros(self.cap, dtype=np.float64)
        self.recent_len = recent.shape[0]
        self.recent_head = self.recent_len % self.cap
        np.asarray(self.recent)[: self.recent_len] = recent
        self.since = state["since"]
        self.cnt = state["cnt"]
        self.sum_a = state["sum_a"]
        self.sum_b = state["sum_b"]
        self.mean_det = state["mean_det"]
        self.spread_det = state["spread_det"]
        self.seen = state["seen"]
        self.rearm = state["rearm"]


cdef class CategoricalTracker(Tracker):
    """Shares of the frequent reference categories, plus one share for all others."""

    cdef public int k
    cdef public double scale
    cdef public object spec
    cdef public object settings
    cdef public int ref_size
    cdef public str drift_type
    cdef public list building
    cdef public object ref_counts
    cdef public dict codes
    cdef public list detectors
    cdef list recent  # a ring of the last `window` values
    cdef int window
    cdef int recent_head
    cdef int recent_len
    cdef long long[::1] counts
    cdef int cnt
    cdef public long long seen
    cdef public object rearm

    def __init__(self, spec, settings, drift_type):
        self.k = settings.block_size
        self.scale = block_scale(self.k)
        self.spec = spec
        self.settings = settings
        self.ref_size = settings.reference_size
        self.drift_type = drift_type or "categorical"
        self.building = []
        self.ref_counts = None
        self.codes = {}
        self.detectors = []
        self.window = settings.window_size
        self.recent = [None] * self.window
        self.counts = np.zeros(1, dtype=np.int64)
        self.rearm = Rearm(settings.rearm_after)

    cdef void _learn(self):
        settings = self.settings
        self.codes, self.ref_counts = learn_categories(
            self.building, settings.max_categories, settings.min_category_share
        )
        self.detectors = [_build(self.spec) for _ in range(len(self.codes) + 1)]
        self.counts = np.zeros(len(self.codes) + 1, dtype=np.int64)
        self.cnt = 0
        self.building = []

    cdef object push(self, str value, Py_ssize_t index):
        cdef Py_ssize_t code, c, width
        cdef int fired = -1
        cdef Detector det
        self.seen += 1
        self.recent[_slot(&self.recent_head, &self.recent_len, self.window)] = value
        if self.ref_counts is None:
            self.building.append(value)
            if len(self.building) >= self.ref_size:
                self._learn()
            return None
        width = self.counts.shape[0]
        found = self.codes.get(value)
        code = width - 1 if found is None else <Py_ssize_t>found
        self.counts[code] += 1
        self.cnt += 1
        if self.cnt < self.k:
            return None
        for c in range(width):
            det = self.detectors[c]
            if det.step(self.counts[c] * self.scale) and fired < 0:
                fired = c
            self.counts[c] = 0
        self.cnt = 0
        if fired >= 0:
            return self._hit(index, fired)
        return None

    cdef object _hit(self, Py_ssize_t index, int fired):
        ref_counts = self.ref_counts
        current = Counter(self._recent())
        detector = self.detectors[fired].describe()
        self.ref_counts = None
        self.building = []
        if not self.rearm.fresh(self.drift_type, self.seen):
            return None
        return categorical_hit(
            index, self.drift_type, ref_counts, current, fired, self.codes, detector
        )

    cdef list _recent(self):
        """The last ``window`` values, oldest first."""
        if self.recent_len < self.window:
            return self.recent[: self.recent_len]
        return self.recent[self.recent_head :] + self.recent[: self.recent_head]

    cdef object _push(self, object value, Py_ssize_t index):
        return self.push(value, index)

    def __getstate__(self):
        return {
            "k": self.k, "spec": self.spec, "settings": self.settings,
            "ref_size": self.ref_size, "drift_type": self.drift_type,
            "building": list(self.building), "ref_counts": self.ref_counts,
            "codes": self.codes, "detectors": self.detectors, "window": self.window,
            "recent": self._recent(), "counts": np.asarray(self.counts).copy(),
            "cnt": self.cnt, "seen": self.seen, "rearm": self.rearm,
        }

    def __setstate__(self, state):
        self.k = state["k"]
        self.scale = block_scale(self.k)
        self.spec = state["spec"]
        self.settings = state["settings"]
        self.ref_size = state["ref_size"]
        self.drift_type = state["drift_type"]
        self.building = state["building"]
        self.ref_counts = state["ref_counts"]
        self.codes = state["codes"]
        self.detectors = state["detectors"]
        self.window = state["window"]
        recent = state["recent"]
        self.recent = list(recent) + [None] * (self.window - len(recent))
        self.recent_len = len(recent)
        self.recent_head = len(recent) % self.window
        self.counts = state["counts"]
        self.cnt = state["cnt"]
        self.seen = state["seen"]
        self.rearm = state["rearm"]


# -- the per-event loop ----------------------------------------------------------------------

from cpython.dict cimport PyDict_GetItem, PyDict_Next, PyDict_Size
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF

import orjson

from detector.core.events import (
    InvalidEvent,
    PredictionEvent,
    check_schema_version,
    check_segment,
    timestamp_ms,
)
from detector.core.values import categorical, checked_argmax, is_error

cdef object _loads = orjson.loads
cdef enum:
    IGNORED = 0
    NUMERIC = 1
    CATEGORICAL = 2
    NULL_ONLY = 3  # only nulls seen so far: a value takes the reference path
    CONFIGURED = 4  # configured categorical: numbers are categories too
    UNKNOWN = 5  # not a feature of the model (forgotten by a sweep): the reference path

cdef int _kind(str kind):
    if kind == "numeric":
        return NUMERIC
    if kind == "categorical":
        return CATEGORICAL
    return NULL_ONLY


cdef class Layout:
    """One model's known features, as slots the loop can fill without Python-level checks:
    first the keys of the event the reference path last admitted, in its order (so the
    usual event matches slot by slot), then the model's other features. An event whose
    keys are all slots, with values of the slots' kinds, is fed here in whatever key order;
    the features it leaves out count as missing, as on the reference path. Any other event
    (a new feature, a new kind, a sweep) takes the reference path, which then builds a new
    layout."""

    cdef str model
    cdef object state
    cdef list keys  # slot -> feature name
    cdef dict index  # feature name -> slot
    cdef Py_ssize_t slots
    cdef int[::1] kinds
    cdef list monitors
    cdef list missing
    cdef list values
    cdef list ranks
    cdef Py_ssize_t[::1] order  # the current event's key position -> slot
    cdef long long[::1] stamp  # the last event (epoch) that had a value for the slot
    cdef long long epoch
    cdef long long[::1] last_seen  # -1: no value since the last sync
    cdef long long pred_last_seen
    cdef int pred_kind
    cdef object pred_monitor
    cdef RateTracker pred_missing
    cdef object pred_values
    cdef int pred_rank
    cdef RateTracker error
    cdef long long events
    cdef long long latest_ms
    cdef Py_ssize_t processed

    def __init__(self, str model, state, dict features, settings):
        known = state.features
        rank_of = {name: i for i, name in enumerate(known)}
        self.model = model
        self.state = state
        self.keys = list(features) + [name for name in known if name not in features]
        self.index = {key: j for j, key in enumerate(self.keys)}
        n = self.slots = len(self.keys)
        self.kinds = np.zeros(n, dtype=np.intc)
        self.monitors = []
        self.missing = []
        self.values = []
        self.ranks = []
        self.order = np.zeros(n, dtype=np.intp)
        self.stamp = np.zeros(n, dtype=np.int64)
        self.epoch = 0
        self.last_seen = np.full(n, -1, dtype=np.int64)
        self.pred_last_seen = -1
        ignored = settings.ignored(model)
        for j, key in enumerate(self.keys):
            monitor = known.get(key)
            if monitor is None:
                self.kinds[j] = IGNORED if key in ignored else UNKNOWN
                self.monitors.append(None)
                self.missing.append(None)
                self.values.append(None)
                self.ranks.append(-1)
                continue
            self.kinds[j] = _kind(monitor.kind)
            if self.kinds[j] == CATEGORICAL and settings.feature_kind(model, key) == "categorical":
                self.kinds[j] = CONFIGURED
            self.monitors.append(monitor)
            self.missing.append(monitor.missing)
            self.values.append(monitor.values)
            self.ranks.append(rank_of[key])
            if self.kinds[j] != NULL_ONLY and monitor.values is None:
                self.kinds[j] = NULL_ONLY  # not set up yet: the reference path does it
        prediction = state.prediction
        self.pred_monitor = prediction
        self.pred_kind = _kind(prediction.kind)
        self.pred_missing = prediction.missing
        self.pred_values = prediction.values
        if self.pred_values is None:
            self.pred_kind = NULL_ONLY
        self.pred_rank = len(known)
        self.error = state.error
        self.events = state.events
        self.latest_ms = state.latest_ms
        self.processed = 0

    cdef void sync(self, engine, result):
        """Write what the loop counted back to the model's state."""
        cdef Py_ssize_t j
        if not self.processed:
            return
        for j in range(len(self.monitors)):
            if self.last_seen[j] >= 0:
                self.monitors[j].last_seen_ms = self.last_seen[j]
                self.last_seen[j] = -1
        if self.pred_last_seen >= 0:
            self.pred_monitor.last_seen_ms = self.pred_last_seen
            self.pred_last_seen = -1
        state = self.state
        state.events = self.events
        state.latest_ms = self.latest_ms
        processed = result.processed
        processed[self.model] = processed.get(self.model, 0) + self.processed
        engine._dirty.add(self.model)
        self.processed = 0


cdef inline bint _fits(int kind, object value):
    """Whether a value of this type is fed by the loop for a slot of this kind."""
    cdef type t = type(value)
    if kind == UNKNOWN:
        return False
    if value is None:
        return True
    if kind == NUMERIC:
        return t is float or t is int
    if kind == CATEGORICAL:
        return t is str or t is bool
    if kind == CONFIGURED or kind == IGNORED:
        return t is str or t is float or t is int or t is bool
    return False


cdef list _add(list hits, int rank, int sub, str name, object hit):
    if hits is None:
        hits = []
    hits.append((rank, sub, name, hit))
    return hits


def run(engine, list offsets, list values, list timestamps, result):
    # timestamps: the Kafka record times, or None; only rejections carry them.
    """Process one partition's messages in order; see PartitionDetectors.process_batch."""
    from detector.core.engine import ERROR, PREDICTION, SWEEP_EVERY, with_missing_rates

    cdef long long sweep_every = SWEEP_EVERY
    cdef Py_ssize_t i, j, p, n = len(offsets), pos
    cdef Py_ssize_t max_bytes = engine._max_bytes
    cdef dict layouts = engine._layouts
    cdef list touched = []
    cdef Layout layout
    cdef PyObject *key_ptr
    cdef PyObject *value_ptr
    cdef PyObject *found
    cdef int kind, pred_kind
    cdef long long ts_ms
    cdef double x
    cdef list hits
    cdef RateTracker missing
    cdef bint ok
    # The last RFC 3339 string converted, and its time: consecutive events often carry the
    # same string (times to the second, or to the millisecond at high rates), and
    # timestamp_ms is a pure function of it.
    cdef str last_stamp = None
    cdef long long last_stamp_ms = 0
    for i in range(n):
        raw = values[i]
        if type(raw) is not bytes or not raw or len(<bytes>raw) > max_bytes:
            _slow(engine, touched, result, offsets[i], raw, timestamps, i)
            continue
        try:
            doc = _loads(raw)
        except Exception:
            _slow(engine, touched, result, offsets[i], raw, timestamps, i)
            continue
        if type(doc) is not dict:
            _slow(engine, touched, result, offsets[i], raw, timestamps, i)
            continue
        # The event's own fields: type tests, each a part of one of the parser's rules (an
        # event that fails one takes the reference path, which says what is wrong).
        found = PyDict_GetItem(doc, "model")
        if found is NULL or type(<object>found) is not str or not <str>found:
            _slow(engine, touched, result, offsets[i], raw, timestamps, i)
            continue
        model = <object>found
        found = PyDict_GetItem(layouts, model)
        if found is NULL:
            _slow(engine, touched, result, offsets[i], raw, timestamps, i)
            continue
        layout = <Layout>found
        ok = (layout.events + 1) % sweep_every != 0  # sweeps: the reference path
        if ok:
            found = PyDict_GetItem(doc, "event_id")
            ok = found is not NULL and type(<object>found) is str and len(<str>found) > 0
        if ok:
            found = PyDict_GetItem(doc, "model_version")
            ok = found is NULL or <object>found is None or type(<object>found) is str
        # The rules that take more than a type test are the parser's own functions
        # (detector.core.events): the same value, or the same InvalidEvent, on both paths.
        # An event they refuse takes the reference path, which rejects it.
        ts_ms = -1
        segment = None
        if ok:
            found = PyDict_GetItem(doc, "timestamp")
            ok = found is not NULL
            if ok:
                try:
                    stamp = <object>found
                    if type(stamp) is str and stamp == last_stamp:
                        ts_ms = last_stamp_ms  # the same string: the same conversion
                    else:
                        ts_ms = timestamp_ms(stamp)
                        if type(stamp) is str:
                            last_stamp = stamp
                            last_stamp_ms = ts_ms
                    found = PyDict_GetItem(doc, "schema_version")
                    if found is not NULL:
                        check_schema_version(<object>found)
                    found = PyDict_GetItem(doc, "segment")
                    if found is not NULL and <object>found is not None:
                        segment = <object>found
                        check_segment(segment)
                except InvalidEvent:
                    ok = False
        features = None
        if ok:
            found = PyDict_GetItem(doc, "features")
            ok = found is not NULL and type(<object>found) is dict
            if ok:
                features = <object>found
                ok = PyDict_Size(features) <= layout.slots
        # The prediction: its kind must be the model's.
        pred = None
        pred_kind = IGNORED
        if ok:
            found = PyDict_GetItem(doc, "prediction")
            if found is not NULL:
                pred = <object>found
                if type(pred) is float or type(pred) is int:
                    pred_kind = NUMERIC
                elif type(pred) is str:
                    pred_kind = CATEGORICAL
                elif type(pred) is dict:
                    pred = checked_argmax(pred)
                    pred_kind = IGNORED if pred is None else CATEGORICAL
            ok = pred_kind != IGNORED and pred_kind == layout.pred_kind
        label = None
        if ok:
            found = PyDict_GetItem(doc, "label")
            if found is not NULL and <object>found is not None:
                label = <object>found
                ok = layout.error is not None
        # Every key a slot (usually the one after the previous key's: the layout's order
        # with any left-out features skipped), a value of its kind.
        if ok:
            layout.epoch += 1
            pos = 0
            p = 0
            j = -1
            while PyDict_Next(features, &pos, &key_ptr, &value_ptr):
                key = <object>key_ptr
                j += 1
                if j >= layout.slots or not (key is layout.keys[j] or key == layout.keys[j]):
                    found = PyDict_GetItem(layout.index, key)
                    if found is NULL:
                        ok = False
                        break
                    j = <Py_ssize_t><object>found
                kind = layout.kinds[j]
                if not _fits(kind, <object>value_ptr):
                    ok = False
                    break
                if kind == NUMERIC and <object>value_ptr is not None:
                    (<NumericTracker>layout.values[j]).prefetch(<double><object>value_ptr)
                layout.order[p] = j
                layout.stamp[j] = layout.epoch
                p += 1
        if not ok:
            _slow(engine, touched, result, offsets[i], raw, timestamps, i)
            continue
        # Admitted: feed every tracker of the model, in the reference path's order of hits.
        hits = None
        if layout.processed == 0:
            touched.append(layout)
        pos = 0
        p = 0
        while PyDict_Next(features, &pos, &key_ptr, &value_ptr):
            j = layout.order[p]
            p += 1
            kind = layout.kinds[j]
            if kind != IGNORED:
                value = <object>value_ptr
                missing = <RateTracker>layout.missing[j]
                hit = missing.push(value is None, i)
                if hit is not None:
                    hits = _add(hits, layout.ranks[j], 0, <str>key_ptr, hit)
                if value is not None:
                    layout.last_seen[j] = ts_ms
                    if kind == NUMERIC:
                        hit = (<NumericTracker>layout.values[j]).push(<double>value, i)
                    else:
                        if type(value) is not str:
                            value = categorical(value)
                        hit = (<CategoricalTracker>layout.values[j]).push(<str>value, i)
                    if hit is not None:
                        hit = with_missing_rates(hit, layout.monitors[j])
                        hits = _add(hits, layout.ranks[j], 1, <str>key_ptr, hit)
        if p < layout.slots:  # features the event left out are missing
            for j in range(layout.slots):
                kind = layout.kinds[j]
                if layout.stamp[j] != layout.epoch and kind != IGNORED and kind != UNKNOWN:
                    hit = (<RateTracker>layout.missing[j]).push(True, i)
                    if hit is not None:
                        hits = _add(hits, layout.ranks[j], 0, layout.keys[j], hit)
        layout.pred_last_seen = ts_ms
        hit = layout.pred_missing.push(False, i)
        if hit is not None:
            hits = _add(hits, layout.pred_rank, 0, PREDICTION, hit)
        if pred_kind == NUMERIC:
            hit = (<NumericTracker>layout.pred_values).push(<double>pred, i)
        else:
            hit = (<CategoricalTracker>layout.pred_values).push(<str>pred, i)
        if hit is not None:
            hit = with_missing_rates(hit, layout.pred_monitor)
            hits = _add(hits, layout.pred_rank, 1, PREDICTION, hit)
        if label is not None:
            hit = layout.error.push(is_error(pred, label), i)
            if hit is not None:
                hits = _add(hits, layout.pred_rank + 1, 0, ERROR, hit)
        layout.events += 1
        if ts_ms > layout.latest_ms:
            layout.latest_ms = ts_ms
        layout.processed += 1
        if hits is not None:
            hits.sort(key=_hit_order)
            event = PredictionEvent(
                doc["event_id"], model, doc.get("model_version"), ts_ms, features,
                doc["prediction"], label, segment,
            )
            detections = result.detections
            for _, _, name, hit in hits:
                detections.append(engine._detection(model, name, offsets[i], event, hit))
    _sync(engine, touched, result)


def _hit_order(item):
    return item[0], item[1]


cdef void _sync(engine, list touched, result):
    cdef Layout layout
    for layout in touched:
        layout.sync(engine, result)
    touched.clear()


cdef void _slow(engine, list touched, result, offset, raw, list timestamps, Py_ssize_t i):
    _sync(engine, touched, result)
    engine._process_one(offset, raw, None if timestamps is None else timestamps[i], result)
