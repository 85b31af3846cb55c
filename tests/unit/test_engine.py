"""The per-partition detection core: exact detections on seeded streams, no broker."""

from __future__ import annotations

import pickle
import random

import orjson
import pytest
from kernel_support import new_core

from detector.config import DetectionSettings, DetectorSpec, FeatureSettings, ModelSettings
from detector.core.engine import PartitionDetectors
from detector.core.records import InputRecord
from detector.core.state import FORMAT_VERSION, MAGIC, StateFormatError
from detector.tuning.replay import replay
from detector.tuning.synthetic import Drift, StreamSpec, generate

DRIFTS = (
    Drift("score", "mean", 6000),
    Drift("channel", "categorical", 6000),
    Drift("amount", "missing_rate", 6000),
    Drift("utilisation", "variance", 6000),
    Drift("__prediction__", "prediction", 6000),
)
#: (offset, feature, drift_type) for StreamSpec("fraud", 12000, seed=42, drifts=DRIFTS).
EXPECTED = [
    (6399, "amount", "missing_rate"),
    (6591, "utilisation", "variance"),
    (6718, "score", "mean"),
    (6719, "channel", "categorical"),
    (6847, "__prediction__", "prediction"),
]


def _records(events: list[dict[str, object]], partition: int = 0) -> list[InputRecord]:
    return [InputRecord("in", partition, i, orjson.dumps(e)) for i, e in enumerate(events)]


def _found(detections: list[object]) -> list[tuple[int, str, str]]:
    return [(d.offset, d.feature, d.drift_type) for d in detections]  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def drifting() -> list[InputRecord]:
    return _records(list(generate(StreamSpec("fraud", 12000, seed=42, drifts=DRIFTS))))


