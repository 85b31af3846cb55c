"""Window summaries for alert evidence, and the effect sizes that set severity."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _r(value: float) -> float | None:
    return None if not math.isfinite(value) else round(float(value), 6)


def numeric_summary(values: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """Count, mean, std and quantiles of a non-empty window (the engine adds missing_rate).
    Statistics that overflow a double are reported as null."""
    arr = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        return _summary(arr)


def _summary(arr: np.ndarray) -> dict[str, Any]:
    qs = np.quantile(arr, QUANTILES)
    return {
        "count": int(arr.size),
        "mean": _r(float(arr.mean())),
        "std": _r(float(arr.std())),
        "quantiles": {
            f"p{round(q * 100):02d}": _r(float(v)) for q, v in zip(QUANTILES, qs, strict=True)
        },
    }


def category_frequencies(counts: Counter[str], top: int = 20) -> dict[str, float]:
    total = sum(counts.values())
    if not total:
        return {}
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    shown = {name: round(n / total, 6) for name, n in ranked[:top]}
    rest = sum(n for _, n in ranked[top:])
    if rest:
        shown["__other__"] = round(rest / total, 6)
    return shown


def total_variation(ref: Counter[str], cur: Counter[str]) -> float:
    """Half the L1 distance between two category distributions (0: same, 1: disjoint)."""
    n_ref = sum(ref.values()) or 1
    n_cur = sum(cur.values()) or 1
    keys = sorted(set(ref) | set(cur))  # a fixed summation order: the same float every run
    return 0.5 * sum(abs(ref[k] / n_ref - cur[k] / n_cur) for k in keys)


def mean_effect(ref: np.ndarray, cur: np.ndarray) -> float | None:
    """|mean shift| in reference standard deviations; None when the reference is constant
    or the values are too large for the arithmetic (an infinite mean or std)."""
    with np.errstate(over="ignore", invalid="ignore"):
        sd = float(ref.std())
        shift = abs(float(cur.mean()) - float(ref.mean()))
    if sd == 0.0:
        return None
    return _finite(shift / sd)


def spread_effect(ref: np.ndarray, cur: np.ndarray) -> float | None:
    """|log2 of the std ratio|: 1.0 means the spread doubled or halved. None when either
    window is constant or a std is not finite."""
    with np.errstate(over="ignore", invalid="ignore"):
        sd_ref, sd_cur = float(ref.std()), float(cur.std())
    if not (math.isfinite(sd_ref) and math.isfinite(sd_cur)) or sd_ref == 0.0 or sd_cur == 0.0:
        return None
    return _finite(abs(math.log2(sd_cur / sd_ref)))


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
