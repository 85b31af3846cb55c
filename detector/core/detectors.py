"""Drift detectors: one value in, whether drift was detected at it.

River is the reference. :class:`Adwin` is River's ADWIN (``river.drift.ADWIN`` and the
``AdaptiveWindowing`` helper it drives, River 0.26) ported operation for operation: the
same floating-point operations in the same order, so that it reports drift at exactly
River's positions and holds bit-identical window statistics
(``tests/unit/test_detectors.py`` feeds both the same streams and compares every step).
It is compiled (:mod:`detector.core.detectors` is built by Cython from this file and
``detectors.pxd``) because a detector step is the innermost call of the hot path: through
River's Python layer it cost about 0.14 µs, here about 0.02 µs.

Every other detector is River's own object behind :class:`RiverDetector`, driven through
River's public ``update``/``drift_detected``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from cython.cimports.libc.math import ldexp, log, sqrt  # C's libm compiled; math uncompiled

from detector.core.settings import BINARY_DETECTOR_NAMES, DETECTOR_NAMES, DetectorSpec


class Detector:
    """The minimal contract: feed one value, learn whether drift was detected at it."""

    def step(self, x: float) -> bool:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """``{"name": ..., "params": {...}}``: the detector and its constructor arguments."""
        raise NotImplementedError


def _check_int(name: str, value: Any, low: int) -> int:
    if type(value) is not int or value < low:
        raise ValueError(f"ADWIN {name} must be an integer of at least {low}, got {value!r}")
    return value


class Adwin(Detector):
    """``river.drift.ADWIN(delta, clock, max_buckets, min_window_length, grace_period)``.

    The window is River's exponential histogram: row ``i`` holds up to ``max_buckets + 1``
    buckets of ``2**i`` values each (their sum and variance). As in River, a detection
    empties the whole window at the next value (``river.drift.ADWIN.update`` resets its
    helper after a drift).

    One shortcut, exact: while the window holds nothing but zeros (since the start or the
    last reset) no cut can be found, since both sub-window means are 0, so the cut search
    is skipped. The window is updated as River updates it; a statistic that stays at 0 (a
    feature that is never missing, a category that never occurs) costs an insertion.
    """

    def __init__(
        self,
        delta: float = 0.002,
        clock: int = 32,
        max_buckets: int = 5,
        min_window_length: int = 5,
        grace_period: int = 10,
    ) -> None:
        if type(delta) not in (float, int) or not 0.0 < delta < 1.0:
            raise ValueError(f"ADWIN delta must be in (0, 1), got {delta!r}")
        self._params = {
            "delta": delta,
            "clock": _check_int("clock", clock, 1),
            "max_buckets": _check_int("max_buckets", max_buckets, 1),
            "min_window_length": _check_int("min_window_length", min_window_length, 1),
            "grace_period": _check_int("grace_period", grace_period, 0),
        }
        self.delta = float(delta)
        self.clock = clock
        self.max_buckets = max_buckets
        self.min_window_length = float(min_window_length)
        self.grace_period = float(grace_period)
        self.detected = False
        self._reset()

    def _reset(self) -> None:
        """A new, empty window (River builds a new ``AdaptiveWindowing``)."""
        self.total = 0.0
        self.variance = 0.0
        self.width = 0.0
        self.total_width = 0.0
        self.n_buckets = 0
        self.max_n_buckets = 0
        self.tick = 0
        self.n_detections = 0
        self.zeros_only = True
        self._allocate(1, 4)

    def _allocate(self, rows: int, capacity: int) -> None:
        """Empty rows: ``rows`` in use, room for ``capacity``."""
        slots = self.max_buckets + 1
        self.totals = np.zeros((capacity, slots), dtype=np.float64)
        self.variances = np.zeros((capacity, slots), dtype=np.float64)
        self.lengths = np.zeros(capacity, dtype=np.int64)
        self.rows = rows
        self.capacity = capacity

    def _grow(self) -> None:
        """Twice the room, keeping the rows (the window has grown by a factor of 2**k)."""
        rows = self.rows
        totals = np.asarray(self.totals)[:rows].copy()
        variances = np.asarray(self.variances)[:rows].copy()
        lengths = np.asarray(self.lengths)[:rows].copy()
        self._allocate(rows, 2 * self.capacity)
        np.asarray(self.totals)[:rows] = totals
        np.asarray(self.variances)[:rows] = variances
        np.asarray(self.lengths)[:rows] = lengths

    # -- the detector ------------------------------------------------------------------

    def step(self, x: float) -> bool:
        if self.detected:
            self._reset()
        self._insert(x)
        self.detected = self._detect_change()
        return self.detected

    def describe(self) -> dict[str, Any]:
        return {"name": "ADWIN", "params": dict(self._params)}

    # -- River's AdaptiveWindowing -----------------------------------------------------

    def _insert(self, value: float) -> None:
        row_len = self.lengths[0]
        self.totals[0, row_len] = value
        self.variances[0, row_len] = 0.0
        self.lengths[0] = row_len + 1
        self.n_buckets += 1
        if self.n_buckets > self.max_n_buckets:
            self.max_n_buckets = self.n_buckets
        if value != 0.0:
            self.zeros_only = False
        self.width += 1.0
        incremental = 0.0
        if self.width > 1.0:
            delta_v = value - self.total / (self.width - 1.0)
            incremental = (self.width - 1.0) * delta_v * delta_v / self.width
        self.variance += incremental
        self.total += value
        self._compress()

    def _compress(self) -> None:
        idx = 0
        n1 = 1.0  # 2**idx (doubled with idx: exact, as ldexp)
        full = self.max_buckets + 1
        while self.lengths[idx] == full:
            t0 = self.totals[idx, 0]
            t1 = self.totals[idx, 1]
            v0 = self.variances[idx, 0]
            v1 = self.variances[idx, 1]
            mu1 = t0 / n1
            mu2 = t1 / n1
            total12 = t0 + t1
            temp = n1 * 0.5 * (mu1 - mu2) * (mu1 - mu2)
            v12 = v0 + v1 + temp
            if idx + 1 >= self.rows:
                if self.rows == self.capacity:
                    self._grow()
                self.rows += 1
            nxt = self.lengths[idx + 1]
            self.totals[idx + 1, nxt] = total12
            self.variances[idx + 1, nxt] = v12
            self.lengths[idx + 1] = nxt + 1
            self.n_buckets += 1
            self._drop(idx, 2)
            if self.lengths[idx + 1] <= self.max_buckets:
                break
            idx += 1
            n1 *= 2.0

    def _drop(self, row: int, count: int) -> None:
        """Remove the ``count`` oldest buckets of ``row`` (River's ``Bucket.compress``)."""
        length = self.lengths[row]
        for k in range(count, length):
            self.totals[row, k - count] = self.totals[row, k]
            self.variances[row, k - count] = self.variances[row, k]
        for k in range(length - count, length):
            self.totals[row, k] = 0.0
            self.variances[row, k] = 0.0
        self.lengths[row] = length - count

    def _delete_oldest(self) -> None:
        last = self.rows - 1
        n = ldexp(1.0, last)
        u = self.totals[last, 0]
        v = self.variances[last, 0]
        mu = u / n
        self.width -= n
        self.total -= u
        mu_window = self.total / self.width
        incremental = v + n * self.width * (mu - mu_window) * (mu - mu_window) / (n + self.width)
        self.variance -= incremental
        self._drop(last, 1)
        self.n_buckets -= 1
        if self.lengths[last] == 0:
            self.rows -= 1

    def _detect_change(self) -> bool:
        change = False
        self.tick += 1
        if self.tick % self.clock == 0 and self.width > self.grace_period and not self.zeros_only:
            reduce_width = True
            while reduce_width:
                reduce_width = False
                # Constant over one search (River computes them at every cut: the same
                # values, the same results).
                delta_prime = log(2.0 * log(self.width) / self.delta)
                spread = self.variance / self.width
                if self._cut(delta_prime, spread):
                    reduce_width = True
                    change = True
        self.total_width += self.width
        if change:
            self.n_detections += 1
        return change

    def _cut(self, delta_prime: float, spread: float) -> bool:
        """One pass over the cut points, newest row last; True (after dropping the oldest
        bucket) at the first cut whose sub-window means differ by more than the bound."""
        n0 = 0.0
        n1 = self.width
        u0 = 0.0
        u1 = self.total
        least = self.min_window_length
        size = ldexp(1.0, self.rows)  # 2**idx below (halved with idx: exact, as ldexp)
        for idx in range(self.rows - 1, -1, -1):
            size *= 0.5
            length = self.lengths[idx]
            for k in range(length):
                n0 += size
                n1 -= size
                total = self.totals[idx, k]
                u0 += total
                u1 -= total
                if idx == 0 and k == length - 1:
                    return False
                delta_mean = (u0 / n0) - (u1 / n1)
                if n1 >= least and n0 >= least:
                    m_recip = 1.0 / (n0 - least + 1.0) + 1.0 / (n1 - least + 1.0)
                    # River's bound is sqrt(...) + linear; a difference within the linear
                    # term alone cannot exceed it (the square root is >= 0, or NaN, which
                    # River's comparison also rejects), so the square root is skipped.
                    linear = 2.0 / 3.0 * delta_prime * m_recip
                    if abs(delta_mean) <= linear:
                        continue
                    epsilon = sqrt(2.0 * m_recip * spread * delta_prime) + linear
                    if abs(delta_mean) > epsilon:
                        self._delete_oldest()
                        return True
        return False

    # -- state -------------------------------------------------------------------------

    def __reduce__(self) -> tuple[Any, ...]:
        rows = self.rows
        state = {
            "detected": bool(self.detected),
            "total": float(self.total),  # plain floats and ints, compiled or not
            "variance": float(self.variance),
            "width": float(self.width),
            "total_width": float(self.total_width),
            "n_buckets": int(self.n_buckets),
            "max_n_buckets": int(self.max_n_buckets),
            "tick": int(self.tick),
            "n_detections": int(self.n_detections),
            "zeros_only": bool(self.zeros_only),
            "lengths": np.asarray(self.lengths)[:rows].copy(),
            "totals": np.asarray(self.totals)[:rows].ravel().copy(),
            "variances": np.asarray(self.variances)[:rows].ravel().copy(),
        }
        params = self._params
        args = (
            params["delta"],
            params["clock"],
            params["max_buckets"],
            params["min_window_length"],
            params["grace_period"],
        )
        return (Adwin, args, state)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a window written by :meth:`__reduce__` (checked by the state reader
        first: the lengths index the bucket arrays without bounds checks)."""
        lengths = state["lengths"]
        rows = int(lengths.shape[0])
        capacity = 4
        while capacity < rows:
            capacity *= 2
        self._allocate(rows, capacity)
        slots = self.max_buckets + 1
        np.asarray(self.totals)[:rows] = state["totals"].reshape(rows, slots)
        np.asarray(self.variances)[:rows] = state["variances"].reshape(rows, slots)
        np.asarray(self.lengths)[:rows] = lengths
        self.detected = state["detected"]
        self.total = state["total"]
        self.variance = state["variance"]
        self.width = state["width"]
        self.total_width = state["total_width"]
        self.n_buckets = state["n_buckets"]
        self.max_n_buckets = state["max_n_buckets"]
        self.tick = state["tick"]
        self.n_detections = state["n_detections"]
        self.zeros_only = state["zeros_only"]

    def window(self) -> tuple[float, float, float]:
        """River's ``width``, ``total`` and ``variance`` (for the equivalence tests)."""
        return self.width, self.total, self.variance


class RiverDetector(Detector):
    """Any ``river.drift`` detector, through its public ``update``/``drift_detected``."""

    def __init__(self, name: str, det: Any) -> None:
        self.name = name
        self.det = det

    def step(self, x: float) -> bool:
        self.det.update(float(x))  # a Python float, compiled or not (not a numpy scalar)
        return bool(self.det.drift_detected)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.det._get_params())}

    def __reduce__(self) -> tuple[Any, ...]:
        return (RiverDetector, (self.name, self.det))


