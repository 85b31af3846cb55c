"""The native ADWIN (detector.core.detectors.Adwin) against River's ADWIN, the reference:
the same detections and the same window statistics at every step, compiled and not."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pure
import pytest
from river import drift

from detector.config import DetectorSpec
from detector.core.detectors import Adwin, RiverDetector, build_detector


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


PARAMS = (
    {},
    {"delta": 1e-5, "clock": 1},
    {"delta": 0.01, "clock": 8},
    {"delta": 0.1, "clock": 2, "max_buckets": 2, "min_window_length": 3, "grace_period": 0},
)


class TestAdwin:
    def test_same_detections_as_river(self) -> None:
        """On the same streams, the native ADWIN fires at exactly River's positions."""
        for seed in range(5):
            for params in PARAMS:
                values = _stream(seed)
                expected = _river_positions(drift.ADWIN(**params), values)
                fast = build_detector(DetectorSpec(name="ADWIN", params=params))
                assert isinstance(fast, Adwin)
                assert _positions(fast.step, values) == expected
                assert len(expected) >= 2

    @pytest.mark.parametrize("params", PARAMS)
    def test_same_window_as_river_at_every_step(self, params: dict[str, Any]) -> None:
        """Width, total and variance equal River's, bit for bit, after every value, for the
        compiled class and the same source uncompiled."""
        values = _stream(7)[:5000] + [0.0] * 300 + _stream(8)[:2000]
        river = drift.ADWIN(**params)
        compiled = Adwin(**params)
        uncompiled = pure.core().detectors.Adwin(**params)
        for x in values:
            river.update(x)
            fired = (compiled.step(x), uncompiled.step(x))
            helper = river._helper
            expected = (helper.get_width(), helper.get_total(), helper.get_variance())
            assert compiled.window() == expected
            assert tuple(map(float, uncompiled.window())) == expected
            assert fired == (river.drift_detected, river.drift_detected)

    def test_bad_parameters_fail_at_construction(self) -> None:
        for params, message in (
            ({"delta": 0.0}, "delta must be in"),
            ({"delta": "x"}, "delta must be in"),
            ({"clock": 0}, "clock must be an integer of at least 1"),
            ({"max_buckets": 1.5}, "max_buckets must be an integer"),
            ({"grace_period": -1}, "grace_period must be an integer of at least 0"),
        ):
            with pytest.raises(ValueError, match=message):
                Adwin(**params)

    def test_describe(self) -> None:
        det = Adwin(delta=1e-5, clock=4)
        assert det.describe() == {
            "name": "ADWIN",
            "params": {
                "delta": 1e-5,
                "clock": 4,
                "max_buckets": 5,
                "min_window_length": 5,
                "grace_period": 10,
            },
        }

    def test_pickle_resumes_identically(self) -> None:
        """A detector pickled mid-stream continues exactly as the original."""
        values = _stream(11)
        original = build_detector(DetectorSpec(name="ADWIN", params={"delta": 1e-5, "clock": 1}))
        head = _positions(original.step, values[:4000])
        copy = pickle.loads(pickle.dumps(original))
        assert _positions(copy.step, values[4000:]) == _positions(original.step, values[4000:])
        assert head

    def test_deferred_zeros_give_river_positions(self) -> None:
        """The cut search is skipped while the window holds only zeros; on streams of long
        zero runs (at the start, after a detection, between bursts) the positions are still
        exactly River's, including detections right after a run of zeros, and pickled
        mid-run too."""
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
