"""Performance drift: the error stream of labelled predictions, its detectors' direction,
its evidence, and the same detector whichever way labels arrive."""

from __future__ import annotations

import itertools
import random
from typing import Any

import numpy as np
import orjson
import pytest
from label_support import DelayedStream, feed, join_settings, merged, positions

from detector.core.engine import PartitionDetectors
from detector.core.performance import PerformanceTracker, fingerprint, roc_auc
from detector.core.records import InputRecord
from detector.core.settings import (
    DetectionSettings,
    LabelSettings,
    PerformanceDetectorSpec,
    PerformanceSettings,
)
from detector.core.trackers import Ring


def _settings(name: str = "ADWIN", **labels: Any) -> DetectionSettings:
    params = {"delta": 1e-5, "clock": 4} if name == "ADWIN" else {}
    spec = PerformanceDetectorSpec(name=name, params=params)
    return DetectionSettings(
        performance=PerformanceSettings(detector=spec), labels=LabelSettings(**labels)
    )


def _tracker(settings: DetectionSettings) -> PerformanceTracker:
    return PerformanceTracker(
        settings.performance_detector("m"), settings, fingerprint(settings, "m")
    )


def _scored(p0: float, p1: float, n: int = 20_000, change: int = 10_000, seed: int = 3) -> Any:
    rng = random.Random(seed)
    for i in range(n):
        score = rng.random()
        wrong = rng.random() < (p0 if i < change else p1)
        yield score, int((score >= 0.5) != wrong)


def _hits(tracker: PerformanceTracker, stream: Any) -> list[int]:
    return [i for i, (p, y) in enumerate(stream) if tracker.observe(p, y, i) is not None]


class TestRing:
    def test_keeps_the_last_values_oldest_first(self) -> None:
        ring = Ring(3)
        assert ring.ordered() == [] and len(ring) == 0
        for x in (1.0, 2.0):
            ring.add(x)
        assert ring.ordered() == [1.0, 2.0] and len(ring) == 2
        for x in (3.0, 4.0, 5.0):
            ring.add(x)
        assert ring.ordered() == [3.0, 4.0, 5.0] and len(ring) == 3
        ring.clear()
        assert ring.ordered() == [] and len(ring) == 0
        ring.add(float("nan"))
        assert np.isnan(ring.ordered()[0])

    def test_from_values(self) -> None:
        """As ``deque(values, maxlen=size)``: the last ``size`` of them."""
        assert Ring(2, [1.0, 2.0, 3.0]).ordered() == [2.0, 3.0]
        assert Ring(4, [1.0, 2.0]).ordered() == [1.0, 2.0]

    def test_tracker_window_round_trips(self) -> None:
        """The error-rate tracker's window is written as the rows it was fed, and read
        back as them (the state format of deques of tuples)."""
        settings = DetectionSettings(window_size=32)
        tracker = PerformanceTracker(settings.performance_detector("m"), settings, "f")
        for i in range(40):
            tracker.observe(0.9 if i % 3 else 0.2, i % 2, i)
        rows = tracker.current()
        assert len(rows) == 32
        expected = [
            (int((0.9 if i % 3 else 0.2) >= 0.5) != i % 2, 0.9 if i % 3 else 0.2, i % 2)
            for i in range(8, 40)
        ]
        assert rows == [(int(e), s, y) for e, s, y in expected]
        state = tracker.__getstate__()
        assert state["current"] == [list(row) for row in rows]
        again = PerformanceTracker.__new__(PerformanceTracker)
        again.__setstate__(state)
        assert again.current() == rows
        assert again.realized_accuracy() == tracker.realized_accuracy()


class TestDirection:
    """Every configurable detector alerts on a rising error rate and never on a falling one
    (FHDDM, fed errors, would fire on the fall: it is fed correctness)."""

    RISING = {
        "ADWIN": 10495,
        "DDM": 10245,
        "EDDM": 10546,
        "HDDM_A": 10173,
        "HDDM_W": 10211,
        "FHDDM": 10112,
    }

    @pytest.mark.parametrize("name", list(RISING))
    def test_rising_error_rate_alerts_once_at_a_known_position(self, name: str) -> None:
        assert _hits(_tracker(_settings(name)), _scored(0.1, 0.3)) == [self.RISING[name]]

    @pytest.mark.parametrize("name", list(RISING))
    def test_falling_error_rate_never_alerts(self, name: str) -> None:
        tracker = _tracker(_settings(name))
        hits = _hits(tracker, _scored(0.3, 0.1))
        assert [i for i in hits if i >= 10_000] == []
        if name in ("ADWIN", "EDDM"):  # they fired on the fall: dropped, not missed
            assert tracker.rate.fired > 0

    @pytest.mark.parametrize("name", list(RISING))
    def test_stationary_error_rate_is_quiet(self, name: str) -> None:
        assert _hits(_tracker(_settings(name)), _scored(0.1, 0.1, n=100_000)) == []


