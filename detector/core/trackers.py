"""Trackers: one feature's values in, drift hits out. Pure, deterministic, picklable.

Every tracker feeds its detectors (:mod:`detector.core.detectors`) with *block means*: the
statistic summed over ``block_size`` consecutive observations and scaled by
:func:`~detector.core.hits.block_scale`. Blocks are counted per tracker, never per Kafka
batch, so the same stream gives the same detections however it is batched.

* :class:`RateTracker` - the rate of a 0/1 flag (missing values, classification errors).
* :class:`NumericTracker` - numbers, rank-transformed against a reference sample, so that
  under no drift every feature, whatever its shape, yields Uniform(0, 1) values ``u``.
  One detector watches the mean of ``u`` (location), one the mean of ``|2u - 1|`` (spread).
* :class:`CategoricalTracker` - one detector per frequent reference category (and one for
  all the others) on the block share of that category.

After a detection the tracker re-learns its reference from the next observations, and a
detection of the same drift type within ``rearm_after`` observations of the previous one
is counted as the same change (suppressed) rather than alerted again.

This file is the only implementation. It is compiled (Cython's pure-Python mode, with the C
types in ``trackers.pxd``) for the engine, and runs as plain Python too: the tests compare
the two, and hold the trackers to an independent block-by-block formulation
(``tests/oracle/trackers.py``) and to River.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import cython
import numpy as np

from detector.core.detectors import Detector, build_detector
from detector.core.hits import (
    RANK_WINDOW,
    Hit,
    Rearm,
    block_scale,
    categorical_hit,
    learn_categories,
    located,
    numeric_hit,
    rate_hit,
)
from detector.core.settings import DetectionSettings, DetectorSpec

_RANK_WINDOW = RANK_WINDOW  # compiled: a C constant (trackers.pxd)


def _restore(cls: Any, state: dict[str, Any]) -> Any:
    """A tracker from its ``__getstate__`` dictionary (how trackers are unpickled)."""
    obj = cls.__new__(cls)
    obj.__setstate__(state)
    return obj


def _slot(head: int, cap: int) -> int:
    """The ring slot after ``head`` in a ring of ``cap`` slots."""
    return head + 1 if head + 1 < cap else 0


class Ring:
    """The last ``size`` numbers of a stream, oldest first (a window, such as the last
    labelled predictions'), kept in one array: no object per number, nothing to free
    when the oldest is overwritten."""

    def __init__(self, size: int, values: Iterable[float] = ()) -> None:
        self.values = np.zeros(size, dtype=np.float64)
        self.size = size
        self.head = 0
        self.filled = 0
        for value in values:
            self.add(value)

    def add(self, x: float) -> None:
        """Keep ``x``, dropping the oldest if the ring is full."""
        self.values[self.head] = x
        self.head = _slot(self.head, self.size)
        if self.filled < self.size:
            self.filled += 1

    def clear(self) -> None:
        self.head = 0
        self.filled = 0

    def ordered(self) -> list[float]:
        """The numbers kept, oldest first."""
        values = np.asarray(self.values)
        if self.filled < self.size:
            return values[: self.filled].tolist()  # type: ignore[no-any-return]
        return np.concatenate((values[self.head :], values[: self.head])).tolist()  # type: ignore[no-any-return]

    def __len__(self) -> int:
        return self.filled


class Tracker:
    """What the three trackers share: ``update`` over their ``push``, and pickling."""

    def push(self, value: Any, index: int) -> Hit | None:
        """Feed one observation; a hit (indexed ``index``) when a detector fires."""
        raise NotImplementedError

    def update(self, values: Iterable[Any]) -> list[Hit]:
        """Feed values in order; hits are indexed into ``values``."""
        hits = []
        for i, value in enumerate(values):
            hit = self.push(value, i)
            if hit is not None:
                hits.append(hit)
        return hits

    def __getstate__(self) -> dict[str, Any]:
        raise NotImplementedError

    def __setstate__(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), self.__getstate__()))


class RateTracker(Tracker):
    """Rate of a 0/1 flag per observation (missing value, wrong prediction).

    ``block_size`` overrides the settings' (1 for River's binary detectors, which take
    every 0/1 observation); ``rising`` drops detections whose recent rate is not above the
    reference rate (an error rate that falls is not an alert). ``fired`` counts every time
    the detector fired, reported or not.
    """

    def __init__(
        self,
        spec: DetectorSpec,
        settings: DetectionSettings,
        drift_type: str,
        block_size: int = 0,
        rising: bool = False,
    ) -> None:
        self.k = block_size or settings.block_size
        self.scale = block_scale(self.k)
        self.drift_type = drift_type
        self.rising = rising
        self.fired = 0
        self.detector = build_detector(spec)
        self.ref_blocks = max(1, settings.reference_size // self.k)
        self.rearm = Rearm(settings.rearm_after)
        self.seen = 0
        self.ref_sum = 0
        self.ref_len = 0
        self.recent = np.zeros(max(1, settings.window_size // self.k), dtype=np.int64)
        self.recent_head = 0
        self.recent_len = 0
        self.cnt = 0
        self.acc = 0

    def push(self, value: Any, index: int) -> Hit | None:
        return self.flag(bool(value), index)

    def flag(self, flag: bool, index: int) -> Hit | None:
        """``push`` for a flag already a bool (the engine's call)."""
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
        cap = self.recent.shape[0]
        self.recent[self.recent_head] = count
        self.recent_head = _slot(self.recent_head, cap)
        if self.recent_len < cap:
            self.recent_len += 1
        if self.detector.step(count * self.scale):
            return self._hit(index)
        return None

    def _hit(self, index: int) -> Hit | None:
        ref_rate, cur_rate = self.rates()
        self.fired += 1
        self.ref_sum = 0
        self.ref_len = 0
        self.recent_len = 0
        self.recent_head = 0
        if self.rising and (ref_rate is None or cur_rate is None or cur_rate <= ref_rate):
            return None
        if not self.rearm.fresh(self.drift_type, self.seen):
            return None
        return rate_hit(index, self.drift_type, self.detector.describe(), ref_rate, cur_rate)

    def rates(self) -> tuple[Any, Any]:
        """The reference rate and the rate over the recent window (None: no block yet)."""
        ref = self.ref_sum / (self.ref_len * self.k) if self.ref_len else None
        if not self.recent_len:
            return ref, None
        total = 0
        for i in range(self.recent_len):
            total += self.recent[i]
        return ref, total / (self.recent_len * self.k)

    def __getstate__(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "drift_type": self.drift_type,
            "rising": self.rising,
            "fired": self.fired,
            "detector": self.detector,
            "ref_blocks": self.ref_blocks,
            "rearm": self.rearm,
            "seen": self.seen,
            "ref_sum": self.ref_sum,
            "ref_len": self.ref_len,
            "recent": np.asarray(self.recent).copy(),
            "recent_head": self.recent_head,
            "recent_len": self.recent_len,
            "cnt": self.cnt,
            "acc": self.acc,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.k = state["k"]
        self.scale = block_scale(self.k)
        self.drift_type = state["drift_type"]
        self.rising = state.get("rising", False)  # format 4 state: missing and error rates
        self.fired = state.get("fired", 0)
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


def _aligned(values: Any) -> Any:
    """``values`` (float64) in a read-only copy whose first value starts a 64-byte line."""
    buffer = np.empty(values.shape[0] + 8, dtype=np.float64)
    start = (-buffer.ctypes.data % 64) // 8
    out = buffer[start : start + values.shape[0]]
    out[:] = values
    out.flags.writeable = False
    return out


def _left(ref: Any, start: int, n: int, x: float) -> int:
    """The first index ``i`` of ``ref[start:start + n]`` with ``ref[i] >= x``, counted from
    ``start`` (``numpy.searchsorted`` side "left"). Compiled, the halving takes conditional
    moves, no branches to mispredict."""
    base = start
    while n > 1:
        half = n >> 1
        base = base + half if ref[base + half] < x else base
        n -= half
    return base - start + (1 if ref[base] < x else 0)


def _right(ref: Any, start: int, n: int, x: float) -> int:
    """The first index ``i`` of ``ref[start:start + n]`` with ``ref[i] > x``, counted from
    ``start`` (``numpy.searchsorted`` side "right")."""
    base = start
    while n > 1:
        half = n >> 1
        base = base + half if ref[base + half] <= x else base
        n -= half
    return base - start + (1 if ref[base] <= x else 0)


class NumericTracker(Tracker):
    """Location and spread of a numeric stream, shape-free through a reference rank transform.

    With R reference values, ``a = left + right`` (the two insertion ranks of a value) is
    ``2R * u`` and ``|a - R|`` is ``R * |2u - 1|``: integers, so block sums are exact.
    """

    def __init__(
        self, spec: DetectorSpec, settings: DetectionSettings, drift_type: str | None
    ) -> None:
        self.k = settings.block_size
        self.scale = block_scale(self.k)
        self.spec = spec
        self.ref_size = settings.reference_size
        self.drift_type = drift_type  # None: "mean"/"variance"; else e.g. "prediction"
        self.window = settings.window_size
        self.building: list[float] = []
        self.reference: Any = None
        self.cap = max(self.window, RANK_WINDOW)
        self.recent = np.zeros(self.cap, dtype=np.float64)  # a ring of the last cap values
        self.recent_head = 0
        self.recent_len = 0
        self.since = 0  # values ranked since the reference was learned, up to RANK_WINDOW
        self.cnt = 0
        self.sum_a = 0
        self.sum_b = 0
        self.mean_det = build_detector(spec)
        self.spread_det = build_detector(spec)
        self.seen = 0
        self.rearm = Rearm(settings.rearm_after)
        self.hinted = False
        self.hint_x = 0.0
        self.hint_bucket = 0

    def _learn(self) -> None:
        self.reference = np.sort(np.asarray(self.building, dtype=np.float64))
        self.building = []
        self._bind()
        self.since = 0

    def _bind(self) -> None:
        """Index the reference: the last value of each bucket of 8 (the fences). The values
        are kept in a copy aligned to 64 bytes, so that each bucket is one cache line."""
        self.ref = _aligned(self.reference)
        self.hinted = False
        self.size = self.ref.shape[0]
        self.buckets = (self.size + 7) // 8
        self.fences = _aligned(
            self.reference[np.minimum(np.arange(self.buckets) * 8 + 7, self.size - 1)]
        )
        self.ca = self.scale / (2.0 * self.size)
        self.cb = self.scale / self.size

    def push(self, value: Any, index: int) -> Hit | None:
        return self.number(float(value), index)

    def fetch(self) -> None:
        """Compiled, start loading the fences (a prefetch of each of their cache lines), for
        a :meth:`prepare` soon after; uncompiled, nothing."""
        if cython.compiled and self.reference is not None:
            for i in range(0, self.buckets, 8):
                prefetch(cython.address(self.fences[i]))  # type: ignore[name-defined]  # noqa: F821 (trackers.pxd)

    def prepare(self, x: float) -> None:
        """Start ranking ``x`` ahead of :meth:`number` (the engine calls this for each
        feature of an event while it matches the event against its layout): search the
        fences and, compiled, start loading the bucket to search (a prefetch). The loads of
        an event's features then overlap instead of each waiting for the last. ``number``
        takes the bucket found here if it comes with the same ``x``; nothing else changes."""
        if self.reference is None:
            return
        bucket = _left(self.fences, 0, self.buckets, x)
        self.hint_x = x
        self.hint_bucket = bucket
        self.hinted = True
        if cython.compiled and bucket < self.buckets:
            prefetch(cython.address(self.ref[bucket * 8]))  # type: ignore[name-defined]  # noqa: F821 (trackers.pxd)

    def number(self, x: float, index: int) -> Hit | None:
        """``push`` for a value already a float (the engine's call)."""
        self.seen += 1
        self.recent[self.recent_head] = x
        self.recent_head = _slot(self.recent_head, self.cap)
        if self.recent_len < self.cap:
            self.recent_len += 1
        if self.reference is None:
            self.building.append(float(x))  # (x is a C double compiled; an int uncompiled)
            if len(self.building) >= self.ref_size:
                self._learn()
            return None
        a = self._ranks(x)
        if self.since < _RANK_WINDOW:
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

    def _ranks(self, x: float) -> int:
        """``searchsorted`` left + right on the reference, touching two cache lines: the
        fences (small, shared by every search, so cached) find the bucket of 8 values,
        then one bucket is searched. The right rank differs only on ties."""
        if self.hinted and self.hint_x == x:
            bucket = self.hint_bucket
        else:
            bucket = _left(self.fences, 0, self.buckets, x)
        self.hinted = False
        if bucket == self.buckets:
            return 2 * self.size  # type: ignore[no-any-return]
        start = bucket * 8
        left = start + _left(self.ref, start, min(8, self.size - start), x)
        if left < self.size and self.ref[left] == x:
            return 2 * left + _right(self.ref, left, self.size - left, x)
        return 2 * left

    def _hit(self, index: int, fired_mean: bool) -> Hit | None:
        total = 0
        # The mean rank of the values since the reference was learned (the last RANK_WINDOW).
        for value in self._recent(self.since):
            total += self._ranks(value)
        u_mean = (total / self.since) / (2.0 * self.size)
        ref = self.reference
        current = self._recent(self.window)
        is_location = located(fired_mean, u_mean)
        drift_type = self.drift_type or ("mean" if is_location else "variance")
        detector = (self.mean_det if fired_mean else self.spread_det).describe()
        # Re-learn the reference from the values after the trigger; fresh detectors.
        self.reference = None
        self.building = []
        self.mean_det = build_detector(self.spec)
        self.spread_det = build_detector(self.spec)
        if not self.rearm.fresh(drift_type, self.seen):
            return None
        return numeric_hit(index, drift_type, is_location, ref, current, detector)

    def _recent(self, count: int) -> Any:
        """The last ``count`` values (at most those kept), oldest first."""
        arr = np.asarray(self.recent)
        if self.recent_len < self.cap:
            ordered = arr[: self.recent_len]
        else:
            ordered = np.concatenate((arr[self.recent_head :], arr[: self.recent_head]))
        return ordered[max(0, ordered.shape[0] - count) :].copy()

    def __getstate__(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "spec": self.spec,
            "ref_size": self.ref_size,
            "drift_type": self.drift_type,
            "window": self.window,
            "building": list(self.building),
            "reference": self.reference,
            "recent": self._recent(self.cap),
            "since": self.since,
            "cnt": self.cnt,
            "sum_a": self.sum_a,
            "sum_b": self.sum_b,
            "mean_det": self.mean_det,
            "spread_det": self.spread_det,
            "seen": self.seen,
            "rearm": self.rearm,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.k = state["k"]
        self.scale = block_scale(self.k)
        self.spec = state["spec"]
        self.ref_size = state["ref_size"]
        self.drift_type = state["drift_type"]
        self.window = state["window"]
        self.building = state["building"]
        self.reference = state["reference"]
        self.hinted = False
        if self.reference is not None:
            self._bind()
        self.cap = max(self.window, RANK_WINDOW)
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


class CategoricalTracker(Tracker):
    """Shares of the frequent reference categories, plus one share for all others."""

    def __init__(
        self, spec: DetectorSpec, settings: DetectionSettings, drift_type: str | None
    ) -> None:
        self.k = settings.block_size
        self.scale = block_scale(self.k)
        self.spec = spec
        self.settings = settings
        self.ref_size = settings.reference_size
        self.drift_type = drift_type or "categorical"
        self.building: list[str] = []
        self.ref_counts: Counter[str] | None = None
        self.codes: dict[str, int] = {}
        self.detectors: list[Detector] = []
        self.window = settings.window_size
        self.recent: list[Any] = [None] * self.window  # a ring of the last `window` values
        self.recent_head = 0
        self.recent_len = 0
        self.counts = np.zeros(1, dtype=np.int64)
        self.cnt = 0
        self.seen = 0
        self.rearm = Rearm(settings.rearm_after)

    def _learn(self) -> None:
        settings = self.settings
        self.codes, self.ref_counts = learn_categories(
            self.building, settings.max_categories, settings.min_category_share
        )
        self.detectors = [build_detector(self.spec) for _ in range(len(self.codes) + 1)]
        self.counts = np.zeros(len(self.codes) + 1, dtype=np.int64)
        self.cnt = 0
        self.building = []

    def push(self, value: Any, index: int) -> Hit | None:
        return self.category(value, index)

    def category(self, value: str, index: int) -> Hit | None:
        """``push`` for a category name (the engine's call)."""
        self.seen += 1
        self.recent[self.recent_head] = value
        self.recent_head = _slot(self.recent_head, self.window)
        if self.recent_len < self.window:
            self.recent_len += 1
        if self.ref_counts is None:
            self.building.append(value)
            if len(self.building) >= self.ref_size:
                self._learn()
            return None
        width = self.counts.shape[0]
        found = self.codes.get(value)
        code = width - 1 if found is None else found
        self.counts[code] += 1
        self.cnt += 1
        if self.cnt < self.k:
            return None
        fired = -1
        for c in range(width):
            det: Detector = self.detectors[c]
            if det.step(self.counts[c] * self.scale) and fired < 0:
                fired = c
            self.counts[c] = 0
        self.cnt = 0
        if fired >= 0:
            return self._hit(index, fired)
        return None

    def _hit(self, index: int, fired: int) -> Hit | None:
        ref_counts = self.ref_counts
        assert ref_counts is not None
        current = Counter(self._recent())
        detector = self.detectors[fired].describe()
        self.ref_counts = None
        self.building = []
        if not self.rearm.fresh(self.drift_type, self.seen):
            return None
        return categorical_hit(
            index, self.drift_type, ref_counts, current, fired, self.codes, detector
        )

    def _recent(self) -> list[Any]:
        """The last ``window`` values, oldest first."""
        if self.recent_len < self.window:
            return self.recent[: self.recent_len]
        return self.recent[self.recent_head :] + self.recent[: self.recent_head]

    def __getstate__(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "spec": self.spec,
            "settings": self.settings,
            "ref_size": self.ref_size,
            "drift_type": self.drift_type,
            "building": list(self.building),
            "ref_counts": self.ref_counts,
            "codes": self.codes,
            "detectors": self.detectors,
            "window": self.window,
            "recent": self._recent(),
            "counts": np.asarray(self.counts).copy(),
            "cnt": self.cnt,
            "seen": self.seen,
            "rearm": self.rearm,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
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


__all__ = ["CategoricalTracker", "Hit", "NumericTracker", "RateTracker", "Ring", "Tracker"]
