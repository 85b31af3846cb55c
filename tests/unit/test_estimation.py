"""Performance estimated before labels arrive (CBPE): calibration, the estimate against the
realized accuracy, where it is right (covariate shift) and where it is wrong (concept
shift), and its detector."""

from __future__ import annotations

import random

import numpy as np
import orjson
import pytest
from label_support import scored_stream
from pure import core as pure_core

from detector.core.engine import PartitionDetectors
from detector.core.estimation import (
    EstimatedPerformance,
    expected_auc,
    isotonic,
    summary,
)
from detector.core.performance import roc_auc
from detector.core.settings import DetectionSettings, EstimationSettings
from detector.core.state import decode_model, encode_model


def _run(events: list[dict[str, object]], engine: type = PartitionDetectors) -> tuple[list, object]:
    core = engine(DetectionSettings(), "in", 0)
    result = core.process_batch(list(range(len(events))), [orjson.dumps(e) for e in events])
    return result.detections, core


def _realized(events: list[dict[str, object]], truth: list[int], a: int, b: int) -> float:
    scores = np.array([e["prediction"] for e in events[a:b]])
    return float(np.mean((scores >= 0.5) == (np.array(truth[a:b]) == 1)))


class TestCalibration:
    def test_isotonic_fit_is_monotone_and_keeps_the_mean(self) -> None:
        rng = np.random.default_rng(2)
        scores = rng.random(2000)
        labels = (rng.random(2000) < scores**2).astype(np.int64)
        centers, means = isotonic(scores, labels)
        assert np.all(np.diff(means) > 0) and np.all(np.diff(centers) > 0)
        assert means.min() >= 0 and means.max() <= 1
        assert means[0] < 0.05 and means[-1] > 0.8  # labels ~ Bernoulli(score ** 2)

    def test_isotonic_pools_adjacent_violators(self) -> None:
        """By hand: 1, 0 violate (pooled to 0.5 at 0.15); 1, 1 are pooled too (ties are
        violators, as in the pool-adjacent-violators rule's >=)."""
        centers, means = isotonic(np.array([0.4, 0.1, 0.3, 0.2]), np.array([1, 1, 1, 0]))
        assert centers.tolist() == [(0.1 + 0.2) / 2, (0.3 + 0.4) / 2]
        assert means.tolist() == [0.5, 1.0]
        assert isotonic(np.array([0.3]), np.array([0])) == (np.array([0.3]), np.array([0.0]))

    @pytest.mark.parametrize("n", [1, 2, 17, 5000])
    def test_isotonic_compiled_and_uncompiled_agree_bit_for_bit(self, n: int) -> None:
        rng = np.random.default_rng(n)
        scores = np.round(rng.random(n), 2)  # ties on the scores too
        labels = (rng.random(n) < scores).astype(np.int64)
        compiled = isotonic(scores, labels)
        plain = pure_core().estimation.isotonic(scores, labels)
        assert [a.tobytes() for a in compiled] == [a.tobytes() for a in plain]

    @pytest.mark.parametrize("module", ["compiled", "uncompiled"])
    def test_a_score_outside_0_1_takes_the_nearest_bin(self, module: str) -> None:
        """Class probabilities are not range-checked: a score below 0 takes the first bin
        (not, as a negative index would, one from the end), above 1 the last."""
        cls = (
            EstimatedPerformance
            if module == "compiled"
            else pure_core().estimation.EstimatedPerformance
        )
        est = cls(DetectionSettings())
        est._bins = np.arange(1024) / 1023  # bin i: probability i / 1023
        assert est.right(0.75) == 768 / 1023  # bin int(0.75 * 1024)
        assert est.right(-0.25) == 1.0 - 0.0  # below the threshold: 1 - p of bin 0
        assert est.right(-1e300) == 1.0
        assert est.right(1.5) == 1.0
        assert est.right(float("inf")) == 1.0
        assert est.right(1.0) == 1.0
        # The window summaries (an alert's evidence) take the same bins.
        table = np.asarray(est._bins)
        ends = pure_core().estimation.summary if module == "uncompiled" else summary
        assert ends([-0.25, 1.5], table, 0.5)["estimated_accuracy"] == 1.0  # 1 - 0, 1
        assert ends([0.75, 0.25], table, 0.5)["estimated_accuracy"] == round(
            (768 / 1023 + 1 - 256 / 1023) / 2, 6
        )

    def test_expected_auc_of_certain_probabilities_is_the_auc(self) -> None:
        """With probabilities 0 or 1 the expected AUC is the AUC of those labels."""
        rng = np.random.default_rng(3)
        scores = np.round(rng.random(300), 2)
        labels = (rng.random(300) < scores).astype(np.int64)
        assert expected_auc(scores, labels.astype(np.float64)) == pytest.approx(
            roc_auc(scores, labels)
        )

    def test_calibrates_on_the_first_reference_size_labels(self) -> None:
        settings = DetectionSettings(estimated_performance=EstimationSettings(reference_size=200))
        est = EstimatedPerformance(settings)
        rng = random.Random(1)
        for _ in range(199):
            score = rng.random()
            est.learn(score, int(rng.random() < score))
        assert est.table is None and est.observe(0.9, 0) is None
        est.learn(0.5, 1)
        assert est.table is not None and est.table.shape == (1024,)
        assert np.all(np.diff(est.table) >= 0)