class BinaryDetector(Detector):
    """One of River's binary detectors (``river.drift.binary``) on a 0/1 error stream.

    Each is fed so that it reacts to a *rising* error rate: 1 = error for DDM, EDDM,
    HDDM_A and HDDM_W (they watch the error rate), 1 = correct for FHDDM (it watches the
    accuracy: fed errors, it fires when they fall). The performance tracker also drops
    any detection whose current error rate is not above the reference's, whatever the
    detector (``tests/unit/test_performance.py`` checks each direction).
    """

    def __init__(self, name: str, det: Any) -> None:
        self.name = name
        self.det = det
        self.inverted = name == "FHDDM"

    def step(self, x: float) -> bool:
        error = 1 if x > 0.5 else 0
        self.det.update(1 - error if self.inverted else error)
        return bool(self.det.drift_detected)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.det._get_params())}

    def __reduce__(self) -> tuple[Any, ...]:
        return (BinaryDetector, (self.name, self.det))


#: Config names of River's binary detectors and their classes in ``river.drift.binary``.
_BINARY_CLASSES = {
    "DDM": "DDM",
    "EDDM": "EDDM",
    "HDDM_A": "HDDMA",
    "HDDM_W": "HDDMW",
    "FHDDM": "FHDDM",
}


def binary_class(name: str) -> Any:
    """The ``river.drift.binary`` class of a binary detector's config name."""
    from river.drift import binary

    if name not in BINARY_DETECTOR_NAMES:
        raise ValueError(f"unknown binary detector {name!r}")
    return getattr(binary, _BINARY_CLASSES[name])


def river_class(name: str) -> Any:
    """The ``river.drift`` class of a detector name (River is imported here, on first use:
    the default detector, ADWIN, does not need it)."""
    from river import drift

    if name not in DETECTOR_NAMES:
        raise ValueError(f"unknown detector {name!r}")
    return getattr(drift, name)


def build_detector(spec: DetectorSpec) -> Detector:
    """A fresh detector for ``spec``; raises TypeError/ValueError on bad parameters."""
    if spec.name == "ADWIN":
        return Adwin(**spec.params)
    if spec.name in BINARY_DETECTOR_NAMES:
        return BinaryDetector(spec.name, binary_class(spec.name)(**spec.params))
    return RiverDetector(spec.name, river_class(spec.name)(**spec.params))


__all__ = [
    "Adwin",
    "BinaryDetector",
    "Detector",
    "RiverDetector",
    "binary_class",
    "build_detector",
    "river_class",
]
