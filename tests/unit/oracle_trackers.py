"""The trackers' oracle: the same statistics computed another way, a batch at a time.

:mod:`detector.core.trackers` (the only implementation, compiled where it runs) feeds its
detectors value by value; this formulation splits a whole batch into blocks with numpy and
computes each block's statistic at once (the algorithm the project started with). The two
share nothing but the detectors and the hit helpers, so a fault in either shows as a
difference: ``tests/unit/test_kernel.py`` requires identical hits on every stream.

* ``RateTracker`` - the rate of a 0/1 flag (missing values, classification errors).
* ``NumericTracker`` - numbers, rank-transformed against a reference sample.
* ``CategoricalTracker`` - one detector per frequent reference category and one for the rest.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence

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

_EMPTY = np.zeros(0, dtype=np.int64)


def split_blocks(carry: np.ndarray, new: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Prepend the carried partial block to ``new``; return the complete blocks as a
    (blocks, k) array, the new partial block to carry, and how many carried values were
    prepended (block i ends at index ``(i + 1) * k - held`` of ``new``)."""
    held = int(carry.size)
    arr = np.concatenate((carry, new)) if held else new
    blocks = arr.size // k
    return arr[: blocks * k].reshape(blocks, k), arr[blocks * k :], held


class RateTracker:
    """Rate of a 0/1 flag per observation (missing value, wrong prediction)."""

    def __init__(self, spec: DetectorSpec, settings: DetectionSettings, drift_type: str) -> None:
        self.k = settings.block_size
        self.scale = block_scale(self.k)
        self.drift_type = drift_type
        self.detector: Detector = build_detector(spec)
        self.ref_blocks = max(1, settings.reference_size // self.k)
        self.reference: list[int] = []  # flag counts of the first blocks
        self.recent: deque[int] = deque(maxlen=max(1, settings.window_size // self.k))
        self.carry = _EMPTY
        self.seen = 0
        self.rearm = Rearm(settings.rearm_after)

    def update(self, flags: np.ndarray | Sequence[bool]) -> list[Hit]:
        """Feed flags (true: the observation counts); hits are indexed into ``flags``."""
        k = self.k
        arr = np.asarray(flags, dtype=np.int64)
        base = self.seen
        self.seen += int(arr.size)
        body, self.carry, held = split_blocks(self.carry, arr, k)
        if not body.size:
            return []
        counts = body.sum(axis=1).tolist()
        hits: list[Hit] = []
        step = self.detector.step
        scale = self.scale
        for i, count in enumerate(counts):
            if len(self.reference) < self.ref_blocks:
                self.reference.append(count)
            self.recent.append(count)
            if step(count * scale):
                used = (i + 1) * k - held
                hit = self._hit(used - 1, base + used)
                if hit:
                    hits.append(hit)
        return hits

    def rates(self) -> tuple[float | None, float | None]:
        """The reference rate and the rate over the recent window (None: no block yet)."""
        k = self.k
        ref = sum(self.reference) / (len(self.reference) * k) if self.reference else None
        cur = sum(self.recent) / (len(self.recent) * k) if self.recent else None
        return ref, cur

    def _hit(self, index: int, at: int) -> Hit | None:
        ref_rate = sum(self.reference) / (len(self.reference) * self.k)
        cur_rate = sum(self.recent) / (len(self.recent) * self.k)
        # Re-learn the reference from what follows.
        self.reference = []
        self.recent.clear()
        if not self.rearm.fresh(self.drift_type, at):
            return None
        return rate_hit(index, self.drift_type, self.detector.describe(), ref_rate, cur_rate)


class NumericTracker:
    """Location and spread of a numeric stream, shape-free through a reference rank transform."""

    def __init__(
        self, spec: DetectorSpec, settings: DetectionSettings, drift_type: str | None
    ) -> None:
        self.k = settings.block_size
        self.scale = block_scale(self.k)
        self.spec = spec
        self.ref_size = settings.reference_size
        self.drift_type = drift_type  # None: "mean"/"variance"; else e.g. "prediction"
        self.building: list[float] = []
        self.reference: np.ndarray | None = None
        self.window = settings.window_size
        self.recent = np.zeros(0, dtype=np.float64)
        self.ranks = _EMPTY  # the last RANK_WINDOW ranks since the reference was learned
        self.carry = _EMPTY
        self.mean_det: Detector = build_detector(spec)
        self.spread_det: Detector = build_detector(spec)
        self.seen = 0
        self.rearm = Rearm(settings.rearm_after)

    def update(self, values: np.ndarray) -> list[Hit]:
        hits: list[Hit] = []
        pos = 0
        n = int(values.size)
        while pos < n:
            if self.reference is None:
                take = min(self.ref_size - len(self.building), n - pos)
                self.building.extend(values[pos : pos + take].tolist())
                pos += take
                if len(self.building) >= self.ref_size:
                    self.reference = np.sort(np.asarray(self.building, dtype=np.float64))
                    self.building = []
                    self.ranks = _EMPTY
                continue
            consumed, hit = self._detect(values, pos)
            pos += consumed
            if hit is not None:
                hits.append(hit)
        self.recent = np.concatenate((self.recent, values))[-self.window :]
        self.seen += n
        return hits

    def _detect(self, values: np.ndarray, pos: int) -> tuple[int, Hit | None]:
        """Feed values[pos:] until the end or the first detection; return how many were used.

        With R reference values, ``a = left + right`` (the two insertion ranks) is
        ``2R * u`` and ``|a - R|`` is ``R * |2u - 1|``: integers, so block sums are exact
        and detections do not depend on how the stream was batched.
        """
        ref = self.reference
        assert ref is not None
        chunk = values[pos:]
        size = int(ref.size)
        a = np.searchsorted(ref, chunk, "left") + np.searchsorted(ref, chunk, "right")
        k = self.k
        body, rest, held = split_blocks(self.carry, a, k)
        blocks = len(body)
        if not blocks:
            self.carry = rest
            self.ranks = np.concatenate((self.ranks, a))[-RANK_WINDOW:]
            return int(chunk.size), None
        sums_a = body.sum(axis=1).tolist()
        sums_b = np.abs(body - size).sum(axis=1).tolist()
        ca = self.scale / (2.0 * size)
        cb = self.scale / size
        mean_step = self.mean_det.step
        spread_step = self.spread_det.step
        for i in range(blocks):
            fired_mean = mean_step(sums_a[i] * ca)
            fired_spread = spread_step(sums_b[i] * cb)
            if fired_mean or fired_spread:
                used = (i + 1) * k - held
                ranks = np.concatenate((self.ranks, a[:used]))[-RANK_WINDOW:]
                u_mean = float(ranks.mean()) / (2.0 * size)
                hit = self._hit(values, pos + used - 1, fired_mean, u_mean)
                self.carry = _EMPTY
                return used, hit
        self.carry = rest
        self.ranks = np.concatenate((self.ranks, a))[-RANK_WINDOW:]
        return int(chunk.size), None

    def _hit(self, values: np.ndarray, index: int, fired_mean: bool, u_mean: float) -> Hit | None:
        ref = self.reference
        assert ref is not None
        # The current window: the last `window` values up to and including the trigger.
        current = np.concatenate((self.recent, values[: index + 1]))[-self.window :]
        is_location = located(fired_mean, u_mean)
        drift_type = self.drift_type or ("mean" if is_location else "variance")
        detector = (self.mean_det if fired_mean else self.spread_det).describe()
        at = self.seen + index + 1
        # Re-learn the reference from the values after the trigger; fresh detectors.
        self.reference = None
        self.building = []
        self.mean_det = build_detector(self.spec)
        self.spread_det = build_detector(self.spec)
        if not self.rearm.fresh(drift_type, at):
            return None
        return numeric_hit(index, drift_type, is_location, ref, current, detector)


class CategoricalTracker:
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
        self.recent: deque[str] = deque(maxlen=settings.window_size)
        self.carry = _EMPTY
        self.seen = 0
        self.rearm = Rearm(settings.rearm_after)

    def _learn(self) -> None:
        settings = self.settings
        self.codes, self.ref_counts = learn_categories(
            self.building, settings.max_categories, settings.min_category_share
        )
        self.detectors = [build_detector(self.spec) for _ in range(len(self.codes) + 1)]
        self.building = []

    def update(self, values: list[str]) -> list[Hit]:
        hits: list[Hit] = []
        pos = 0
        n = len(values)
        while pos < n:
            if self.ref_counts is None:
                take = min(self.ref_size - len(self.building), n - pos)
                self.building.extend(values[pos : pos + take])
                pos += take
                if len(self.building) >= self.ref_size:
                    self._learn()
                continue
            consumed, hit = self._detect(values, pos)
            pos += consumed
            if hit is not None:
                hits.append(hit)
        self.recent.extend(values)
        self.seen += n
        return hits

    def _detect(self, values: list[str], pos: int) -> tuple[int, Hit | None]:
        other = len(self.codes)
        get = self.codes.get
        codes = np.array([get(v, other) for v in values[pos:]], dtype=np.int64)
        k = self.k
        body, rest, held = split_blocks(self.carry, codes, k)
        blocks = len(body)
        if not blocks:
            self.carry = rest
            return len(values) - pos, None
        width = other + 1
        # counts[i, c]: how often category c occurs in block i.
        flat = (body + (np.arange(blocks) * width)[:, None]).ravel()
        counts = np.bincount(flat, minlength=blocks * width).reshape(blocks, width).tolist()
        scale = self.scale
        detectors = self.detectors
        for i in range(blocks):
            row = counts[i]
            fired = -1
            for code, det in enumerate(detectors):
                if det.step(row[code] * scale) and fired < 0:
                    fired = code
            if fired >= 0:
                used = (i + 1) * k - held
                hit = self._hit(values, pos + used - 1, fired)
                self.carry = _EMPTY
                return used, hit
        self.carry = rest
        return len(values) - pos, None

    def _hit(self, values: list[str], index: int, fired: int) -> Hit | None:
        ref_counts = self.ref_counts
        assert ref_counts is not None
        window = self.recent.maxlen or 1
        tail = values[max(0, index + 1 - window) : index + 1]
        older = list(self.recent)[-(window - len(tail)) :] if len(tail) < window else []
        current = Counter([*older, *tail])
        detector = self.detectors[fired].describe()
        at = self.seen + index + 1
        self.ref_counts = None
        self.building = []
        if not self.rearm.fresh(self.drift_type, at):
            return None
        return categorical_hit(
            index, self.drift_type, ref_counts, current, fired, self.codes, detector
        )


__all__ = ["CategoricalTracker", "Hit", "NumericTracker", "RateTracker"]
