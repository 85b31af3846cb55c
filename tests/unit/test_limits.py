"""Memory stays bounded under hostile input: limits and feature expiry in the core."""

from __future__ import annotations

import tracemalloc

import orjson
import pytest

from detector.config import DetectionSettings
from detector.core.engine import PartitionDetectors
from detector.core.records import InputRecord


def _event(i: int, model: str = "m", **features: object) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"e{i}",
            "model": model,
            "timestamp": 1_767_225_600_000 + i * 10,
            "features": features,
            "prediction": 0.5,
        }
    )


class TestBoundedState:
    def test_ever_new_feature_names_stay_under_the_limit(self) -> None:
        """100,000 events, each with a never-seen feature name: the model never holds more
        than max_features_per_model monitors, the excess is rejected with a reason, and the
        memory held after 100,000 events is no more than after 10,000 (plus 1 MiB)."""
        settings = DetectionSettings(max_features_per_model=50, feature_ttl_s=1.0)
        core = PartitionDetectors(settings, "in", 0)
        tracemalloc.start()
        rejected = 0
        sizes = []
        try:
            for batch in range(100):
                records = [
                    InputRecord("in", 0, i, _event(i, base=1.0, **{f"f{i}": float(i)}))
                    for i in range(batch * 1000, (batch + 1) * 1000)
                ]
                result = core.process(records)
                rejected += sum(r.reason == "too_many_features" for r in result.rejections)
                assert len(core.models["m"].features) <= 50
                if batch in (9, 99):
                    sizes.append(tracemalloc.get_traced_memory()[0])
        finally:
            tracemalloc.stop()
        assert rejected > 0
        assert sizes[1] <= sizes[0] + (1 << 20), sizes

    def test_expired_features_are_forgotten(self) -> None:
        """A feature unseen for feature_ttl_s of event time is dropped at the next sweep."""
        settings = DetectionSettings(feature_ttl_s=5.0)
        core = PartitionDetectors(settings, "in", 0)
        core.process([InputRecord("in", 0, i, _event(i, old=1.0, keep=1.0)) for i in range(100)])
        assert set(core.models["m"].features) == {"old", "keep"}
        later = [InputRecord("in", 0, i, _event(i, keep=1.0)) for i in range(100, 3000)]
        assert core.process(later).expired == 1
        assert set(core.models["m"].features) == {"keep"}

    def test_rejected_first_event_does_not_register_a_model(self) -> None:
        """An event rejected on admission leaves no model behind to count against limits."""
        core = PartitionDetectors(DetectionSettings(max_models=1), "in", 0)
        bad = orjson.dumps(
            {
                "event_id": "x",
                "model": "bad",
                "timestamp": 1,
                "features": {"a": [1]},
                "prediction": 0.1,
            }
        )
        result = core.process(
            [InputRecord("in", 0, 0, bad), InputRecord("in", 0, 1, _event(1, a=1.0))]
        )
        assert [r.reason for r in result.rejections] == ["wrong_type"]
        assert list(core.models) == ["m"]


class TestExpiryIsDeterministic:
    def _stream(self) -> list[InputRecord]:
        events = [_event(i, a=1.0, b=2.0, c=3.0) for i in range(100)]
        events += [_event(i, d=float(i % 7)) for i in range(100, 2000)]
        return [InputRecord("in", 0, i, value) for i, value in enumerate(events)]

    def _run(self, batch: int) -> tuple[list[tuple[int, str]], int, int]:
        settings = DetectionSettings(max_features_per_model=3, feature_ttl_s=1.0)
        core = PartitionDetectors(settings, "in", 0)
        records = self._stream()
        rejected: list[tuple[int, str]] = []
        expired = processed = 0
        for start in range(0, len(records), batch):
            result = core.process(records[start : start + batch])
            rejected += [(r.record.offset, r.reason) for r in result.rejections]
            expired += result.expired
            processed += sum(result.processed.values())
        return rejected, expired, processed

    def test_a_full_model_makes_room_once_features_are_stale(self) -> None:
        """With the model full, a new feature is refused until a sweep at a refused event
        finds the old features older than the TTL; sweeps run at the 1st and every 256th
        refusal, so 'd' is first admitted at offset 100 + 256."""
        rejected, expired, processed = self._run(1000)
        assert rejected == [(i, "too_many_features") for i in range(100, 356)]
        assert expired == 3
        assert processed == 2000 - 256

    @pytest.mark.parametrize("batch", [1, 7, 333])
    def test_same_under_any_batching(self, batch: int) -> None:
        """Which events are refused and when features are forgotten do not depend on
        batch boundaries."""
        assert self._run(batch) == self._run(1000)
