"""What a tracker reports when one of its detectors fires: the hit, its evidence and
effect sizes, and the once-per-change bookkeeping (:class:`Rearm`), for the trackers of
:mod:`detector.core.trackers` (and their oracle in the tests).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from detector.core.summaries import (
    category_frequencies,
    mean_effect,
    numeric_summary,
    spread_effect,
    total_variation,
)

#: The categorical tracker's name for all categories outside the frequent ones.
OTHER = "__other__"
#: The rank-mean window used to tell a location change from a spread change.
RANK_WINDOW = 512


@dataclass(frozen=True, slots=True)
class Hit:
    """A detection inside a batch: ``index`` into the values the tracker was given."""

    index: int
    drift_type: str
    statistic: str
    detector: dict[str, Any]
    effect: float | None
    evidence: dict[str, Any]
    description: str


class Rearm:
    """Once-per-change bookkeeping per drift type, in tracker observations."""

    __slots__ = ("last", "window")

    def __init__(self, window: int) -> None:
        self.window = window
        self.last: dict[str, int] = {}

    def fresh(self, drift_type: str, at: int) -> bool:
        previous = self.last.get(drift_type)
        self.last[drift_type] = at
        return previous is None or at - previous > self.window


def block_scale(k: int) -> float:
    """Detectors see ``sum(block) / sqrt(k)``: the block mean scaled back to the spread of a
    single observation, so that ADWIN's range term (which assumes values in [0, 1]) does
    not make blocks k times slower to detect. Under no drift the scaled block means are
    nearly normal with the variance of one observation."""
    return 1.0 / math.sqrt(k)


def located(fired_mean: bool, u_mean: float) -> bool:
    """A numeric change is a location change if the mean detector fired, or if the mean
    rank of the last RANK_WINDOW values left 1/2 clearly; otherwise a spread change."""
    return fired_mean or abs(u_mean - 0.5) > 0.05


def rate_hit(
    index: int, drift_type: str, detector: dict[str, Any], ref_rate: float, cur_rate: float
) -> Hit:
    effect = abs(cur_rate - ref_rate) / 0.2
    what = "missing rate" if drift_type == "missing_rate" else "error rate"
    return Hit(
        index=index,
        drift_type=drift_type,
        statistic="rate",
        detector=detector,
        effect=round(effect, 6),
        evidence={
            "reference": {"rate": round(ref_rate, 6)},
            "current": {"rate": round(cur_rate, 6)},
        },
        description=f"{what} {ref_rate:.1%} -> {cur_rate:.1%}",
    )


def numeric_hit(
    index: int,
    drift_type: str,
    is_location: bool,
    ref: np.ndarray,
    current: np.ndarray,
    detector: dict[str, Any],
) -> Hit:
    statistic = "mean" if is_location else "variance"
    effect = mean_effect(ref, current) if is_location else spread_effect(ref, current)
    with np.errstate(over="ignore", invalid="ignore"):  # huge values: inf in the text
        ref_mean, cur_mean = float(ref.mean()), float(current.mean())
        ref_sd, cur_sd = float(ref.std()), float(current.std())
    if is_location:
        description = f"mean {ref_mean:.4g} -> {cur_mean:.4g}"
    else:
        description = f"std {ref_sd:.4g} -> {cur_sd:.4g} at mean {cur_mean:.4g}"
    return Hit(
        index=index,
        drift_type=drift_type,
        statistic=statistic,
        detector=detector,
        effect=None if effect is None else round(effect, 6),
        evidence={
            "reference": numeric_summary(ref),
            "current": numeric_summary(current),
        },
        description=description,
    )


def learn_categories(
    building: list[str], max_categories: int, min_share: float
) -> tuple[dict[str, int], Counter[str]]:
    """The frequent categories of a reference sample (code by rank) and its counts."""
    counts = Counter(building)
    total = len(building)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    frequent = [name for name, n in ranked if n / total >= min_share][:max_categories]
    return {name: i for i, name in enumerate(frequent)}, counts


def categorical_hit(
    index: int,
    drift_type: str,
    ref_counts: Counter[str],
    current: Counter[str],
    fired: int,
    codes: dict[str, int],
    detector: dict[str, Any],
) -> Hit:
    names = {code: name for name, code in codes.items()}
    category = names.get(fired, OTHER)
    tvd = total_variation(ref_counts, current)
    before = _share(ref_counts, category, codes)
    after = _share(current, category, codes)
    return Hit(
        index=index,
        drift_type=drift_type,
        statistic="share",
        detector=detector,
        effect=round(tvd / 0.3, 6),
        evidence={
            "reference": {
                "count": sum(ref_counts.values()),
                "frequencies": category_frequencies(ref_counts),
            },
            "current": {
                "count": sum(current.values()),
                "frequencies": category_frequencies(current),
            },
            "category": category,
            "total_variation": round(tvd, 6),
        },
        description=f"share of {category!r} {before:.1%} -> {after:.1%}",
    )


def _share(counts: Counter[str], category: str, codes: dict[str, int]) -> float:
    total = sum(counts.values()) or 1
    if category != OTHER:
        return counts[category] / total
    return sum(n for name, n in counts.items() if name not in codes) / total


__all__ = [
    "OTHER",
    "RANK_WINDOW",
    "Hit",
    "Rearm",
    "block_scale",
    "categorical_hit",
    "learn_categories",
    "located",
    "numeric_hit",
    "rate_hit",
]