class TestEstimate:
    def test_covariate_shift_estimate_tracks_the_realized_accuracy(self) -> None:
        """Calibrated scores become less confident at event 15,000 (covariate shift): the
        estimate, from the scores alone, stays within 0.01 of the realized accuracy before
        and after, and its detector alerts at a known position, long before the labels
        (only the first 6,000 events carry labels)."""
        events, truth = scored_stream(spread_after=1.0)
        detections, core = _run(events)
        estimated = [d for d in detections if d.drift_type == "estimated_performance"]
        assert [(d.offset, d.feature) for d in estimated] == [(15494, "__error__")]
        est = core.models["credit"].estimation
        scores = [e["prediction"] for e in events]
        for a, b in [(6000, 15000), (15000, 30000)]:
            window = summary(scores[a:b], est.table, 0.5)
            assert abs(window["estimated_accuracy"] - _realized(events, truth, a, b)) < 0.01
        assert round(_realized(events, truth, 15000, 30000), 3) == 0.670
        evidence = estimated[0].evidence
        assert evidence["reference"]["estimated_accuracy"] == 0.844942
        assert evidence["reference"]["estimated_accuracy_ci"] == [0.816382, 0.873502]
        assert evidence["current"]["estimated_accuracy"] == 0.684489
        assert evidence["current"]["estimated_roc_auc"] == 0.747028
        assert evidence["current"]["realized_accuracy"] is None
        assert evidence["calibration"] == {"count": 5000, "realized_accuracy": 0.8346}
        assert estimated[0].summary == (
            "estimated_performance drift on credit/__error__: estimated accuracy 84.5% -> "
            "68.4% (effect 0.80, ADWIN)"
        )

    def test_concept_shift_is_where_the_estimate_is_wrong(self) -> None:
        """The same scores, labels flipped on 30 % of the events from 15,000 (concept shift):
        the realized accuracy drops to 0.64, the estimate stays at 0.84, and nothing is
        estimated to drift. Only the labels can show it (performance drift)."""
        events, truth = scored_stream(flip_after=0.3)
        detections, core = _run(events)
        assert [d for d in detections if d.drift_type == "estimated_performance"] == []
        est = core.models["credit"].estimation
        scores = [e["prediction"] for e in events]
        window = summary(scores[15000:], est.table, 0.5)
        assert window["estimated_accuracy"] == pytest.approx(0.838, abs=0.001)
        assert round(_realized(events, truth, 15000, 30000), 3) == 0.642

    def test_stationary_scores_give_no_alert(self) -> None:
        events, _ = scored_stream(n=60_000, change=60_000)
        detections, _ = _run(events)
        assert [d for d in detections if d.drift_type == "estimated_performance"] == []

    def test_compiled_and_uncompiled_engines_agree(self) -> None:
        events, _ = scored_stream(spread_after=1.0)
        compiled, _ = _run(events)
        plain, _ = _run(events, pure_core().engine.PartitionDetectors)
        assert [(d.offset, d.drift_type) for d in compiled] == [
            (d.offset, d.drift_type) for d in plain
        ]

    def test_state_round_trip_resumes_exactly(self) -> None:
        events, _ = scored_stream(spread_after=1.0)
        values = [orjson.dumps(e) for e in events]
        whole, _ = _run(events)
        first = PartitionDetectors(DetectionSettings(), "in", 0)
        before = first.process_batch(list(range(10_000)), values[:10_000]).detections
        entries = {k: v for k, v in first.snapshot().items() if v is not None}
        again = decode_model(encode_model(first.models["credit"]), "credit")
        assert again.estimation.table is not None
        second = PartitionDetectors.restore(DetectionSettings(), "in", 0, entries)
        after = second.process_batch(list(range(10_000, 30_000)), values[10_000:]).detections
        assert [(d.offset, d.drift_type) for d in before + after] == [
            (d.offset, d.drift_type) for d in whole
        ]

    def test_off_when_disabled(self) -> None:
        events, _ = scored_stream(spread_after=1.0)
        settings = DetectionSettings(estimated_performance=EstimationSettings(enabled=False))
        core = PartitionDetectors(settings, "in", 0)
        core.process_batch(list(range(len(events))), [orjson.dumps(e) for e in events])
        assert core.models["credit"].estimation is None

    def test_gauges_give_estimate_and_realized(self) -> None:
        events, _ = scored_stream(spread_after=1.0)
        _, core = _run(events)
        ((estimated, realized),) = core.accuracy().values()  # type: ignore[attr-defined]
        assert estimated is not None and 0.6 < estimated < 0.75
        assert realized is not None and realized > 0.8  # labels stopped at event 6,000
