"""Fairness drift across the values of a protected segment attribute: group metrics, the
four-fifths band with confidence, one alert per change, and its evidence in words."""

from __future__ import annotations

import orjson
import pytest
from segment_support import disparity_stream

from detector.alerts import build_alert
from detector.core.engine import PartitionDetectors
from detector.core.fairness import EVALUATE_EVERY, FairnessMonitor, decision, wilson
from detector.core.settings import DetectionSettings, SegmentSettings
from detector.core.state import StateFormatError, decode_model, encode_model

SEGMENTS = SegmentSettings(protected=["sex"])


def _core(segments: SegmentSettings = SEGMENTS) -> PartitionDetectors:
    return PartitionDetectors(DetectionSettings(segments=segments), "in", 0)


def _run(events: list[dict[str, object]], core: PartitionDetectors | None = None) -> list:
    core = core or _core()
    values = [orjson.dumps(e) for e in events]
    return core.process_batch(list(range(len(values))), values).detections


class TestGroupMetrics:
    def test_wilson_interval(self) -> None:
        low, high = wilson(50, 100)
        assert (round(low, 4), round(high, 4)) == (0.4038, 0.5962)
        assert wilson(0, 0) == (0.0, 1.0)

    def test_decisions_of_each_prediction_shape(self) -> None:
        assert decision(0.7, 0.5) == 1
        assert decision(0.2, 0.5) == 0
        assert decision({"approve": 0.4, "decline": 0.6}, 0.5) == 0  # argmax: not positive
        assert decision({"1": 0.8, "0": 0.2}, 0.5) == 1  # two-class: the positive score
        assert decision("yes", 0.5) == 1
        assert decision(True, 0.5) == 1
        assert decision(17.5, 0.5) is None  # a regression output is not a decision

    def test_snapshot_counts_groups_with_enough_decisions_only(self) -> None:
        monitor = FairnessMonitor("sex", window=1000, min_group_size=200, max_values=5)
        for i in range(400):
            monitor.decide("F", i % 2, i)  # rate 0.5
            monitor.decide("M", int(i % 4 != 0), i)  # rate 0.75
        for i in range(100):
            monitor.decide("X", 1, i)  # too few: not counted
        for d, y in ((1, 1), (0, 1), (1, 0), (0, 0)):
            monitor.label("F", d, y)
        now = monitor.snapshot()
        assert now is not None
        assert sorted(now["groups"]) == ["F", "M"]
        assert now["disparate_impact"] == pytest.approx(0.5 / 0.75, abs=1e-6)
        assert now["demographic_parity_difference"] == 0.25
        assert now["groups"]["F"]["true_positive_rate"] == 0.5
        assert now["groups"]["F"]["false_positive_rate"] == 0.5
        assert now["groups"]["M"]["true_positive_rate"] is None
        assert now["equal_opportunity_difference"] is None  # one group with labels only

    def test_values_beyond_max_values_are_not_tracked(self) -> None:
        monitor = FairnessMonitor("region", window=1000, min_group_size=10, max_values=2)
        assert monitor.decide("a", 1, 0) is None
        assert monitor.decide("b", 1, 1) is None
        assert monitor.decide("c", 1, 2) is False
        assert sorted(monitor.groups) == ["a", "b"]


