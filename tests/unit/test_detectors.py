"""The fast ADWIN path against River's ADWIN, the reference."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
from river import drift

from detector.config import DetectorSpec
from detector.core.detectors import AdwinFast, RiverDetector, build_detector


def _stream(seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    parts = [rng.normal(0, 1, 3000), rng.normal(1.5, 1, 3000), rng.normal(-1, 3, 3000)]
    return np.concatenate(parts).tolist()


def _positions(step: object, values: list[float]) -> list[int]:
    return [i for i, x in enumerate(values) if step(x)]  # type: ignore[operator]


def _river_positions(detector: Any, values: list[float]) -> list[int]:
    """Where a River detector, through its public update/drift_detected, fires."""
    found = []
    for i, x in enumerate(values):
        detector.update(x)
        if detector.drift_detected:
            found.append(i)
    return found


class TestAdwinFast:
    def test_same_detections_as_river(self) -> None:
        """On the same streams, the fast path fires at exactly River's positions."""
        for seed in range(5):
            for params in ({}, {"delta": 1e-5, "clock": 1}, {"delta": 0.01, "clock": 8}):
                values = _stream(seed)
                expected = _river_positions(drift.ADWIN(**params), values)
                fast = build_detector(DetectorSpec(name="ADWIN", params=params))
                assert isinstance(fast, AdwinFast)
                assert _positions(fast.step, values) == expected
                assert len(expected) >= 2

    def test_pickle_resumes_identically(self) -> None:
        """A detector pickled mid-stream continues exactly as the original."""
        values = _stream(11)
        original = build_detector(DetectorSpec(name="ADWIN", params={"delta": 1e-5, "clock": 1}))
        head = _positions(original.step, values[:4000])
        copy = pickle.loads(pickle.dumps(original))
        assert _positions(copy.step, values[4000:]) == _positions(original.step, values[4000:])
        assert head

    def test_deferred_zeros_give_river_positions(self) -> None:
        """Zeros are handed to River late while its window holds only zeros; on streams of
        long zero runs (at the start, after a detection, between bursts) the positions are
        still exactly River's, including detections right after a run of zeros."""
        rng = np.random.default_rng(5)
        values = [0.0] * 4000 + rng.binomial(1, 0.3, 3000).astype(float).tolist()
        values += [0.0] * 5000 + rng.normal(2.0, 1.0, 2000).tolist() + [0.0] * 3000
        values += rng.binomial(1, 0.05, 4000).astype(float).tolist() + [0.0] * 2000
        for params in ({"delta": 1e-5, "clock": 1}, {"delta": 1e-5, "clock": 4}, {}):
            expected = _river_positions(drift.ADWIN(**params), values)
            for cut in (2000, 9000):  # pickled with zeros pending, and after bursts
                fast = build_detector(DetectorSpec(name="ADWIN", params=params))
                head = _positions(fast.step, values[:cut])
                copy = pickle.loads(pickle.dumps(fast))
                tail = [i + cut for i in _positions(copy.step, values[cut:])]
                assert head + tail == expected
            assert len(expected) >= 3

    def test_other_detectors_use_river_api(self) -> None:
        """Non-ADWIN detectors go through River's public update/drift_detected."""
        det = build_detector(DetectorSpec(name="PageHinkley", params={"threshold": 20}))
        assert isinstance(det, RiverDetector)
        assert det.describe()["name"] == "PageHinkley"
        assert det.describe()["params"]["threshold"] == 20
        reference = drift.PageHinkley(threshold=20)
        values = _stream(3)
        assert _positions(det.step, values) == _river_positions(reference, values)