class TestPartitionDetectors:
    def test_exact_detections(self, drifting: list[InputRecord]) -> None:
        """Each injected change is detected once, at a known position after event 6000."""
        core = PartitionDetectors(DetectionSettings(), "in", 0)
        found = []
        for start in range(0, len(drifting), 500):
            found += core.process(drifting[start : start + 500]).detections
        assert _found(found) == EXPECTED

    @pytest.mark.parametrize("batch", [1, 7, 333, 12000])
    def test_batching_does_not_matter(self, drifting: list[InputRecord], batch: int) -> None:
        """Blocks are counted per tracker, so any batching gives the same detections."""
        core = PartitionDetectors(DetectionSettings(), "in", 0)
        found = []
        for start in range(0, len(drifting), batch):
            found += core.process(drifting[start : start + batch]).detections
        assert _found(found) == EXPECTED

    @pytest.mark.parametrize("cut", [3000, 6500, 6718])
    def test_snapshot_restore_resumes_exactly(self, drifting: list[InputRecord], cut: int) -> None:
        """Snapshot, restore into a fresh object, continue: same detections as no restart."""
        settings = DetectionSettings()
        first = PartitionDetectors(settings, "in", 0)
        before = first.process(drifting[:cut]).detections
        entries = first.snapshot()
        assert set(entries) == {"fraud"}
        second = PartitionDetectors.restore(settings, "in", 0, entries)
        after = second.process(drifting[cut:]).detections
        assert _found(before + after) == EXPECTED

    def test_snapshot_holds_only_changed_models(self) -> None:
        """A snapshot carries the models touched since the previous one."""
        core = PartitionDetectors(DetectionSettings(), "in", 0)
        events = [*generate(StreamSpec("a", 10, seed=1)), *generate(StreamSpec("b", 10, seed=1))]
        core.process(_records(events))
        assert set(core.snapshot()) == {"a", "b"}
        core.process(_records(list(generate(StreamSpec("b", 5, seed=2)))))
        assert set(core.snapshot()) == {"b"}
        assert core.snapshot() == {}

    @pytest.mark.parametrize("version", [1, FORMAT_VERSION + 1])
    def test_other_state_version_fails_loudly(self, version: int) -> None:
        """An entry of a format version this build neither reads nor migrates (1, or a newer
        one) raises StateFormatError naming both versions, even when its payload would
        unpickle. (Version 2 is migrated: tests/unit/test_state_format.py.)"""
        blob = MAGIC + bytes([version]) + pickle.dumps({"any": "state"})
        with pytest.raises(
            StateFormatError,
            match=f"format version {version}; this build reads version {FORMAT_VERSION}",
        ):
            PartitionDetectors.restore(DetectionSettings(), "in", 0, {"fraud": blob})

    @pytest.mark.parametrize("blob", [b"", b"garbage", MAGIC + bytes([FORMAT_VERSION]) + b"\x80x"])
    def test_corrupt_state_fails_loudly(self, blob: bytes) -> None:
        """A corrupt entry raises StateFormatError instead of starting fresh."""
        with pytest.raises(StateFormatError, match="'fraud'"):
            PartitionDetectors.restore(DetectionSettings(), "in", 0, {"fraud": blob})

    def test_models_and_partitions_are_independent(self) -> None:
        """Interleaving another model does not change a model's detections."""
        alone = list(generate(StreamSpec("fraud", 12000, seed=42, drifts=DRIFTS)))
        noise = list(generate(StreamSpec("credit", 12000, seed=5)))
        mixed = [e for pair in zip(alone, noise, strict=True) for e in pair]
        detections, total = replay(mixed)
        assert total.processed == {"fraud": 12000, "credit": 12000}
        assert [(d.offset // 2, d.feature) for d in detections] == [(o, f) for o, f, _ in EXPECTED]
        assert all(d.offset % 2 == 0 for d in detections)


class TestRejections:
    def _event(self, i: int, **features: object) -> dict[str, object]:
        return {
            "event_id": f"e{i}",
            "model": "m",
            "timestamp": 1000 + i,
            "features": features,
            "prediction": 0.5,
        }

    def test_feature_type_change_is_rejected_and_state_untouched(self) -> None:
        """A feature that was numeric and arrives as a string rejects that event only."""
        core = PartitionDetectors(DetectionSettings(), "in", 0)
        events = [
            self._event(0, x=1.0, c="a"),
            self._event(1, x="high", c="a"),
            self._event(2, x=2.0, c="a"),
            self._event(3, x=3.0, c=4),
        ]
        result = core.process(_records(events))
        assert [(r.record.offset, r.reason) for r in result.rejections] == [
            (1, "feature_type_changed"),
            (3, "feature_type_changed"),
        ]
        assert result.processed == {"m": 2}
        assert core.models["m"].features["x"].missing.seen == 2

    def test_prediction_type_change_is_rejected(self) -> None:
        """The prediction keeps its kind too."""
        core = PartitionDetectors(DetectionSettings(), "in", 0)
        good = self._event(0, x=1.0)
        bad = {**self._event(1, x=1.0), "prediction": "fraud"}
        result = core.process(_records([good, bad]))
        assert [r.reason for r in result.rejections] == ["feature_type_changed"]

    def test_limits(self) -> None:
        """Beyond max_models or max_features_per_model, events are rejected with a reason."""
        settings = DetectionSettings(max_models=1, max_features_per_model=2)
        core = PartitionDetectors(settings, "in", 0)
        events = [
            self._event(0, a=1.0, b=2.0),
            {**self._event(1, a=1.0), "model": "other"},
            self._event(2, a=1.0, b=2.0, c=3.0),
            self._event(3, a=1.0),
        ]
        result = core.process(_records(events))
        assert [(r.record.offset, r.reason) for r in result.rejections] == [
            (1, "too_many_models"),
            (2, "too_many_features"),
        ]
        assert result.processed == {"m": 2}

    def test_malformed_json_is_rejected(self) -> None:
        """Bytes that are not an event are rejected with the parser's reason."""
        core = PartitionDetectors(DetectionSettings(), "in", 0)
        records = [InputRecord("in", 0, 0, b"nope"), InputRecord("in", 0, 1, None)]
        assert [r.reason for r in core.process(records).rejections] == ["not_json", "empty"]


class TestConfiguration:
    def test_ignored_feature_has_no_detector(self, drifting: list[InputRecord]) -> None:
        """An ignored feature is neither tracked nor alerted on."""
        settings = DetectionSettings(models={"fraud": ModelSettings(ignore_features=["score"])})
        detections, _ = replay([r.value for r in drifting if r.value], settings)
        assert "score" not in {d.feature for d in detections}
        assert {d.feature for d in detections} == {f for _, f, _ in EXPECTED} - {"score"}

    def test_kind_override(self) -> None:
        """A numeric feature configured categorical is tracked as categories."""
        settings = DetectionSettings(
            models={
                "fraud": ModelSettings(features={"txn_count": FeatureSettings(kind="categorical")})
            }
        )
        core = PartitionDetectors(settings, "in", 0)
        core.process(_records(list(generate(StreamSpec("fraud", 600, seed=1)))))
        assert core.models["fraud"].features["txn_count"].kind == "categorical"

    def test_reconfigure_keeps_unchanged_features(self, drifting: list[InputRecord]) -> None:
        """Changing one feature's detector resets only that feature's state."""
        core = PartitionDetectors(DetectionSettings(), "in", 0)
        core.process(drifting[:3000])
        kept = core.models["fraud"].features["amount"]
        changed = DetectionSettings(
            models={
                "fraud": ModelSettings(
                    features={
                        "score": FeatureSettings(
                            detector=DetectorSpec(name="ADWIN", params={"delta": 1e-3, "clock": 1})
                        )
                    }
                )
            }
        )
        assert core.reconfigure(changed) == 1
        assert core.models["fraud"].features["amount"] is kept
        assert core.models["fraud"].features["score"].missing.seen == 0


def _event(i: int, ts: int, **features: object) -> dict[str, object]:
    return {
        "event_id": f"e{i}",
        "model": "m",
        "timestamp": ts,
        "features": features,
        "prediction": 0.5,
    }


class TestHostileValues:
    @pytest.mark.parametrize("reference", [False, True], ids=["compiled", "uncompiled"])
    def test_values_near_the_double_limit_do_not_stop_processing(self, reference: bool) -> None:
        """A reference sample holding 1e200 overflows its standard deviation. The change is
        still reported, with null effect size and std, on both paths; nothing raises."""
        settings = DetectionSettings(reference_size=32, window_size=32, block_size=2, rearm_after=0)
        rng = random.Random(0)
        xs = (
            [1e200]
            + [rng.gauss(0, 1) for _ in range(331)]
            + [rng.gauss(0, 0.001) for _ in range(400)]
        )
        events = [_event(i, 1000 + i, x=x) for i, x in enumerate(xs)]
        core = new_core(settings, reference=reference)
        detections = core.process(_records(events)).detections
        assert [(d.offset, d.drift_type) for d in detections][:1] == [(527, "variance")]
        first = detections[0]
        assert first.evidence["effect_size"] is None
        assert first.evidence["reference"]["std"] is None
        assert first.severity == "critical"


class TestSnapshots:
    @pytest.mark.parametrize("reference", [False, True], ids=["compiled", "uncompiled"])
    def test_sweep_by_a_refused_event_reaches_the_changelog(self, reference: bool) -> None:
        """A refused event (too many features) that sweeps stale features changes the
        model's state: the next snapshot carries it, so a restored partition has forgotten
        the same features as an uninterrupted one."""
        settings = DetectionSettings(max_features_per_model=3, feature_ttl_s=1.0)
        stream = _records(
            [
                _event(0, 1000, a=1.0, b=1.0),
                _event(1, 5000, a=1.0, c=1.0, d=1.0, e=1.0),  # refused; sweeps b
                _event(2, 5000, a=1.0, c=1.0),
            ]
        )
        core = new_core(settings, reference=reference)
        changelog: dict[str, bytes] = {}
        for record in stream[:2]:
            core.process([record])
            changelog.update(core.snapshot())
        restored = type(core).restore(core.settings, "in", 0, changelog)
        restored.process(stream[2:])
        assert list(restored.models["m"].features) == ["a", "c"]
