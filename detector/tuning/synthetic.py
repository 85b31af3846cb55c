"""Seeded synthetic prediction streams with injected drifts.

Used by the demo, the benchmark and the statistical test battery: the same seed gives the
same events, byte for byte, so detection positions can be asserted exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BASE_TIME_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@dataclass(frozen=True)
class Drift:
    """A change injected into one feature from event ``start`` (gradual over ``ramp`` events)."""

    feature: str
    kind: str  # mean | variance | categorical | missing_rate | prediction
    start: int
    ramp: int = 0  # 0: abrupt

    def weight(self, i: int) -> float:
        if i < self.start:
            return 0.0
        if self.ramp <= 0:
            return 1.0
        return min(1.0, (i - self.start) / self.ramp)


@dataclass(frozen=True)
class FeatureShape:
    name: str
    shape: str  # normal | lognormal | poisson | bounded | heavy | categorical
    missing: float = 0.0
    categories: tuple[str, ...] = ()
    shares: tuple[float, ...] = ()


#: A model with one feature of each shape the battery covers.
STANDARD_FEATURES: tuple[FeatureShape, ...] = (
    FeatureShape("amount", "lognormal", missing=0.01),
    FeatureShape("score", "normal", missing=0.01),
    FeatureShape("txn_count", "poisson"),
    FeatureShape("utilisation", "bounded"),
    FeatureShape("latency", "heavy"),
    FeatureShape(
        "country", "categorical", 0.01, ("DE", "FR", "GB", "NL", "ES"), (0.4, 0.25, 0.2, 0.1, 0.05)
    ),
    FeatureShape("channel", "categorical", 0.0, ("web", "app", "pos"), (0.5, 0.3, 0.2)),
)


@dataclass
class StreamSpec:
    model: str
    n_events: int
    seed: int
    features: tuple[FeatureShape, ...] = STANDARD_FEATURES
    drifts: tuple[Drift, ...] = ()
    model_version: str = "1"
    extras: dict[str, Any] = field(default_factory=dict)


def _draw(shape: FeatureShape, rng: np.random.Generator, n: int) -> np.ndarray:
    if shape.shape == "normal":
        return rng.normal(0.0, 1.0, n)
    if shape.shape == "lognormal":
        return rng.lognormal(3.0, 0.8, n)
    if shape.shape == "poisson":
        return rng.poisson(4.0, n).astype(np.float64)
    if shape.shape == "bounded":
        return rng.beta(2.0, 5.0, n)
    if shape.shape == "heavy":
        return rng.standard_t(2.5, n)
    raise ValueError(shape.shape)


def _scale(shape: FeatureShape) -> float:
    """The standard deviation of each shape (for shifts of half a standard deviation)."""
    return {
        "normal": 1.0,
        "lognormal": float(np.sqrt((np.exp(0.64) - 1) * np.exp(6 + 0.64))),
        "poisson": 2.0,
        "bounded": float(np.sqrt(2 * 5 / (49 * 8))),
        "heavy": float(np.sqrt(2.5 / 0.5)),
    }[shape.shape]


def generate(spec: StreamSpec) -> Iterator[dict[str, Any]]:
    """Yield the events of ``spec`` in order."""
    rng = np.random.default_rng(spec.seed)
    n = spec.n_events
    columns: dict[str, list[Any]] = {}
    for shape in spec.features:
        drifts = [d for d in spec.drifts if d.feature == shape.name]
        missing_p = np.full(n, shape.missing)
        if shape.shape == "categorical":
            base = np.asarray(shape.shares)
            shifted = base.copy()
            # Categorical drift: move 20 points of share from the top category to the last one.
            shifted[0] -= 0.2
            shifted[-1] += 0.2
            weights = np.zeros(n)
            for d in drifts:
                if d.kind == "categorical":
                    weights = np.array([d.weight(i) for i in range(n)])
            u = rng.random(n)
            cum_base = np.cumsum(base)
            cum_shift = np.cumsum(shifted)
            cum = cum_base[None, :] * (1 - weights[:, None]) + cum_shift[None, :] * weights[:, None]
            idx = np.minimum((u[:, None] > cum).sum(axis=1), len(base) - 1)
            values: list[Any] = [shape.categories[i] for i in idx]
        else:
            raw = _draw(shape, rng, n)
            center = float(np.median(raw))
            for d in drifts:
                w = np.array([d.weight(i) for i in range(n)])
                if d.kind == "mean":
                    raw = raw + 0.5 * _scale(shape) * w
                elif d.kind == "variance":
                    # Variance x3 at the same mean: stretch around the centre by sqrt(3).
                    raw = center + (raw - center) * (1 + (np.sqrt(3.0) - 1) * w)
            values = raw.tolist()
        for d in drifts:
            if d.kind == "missing_rate":
                missing_p = missing_p + (0.25 - missing_p) * np.array(
                    [d.weight(i) for i in range(n)]
                )
        miss = rng.random(n) < missing_p
        columns[shape.name] = [None if m else v for v, m in zip(values, miss, strict=True)]
    logits = rng.normal(0.0, 1.0, n)
    for d in spec.drifts:
        if d.kind == "prediction":
            logits = logits + 0.5 * np.array([d.weight(i) for i in range(n)])
    prediction = (1.0 / (1.0 + np.exp(-logits))).tolist()
    names = [shape.name for shape in spec.features]
    for i in range(n):
        yield {
            "event_id": f"{spec.model}-{spec.seed}-{i}",
            "model": spec.model,
            "model_version": spec.model_version,
            "timestamp": BASE_TIME_MS + i * 10,
            "features": {name: columns[name][i] for name in names},
            "prediction": round(prediction[i], 6),
        }
