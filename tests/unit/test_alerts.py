"""The drift alert v1 contract: exact payloads, deterministic ids, schema validity."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from detector.alerts import alert_id, alert_line, build_alert
from detector.core.records import Detection
from detector.tuning.replay import replay
from detector.tuning.synthetic import Drift, StreamSpec, generate

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "schemas" / "drift-alert.v1.json").read_text()
)
EMITTED_MS = 1_767_229_200_000  # 2026-01-01T01:00:00Z


def _detections(drift: Drift) -> list[Detection]:
    spec = StreamSpec("fraud", 8000, seed=42, drifts=(drift,))
    detections, _ = replay(generate(spec), topic="predictions", partition=3)
    return detections


class TestBuildAlert:
    def test_exact_categorical_alert(self) -> None:
        """A seeded categorical drift gives this alert, field for field."""
        (detection,) = _detections(Drift("channel", "categorical", 4000))
        assert build_alert(detection, EMITTED_MS) == {
            "schema_version": 1,
            "alert_id": "93b8fbaa-ddf9-52e3-ba47-72998be662fc",
            "model": "fraud",
            "model_version": "1",
            "feature": "channel",
            "drift_type": "categorical",
            "detector": {
                "name": "ADWIN",
                "params": {
                    "delta": 1e-05,
                    "clock": 4,
                    "max_buckets": 5,
                    "min_window_length": 5,
                    "grace_period": 10,
                },
                "block_size": 16,
            },
            "severity": "warning",
            "detected_at": "2026-01-01T00:00:46.710Z",
            "emitted_at": "2026-01-01T01:00:00.000Z",
            "trigger": {
                "topic": "predictions",
                "partition": 3,
                "offset": 4671,
                "event_id": "fraud-42-4671",
            },
            "evidence": {
                "reference": {
                    "count": 512,
                    "frequencies": {"web": 0.527344, "app": 0.283203, "pos": 0.189453},
                    "missing_rate": 0.0,
                },
                "current": {
                    "count": 512,
                    "frequencies": {"pos": 0.404297, "web": 0.306641, "app": 0.289062},
                    "missing_rate": 0.0,
                },
                "category": "pos",
                "total_variation": 0.220703,
                "statistic": "share",
                "effect_size": 0.735677,
            },
            "summary": "categorical drift on fraud/channel: share of 'pos' 18.9% -> 40.4% "
            "(effect 0.74, ADWIN)",
        }

    @pytest.mark.parametrize(
        "drift",
        [
            Drift("score", "mean", 4000),
            Drift("utilisation", "variance", 4000),
            Drift("amount", "missing_rate", 4000),
            Drift("__prediction__", "prediction", 4000),
            Drift("country", "categorical", 4000),
        ],
    )
    def test_valid_against_schema(self, drift: Drift) -> None:
        """Every kind of alert validates against schemas/drift-alert.v1.json."""
        detections = _detections(drift)
        assert detections
        for detection in detections:
            jsonschema.validate(build_alert(detection, EMITTED_MS), SCHEMA)

    def test_id_is_deterministic_and_time_free(self) -> None:
        """The same detection has the same id whenever it is emitted; another does not."""
        (first,) = _detections(Drift("channel", "categorical", 4000))
        (again,) = _detections(Drift("channel", "categorical", 4000))
        assert alert_id(first) == alert_id(again)
        assert build_alert(first, 1)["alert_id"] == build_alert(again, 2)["alert_id"]
        (other,) = _detections(Drift("score", "mean", 4000))
        assert alert_id(other) != alert_id(first)

    def test_line(self) -> None:
        """The one-line form shows time, severity, summary and the trigger position."""
        (detection,) = _detections(Drift("channel", "categorical", 4000))
        assert alert_line(build_alert(detection, EMITTED_MS)) == (
            "2026-01-01T00:00:46.710Z  WARNING  categorical drift on fraud/channel: share of "
            "'pos' 18.9% -> 40.4% (effect 0.74, ADWIN) [p3@4671]"
        )

    def test_numeric_evidence_carries_missing_rates(self) -> None:
        """A numeric alert's windows carry count, mean, std, quantiles and missing rate."""
        (detection,) = _detections(Drift("score", "mean", 4000))
        evidence = build_alert(detection, EMITTED_MS)["evidence"]
        assert set(evidence["reference"]) == {"count", "mean", "std", "quantiles", "missing_rate"}
        assert evidence["reference"]["missing_rate"] == 0.009766
        assert evidence["current"]["missing_rate"] == 0.011719
        assert list(evidence["current"]["quantiles"]) == ["p05", "p25", "p50", "p75", "p95"]


