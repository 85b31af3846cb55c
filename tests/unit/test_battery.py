"""The statistical battery behind the default configuration (docs/detection.md).

Stationary streams of 100k events per model over five numeric shapes and two categorical
features must give at most one false alert in total; every injected change must be found
once, within its delay budget.
"""

from __future__ import annotations

import pytest

from detector.tuning.replay import replay
from detector.tuning.synthetic import Drift, StreamSpec, generate

START = 10_000


class TestQuietOnStationaryData:
    def test_at_most_one_false_alert(self) -> None:
        """3 models x 100,000 stationary events (normal, log-normal, Poisson, bounded,
        heavy-tailed, 2 categorical, missing values): at most 1 alert in total."""
        events = [
            e for m in range(3) for e in generate(StreamSpec(f"model-{m}", 100_000, seed=1000 + m))
        ]
        detections, total = replay(events)
        assert sum(total.processed.values()) == 300_000
        assert len(detections) <= 1, [(d.model, d.feature, d.offset) for d in detections]


CASES = [
    # (feature, kind, ramp, budget)
    *[(f, "mean", 0, 2000) for f in ("score", "amount", "txn_count", "utilisation", "latency")],
    *[(f, "variance", 0, 3000) for f in ("score", "amount", "txn_count", "utilisation", "latency")],
    ("country", "categorical", 0, 2000),
    ("channel", "categorical", 0, 2000),
    ("score", "missing_rate", 0, 2000),
    ("channel", "missing_rate", 0, 2000),
    ("__prediction__", "prediction", 0, 2000),
    ("score", "mean", 20_000, 25_000),
    ("country", "categorical", 20_000, 25_000),
]


class TestDetectsInjectedChanges:
    @pytest.mark.parametrize(("feature", "kind", "ramp", "budget"), CASES)
    @pytest.mark.parametrize("seed", [1, 2])
    def test_detected_once_within_budget(
        self, feature: str, kind: str, ramp: int, budget: int, seed: int
    ) -> None:
        """The change is reported exactly once, with the right drift type, within budget,
        and nothing else is reported."""
        length = START + (40_000 if ramp else 8_000)
        spec = StreamSpec("m", length, seed=seed, drifts=(Drift(feature, kind, START, ramp),))
        detections, _ = replay(generate(spec))
        found = [(d.feature, d.drift_type) for d in detections]
        expected_type = kind if kind != "prediction" else "prediction"
        assert found == [(feature, expected_type)], found
        delay = detections[0].offset - START
        assert 0 <= delay <= budget