class TestDisparityDrift:
    def test_disparity_change_found_while_overall_rate_stays_flat(self) -> None:
        events = disparity_stream()
        detections = _run(events)
        # The scores of both groups together keep their distribution: no overall alert.
        assert [(d.offset, d.feature, d.drift_type) for d in detections] == [
            (25087, "sex", "fairness")
        ]
        before = [e["prediction"] >= 0.5 for e in events[:20_000]]
        after = [e["prediction"] >= 0.5 for e in events[20_000:]]
        assert abs(sum(before) / len(before) - sum(after) / len(after)) < 0.01
        alert = detections[0]
        assert alert.summary == (
            "fairness drift on credit/sex: positive-decision rate of sex=F is 0.75 of "
            "sex=M's, was 0.99; 5,000 and 5,000 decisions (effect 0.26, four-fifths)"
        )
        current = alert.evidence["current"]
        assert (current["lowest"], current["highest"]) == ("F", "M")
        assert current["disparate_impact"] < 0.8
        assert current["disparate_impact_upper"] < 0.8
        assert alert.evidence["reference"]["disparate_impact"] > 0.95
        # Every metric per group, labels included, in one alert.
        for group in ("F", "M"):
            metrics = current["groups"][group]
            assert set(metrics) == {
                "decisions",
                "selection_rate",
                "selection_rate_ci",
                "labelled",
                "true_positive_rate",
                "false_positive_rate",
            }
            assert metrics["decisions"] == metrics["labelled"] == 5000
        assert current["equal_opportunity_difference"] > 0.0
        assert current["equalized_odds_difference"] >= current["equal_opportunity_difference"]
        assert alert.segment is None
        assert alert.detector["name"] == "four-fifths"
        assert build_alert(alert, 0)["feature"] == "sex"

    def test_one_alert_per_change(self) -> None:
        # The disparity stays outside the band after it changed: still one alert.
        assert len(_run(disparity_stream(n=80_000))) == 1

    def test_a_smaller_gap_is_found_later(self) -> None:
        assert [d.offset for d in _run(disparity_stream(gap=0.1))] == [26879]

    def test_stationary_groups_give_no_alert(self) -> None:
        assert _run(disparity_stream(n=80_000, change=80_000)) == []

    def test_without_labels_the_label_metrics_are_null(self) -> None:
        detections = _run(disparity_stream(labelled=False))
        assert [d.offset for d in detections] == [24831]  # other draws: no label draws
        current = detections[0].evidence["current"]
        assert current["groups"]["F"]["true_positive_rate"] is None
        assert current["equal_opportunity_difference"] is None

    def test_unprotected_keys_are_not_measured(self) -> None:
        core = _core(SegmentSettings(protected=["region"]))
        assert _run(disparity_stream(), core) == []
        assert list(core.models["credit"].fairness) == ["region"]

    def test_state_round_trip_resumes_exactly(self) -> None:
        values = [orjson.dumps(e) for e in disparity_stream()]
        first = _core()
        before = first.process_batch(list(range(22_000)), values[:22_000]).detections
        entries = {k: v for k, v in first.snapshot().items() if v is not None}
        second = PartitionDetectors.restore(DetectionSettings(segments=SEGMENTS), "in", 0, entries)
        after = second.process_batch(list(range(22_000, 40_000)), values[22_000:]).detections
        assert before == []
        assert [(d.offset, d.summary) for d in after] == [
            (d.offset, d.summary) for d in _run(disparity_stream())
        ]

    def test_changing_the_window_resets_the_monitor(self) -> None:
        core = _core()
        _run(disparity_stream(n=3000, change=3000), core)
        assert core.models["credit"].fairness["sex"].decisions == 3000
        core.reconfigure(DetectionSettings(segments=SegmentSettings(protected=["sex"], window=900)))
        assert core.models["credit"].fairness == {}

    def test_evaluated_every_block_of_decisions(self) -> None:
        monitor = FairnessMonitor("sex", window=1000, min_group_size=10, max_values=5)
        for i in range(EVALUATE_EVERY - 1):
            assert monitor.decide("F" if i % 2 else "M", int(i % 2 == 0), i) is None
        hit = monitor.decide("F", 0, EVALUATE_EVERY)
        assert hit is not None and hit.evidence["current"]["disparate_impact"] == 0.0


class TestFairnessState:
    def test_corrupt_group_windows_are_refused(self) -> None:
        core = _core()
        _run(disparity_stream(n=3000, change=3000), core)
        state = core.models["credit"]
        state.fairness["sex"].groups["F"].decisions.append(7)
        with pytest.raises(StateFormatError, match="decisions that are not 0/1"):
            decode_model(encode_model(state), "credit")