class TestPerformanceAlert:
    def test_exact_performance_alert_completed_by_a_label(self) -> None:
        """A performance alert names the prediction and, under trigger.label, the label
        record that completed the detection; it validates against the schema."""
        import sys

        sys.path.insert(0, str(Path(__file__).parent))
        from label_support import DelayedStream, feed, join_settings, merged

        from detector.core.engine import PartitionDetectors

        core = PartitionDetectors(join_settings(horizon="1h"), "predictions", 0)
        (detection,) = feed(core, merged(DelayedStream())).detections
        alert = build_alert(detection, EMITTED_MS)
        jsonschema.validate(alert, SCHEMA)
        assert alert["drift_type"] == "performance" and alert["feature"] == "__error__"
        assert alert["trigger"] == {
            "topic": "predictions",
            "partition": 0,
            "offset": 6375,
            "event_id": "p6375",
            "label": {
                "topic": "labels",
                "partition": 0,
                "offset": 5695,
                "timestamp": alert["detected_at"],
            },
        }
        assert alert["detector"] == {
            "name": "ADWIN",
            "params": {
                "delta": 1e-05,
                "clock": 4,
                "max_buckets": 5,
                "min_window_length": 5,
                "grace_period": 10,
            },
            "block_size": 16,
        }
        assert alert["evidence"]["reference"]["count"] == 512
        assert set(alert["evidence"]["current"]) == {
            "error_rate",
            "count",
            "accuracy",
            "roc_auc",
            "positive_rate",
        }


class TestSegmentAlerts:
    """Fairness and slice alerts validate against the schema, with their exact fields."""

    def _run(self, events: list[dict[str, object]], segments: object) -> list[Detection]:
        import orjson

        from detector.core.engine import PartitionDetectors
        from detector.core.settings import DetectionSettings

        core = PartitionDetectors(DetectionSettings(segments=segments), "predictions", 0)
        values = [orjson.dumps(e) for e in events]
        return core.process_batch(list(range(len(values))), values).detections

    def test_fairness_alert(self) -> None:
        import sys

        sys.path.insert(0, str(Path(__file__).parent))
        from segment_support import disparity_stream

        from detector.core.settings import SegmentSettings

        (detection,) = self._run(disparity_stream(), SegmentSettings(protected=["sex"]))
        alert = build_alert(detection, EMITTED_MS)
        jsonschema.validate(alert, SCHEMA)
        assert (alert["feature"], alert["drift_type"], alert["severity"]) == (
            "sex",
            "fairness",
            "warning",
        )
        assert "segment" not in alert
        assert alert["detector"] == {
            "name": "four-fifths",
            "params": {
                "band": [0.8, 1.25],
                "confidence": 0.95,
                "window": 5000,
                "min_group_size": 200,
            },
            "block_size": 256,
        }
        assert alert["trigger"] == {
            "topic": "predictions",
            "partition": 0,
            "offset": 25087,
            "event_id": "a25087",
        }
        current = alert["evidence"]["current"]
        assert current["groups"]["F"]["selection_rate"] == 0.4274
        assert current["groups"]["M"]["selection_rate"] == 0.5714
        assert current["disparate_impact"] == 0.747987
        assert alert["evidence"]["reference"]["disparate_impact"] == 0.992857

    def test_slice_alert(self) -> None:
        import sys

        sys.path.insert(0, str(Path(__file__).parent))
        from segment_support import sliced_stream

        from detector.core.settings import SegmentSettings

        (detection,) = self._run(
            sliced_stream(error_after=0.3), SegmentSettings(keys=["region", "channel"])
        )
        alert = build_alert(detection, EMITTED_MS)
        jsonschema.validate(alert, SCHEMA)
        assert alert["segment"] == {"region": "west"}
        assert (alert["feature"], alert["drift_type"]) == ("__error__", "performance")