class TestErrors:
    def test_scores_against_the_threshold(self) -> None:
        tracker = _tracker(_settings(threshold=0.7))
        assert tracker.error(0.69, 1) == (1, 0.69, 1)
        assert tracker.error(0.7, 1) == (0, 0.7, 1)
        assert tracker.error(0.2, False) == (0, 0.2, 0)
        assert tracker.error({"0": 0.2, "1": 0.8}, 1) == (0, 0.8, 1)

    def test_classes_compare_as_names(self) -> None:
        tracker = _tracker(_settings())
        assert tracker.error("approve", "approve")[0] == 0  # type: ignore[index]
        assert tracker.error("approve", "deny")[0] == 1  # type: ignore[index]
        assert tracker.error({"a": 0.1, "b": 0.5, "c": 0.4}, "b")[0] == 0  # type: ignore[index]

    def test_regression_errors_above_the_reference_quantile(self) -> None:
        """The first reference_size absolute errors set the cut-off (their 0.9 quantile)
        and are not fed; errors that double afterwards are found."""
        settings = _settings()
        tracker = _tracker(settings)
        rng = random.Random(8)
        hits = []
        for i in range(8000):
            truth = rng.gauss(100, 10)
            noise = rng.gauss(0, 1 if i < 4000 else 2)
            if tracker.observe(truth + noise, truth, i) is not None:
                hits.append(i)
        reference = np.abs(np.random.default_rng(0).normal(0, 1, 100_000))
        assert tracker.cutoff == pytest.approx(np.quantile(reference, 0.9), rel=0.15)
        assert hits == [4287]


class TestEvidence:
    def test_roc_auc_is_the_share_of_correctly_ordered_pairs(self) -> None:
        rng = np.random.default_rng(1)
        scores = np.round(rng.random(200), 1)  # ties
        labels = (rng.random(200) < scores).astype(np.int64)
        pairs = [
            1.0 if s1 > s0 else 0.5 if s1 == s0 else 0.0
            for (s1, y1), (s0, y0) in itertools.product(zip(scores, labels, strict=True), repeat=2)
            if y1 == 1 and y0 == 0
        ]
        assert roc_auc(scores, labels) == pytest.approx(sum(pairs) / len(pairs))
        assert roc_auc(scores, np.zeros(200, dtype=np.int64)) is None

    def test_alert_evidence_has_both_windows(self) -> None:
        tracker = _tracker(_settings())
        hit = None
        for i, (p, y) in enumerate(_scored(0.1, 0.3)):
            hit = tracker.observe(p, y, i) or hit
        assert hit is not None
        assert hit.drift_type == "performance"
        assert hit.description == "error rate 11.7% -> 28.9%"
        assert hit.evidence["reference"] == {
            "error_rate": 0.117188,
            "count": 512,
            "accuracy": 0.882812,
            "roc_auc": 0.872007,
            "positive_rate": 0.501953,
        }
        assert hit.evidence["current"] == {
            "error_rate": 0.289062,
            "count": 512,
            "accuracy": 0.710938,
            "roc_auc": 0.706287,
            "positive_rate": 0.484375,
        }


def _inline_events() -> list[dict[str, object]]:
    rng = random.Random(5)
    events: list[dict[str, object]] = []
    for i in range(8000):
        score = rng.random()
        correct = rng.random() < (0.9 if i < 4000 else 0.6)
        label = (score >= 0.5) if correct else (score < 0.5)
        events.append(
            {
                "event_id": f"e{i}",
                "model": "m",
                "timestamp": 1000 + i,
                "features": {"x": rng.gauss(0, 1)},
                "prediction": round(score, 6),
                "label": int(label) if i % 2 else bool(label),
            }
        )
    return events


def _records(events: list[dict[str, object]]) -> list[InputRecord]:
    return [InputRecord("in", 0, i, orjson.dumps(e)) for i, e in enumerate(events)]


class TestInlineLabels:
    def test_error_rate_rise_is_detected_once(self) -> None:
        """Labelled scores whose error rate goes from 10 % to 40 % at event 4000 give one
        performance alert on __error__, at the position the error-rate alert of earlier
        releases had (the detector and its input are unchanged)."""
        core = PartitionDetectors(DetectionSettings(), "in", 0)
        detections = core.process(_records(_inline_events())).detections
        assert [(d.offset, d.feature, d.drift_type, d.label) for d in detections] == [
            (4415, "__error__", "performance", None)
        ]
        assert detections[0].summary == (
            "performance drift on m/__error__: error rate 9.2% -> 29.7% (effect 1.03, ADWIN)"
        )

    def test_unlabelled_events_do_not_feed_the_tracker(self) -> None:
        events = _inline_events()
        for event in events[::2]:
            del event["label"]
        core = PartitionDetectors(DetectionSettings(), "in", 0)
        core.process(_records(events))
        assert core.models["m"].performance.labelled == 4000

    def test_labels_from_either_source_feed_the_same_detector(self) -> None:
        """The same labels inline, or on the labels topic right after each prediction:
        the same detection at the same prediction."""
        stream = DelayedStream(mean_lag_s=0.0, missing=0.0, seed=4)
        by_id = {label["event_id"]: label["label"] for label in stream.labels}
        inline = [dict(event, label=by_id[event["event_id"]]) for event in stream.predictions]
        core = PartitionDetectors(DetectionSettings(), "predictions", 0)
        alone = core.process(
            [InputRecord("predictions", 0, i, orjson.dumps(e)) for i, e in enumerate(inline)]
        ).detections
        joined = feed(PartitionDetectors(join_settings(), "predictions", 0), merged(stream))
        assert [d.offset for d in alone] == [d.offset for d in joined.detections] == [6335]
        assert positions(joined.detections) == [(6335, 6335, "performance")]
