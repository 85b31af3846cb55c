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
    """Count, mean, std and quantiles of a non-empty window (the engine adds missing_rate)."""
    arr = np.asarray(values, dtype=np.float64)
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
    """|mean shift| in reference standard deviations; None when the reference is constant."""
    sd = float(ref.std())
    if sd == 0.0:
        return None
    return abs(float(cur.mean()) - float(ref.mean())) / sd


def spread_effect(ref: np.ndarray, cur: np.ndarray) -> float | None:
    """|log2 of the std ratio|: 1.0 means the spread doubled or halved."""
    sd_ref, sd_cur = float(ref.std()), float(cur.std())
    if sd_ref == 0.0 or sd_cur == 0.0:
        return None
    return abs(math.log2(sd_cur / sd_ref))
