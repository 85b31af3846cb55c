"""Slices (``detection.segments.keys``): the model's detectors per value of a segment key,
so that a change confined to one group is found while the model's own detectors are quiet;
bounded, checkpointed, and named in the alert."""

from __future__ import annotations

import orjson
import pytest
from label_support import Fed, feed
from pure import core as pure_core
from segment_support import sliced_stream

from detector.alerts import alert_id, build_alert
from detector.core.engine import SLICE_PREFIX, PartitionDetectors, slice_name
from detector.core.settings import DetectionSettings, LabelSettings, SegmentSettings

SEGMENTS = SegmentSettings(keys=["region", "channel"])


def _settings(segments: SegmentSettings = SEGMENTS, **kwargs: object) -> DetectionSettings:
    return DetectionSettings(segments=segments, **kwargs)  # type: ignore[arg-type]


def _run(
    events: list[dict[str, object]],
    settings: DetectionSettings | None = None,
    engine: type = PartitionDetectors,
) -> tuple[list, PartitionDetectors]:
    core = engine(settings or _settings(), "in", 0)
    values = [orjson.dumps(e) for e in events]
    result = core.process_batch(list(range(len(values))), values)
    return result.detections, core


def _positions(detections: list) -> list[tuple[int, str, str, dict[str, str] | None]]:
    return [(d.offset, d.feature, d.drift_type, d.segment) for d in detections]


class TestSliceDrift:
    def test_error_rise_in_one_region_found_while_the_model_is_quiet(self) -> None:
        detections, _ = _run(sliced_stream(error_after=0.3))
        assert _positions(detections) == [(27858, "__error__", "performance", {"region": "west"})]
        # Without slices the model's own detectors see nothing.
        plain, _ = _run(sliced_stream(error_after=0.3), DetectionSettings())
        assert plain == []

    def test_feature_shift_in_one_region_found_while_the_model_is_quiet(self) -> None:
        detections, _ = _run(sliced_stream(shift=0.7))
        assert _positions(detections) == [(28432, "x", "mean", {"region": "west"})]

    def test_stationary_slices_give_no_alert(self) -> None:
        detections, _ = _run(sliced_stream(n=60_000, change=60_000))
        assert detections == []

    def test_alert_names_the_slice(self) -> None:
        detections, _ = _run(sliced_stream(error_after=0.3))
        detection = detections[0]
        alert = build_alert(detection, 0)
        assert alert["model"] == "credit"
        assert alert["segment"] == {"region": "west"}
        assert alert["feature"] == "__error__"
        assert alert["summary"].startswith("performance drift on credit/__error__ [region=west]: ")
        assert alert["trigger"]["event_id"] == "e27858"
        # The same position without the segment is another detection, another id.
        from dataclasses import replace

        assert alert_id(detection) != alert_id(replace(detection, segment=None))
        assert "segment" not in build_alert(replace(detection, segment=None), 0)

    def test_labels_from_the_labels_topic_feed_the_slices(self) -> None:
        events = sliced_stream(error_after=0.3)
        records: list[tuple[str, int, bytes]] = []
        for offset, event in enumerate(events):
            label = {
                "event_id": event["event_id"],
                "model": "credit",
                "label": event.pop("label"),
                "timestamp": event["timestamp"],
            }
            records.append(("predictions", offset, orjson.dumps(event)))
            records.append(("labels", offset, orjson.dumps(label)))
        settings = _settings(labels=LabelSettings(join=True))
        fed = feed(PartitionDetectors(settings, "in", 0), records, Fed())
        assert _positions(fed.detections) == [
            (27858, "__error__", "performance", {"region": "west"})
        ]
        label = fed.detections[0].label
        assert label is not None and label["offset"] == 27858

    def test_compiled_and_uncompiled_engines_agree(self) -> None:
        events = sliced_stream(shift=0.7, error_after=0.3)
        compiled, _ = _run(events)
        plain, _ = _run(events, engine=pure_core().engine.PartitionDetectors)
        assert [(d.offset, d.summary) for d in compiled] == [(d.offset, d.summary) for d in plain]
        assert len(compiled) >= 2


class TestSliceBounds:
    def test_values_beyond_max_values_are_counted_not_tracked(self) -> None:
        events = sliced_stream(n=2000, change=2000)
        settings = _settings(SegmentSettings(keys=["region"], max_values=2))
        core = PartitionDetectors(settings, "in", 0)
        values = [orjson.dumps(e) for e in events]
        result = core.process_batch(list(range(len(values))), values)
        seen: list[str] = []
        for event in events:
            region = event["segment"]["region"]  # type: ignore[index]
            if region not in seen:
                seen.append(region)
        tracked = seen[:2]
        assert sorted(name for name in core.models if name.startswith(SLICE_PREFIX)) == sorted(
            slice_name("credit", "region", value) for value in tracked
        )
        untracked = sum(1 for e in events if e["segment"]["region"] not in tracked)  # type: ignore[index]
        assert result.untracked == {("credit", "region"): untracked}
        assert result.processed == {"credit": 2000}  # a slice's events are its model's

    def test_slices_do_not_count_as_models(self) -> None:
        settings = _settings(max_models=1)
        _, core = _run(sliced_stream(n=500, change=500), settings)
        assert len(core.models) == 1 + 4 + 2  # the model, four regions, two channels

    def test_an_event_cannot_feed_a_slice_directly(self) -> None:
        _, core = _run(sliced_stream(n=500, change=500))
        name = slice_name("credit", "region", "west")
        forged = {"event_id": "x", "model": name, "timestamp": 1, "features": {}, "prediction": 1}
        result = core.process_batch([500], [orjson.dumps(forged)])
        assert [r.reason for r in result.rejections] == ["wrong_type"]


class TestSliceState:
    def test_state_round_trip_resumes_exactly(self) -> None:
        events = sliced_stream(shift=0.7, error_after=0.3)
        values = [orjson.dumps(e) for e in events]
        whole, _ = _run(events)
        first = PartitionDetectors(_settings(), "in", 0)
        before = first.process_batch(list(range(25_000)), values[:25_000]).detections
        entries = {k: v for k, v in first.snapshot().items() if v is not None}
        assert slice_name("credit", "region", "west") in entries
        second = PartitionDetectors.restore(_settings(), "in", 0, entries)
        after = second.process_batch(list(range(25_000, 40_000)), values[25_000:]).detections
        assert [(d.offset, d.summary) for d in before + after] == [
            (d.offset, d.summary) for d in whole
        ]

    def test_a_key_no_longer_sliced_on_is_tombstoned(self) -> None:
        _, core = _run(sliced_stream(n=500, change=500))
        core.snapshot()
        core.reconfigure(_settings(SegmentSettings(keys=["region"])))
        entries = core.snapshot()
        assert entries == {slice_name("credit", "channel", v): None for v in ("branch", "web")}

    def test_slicing_switched_on_by_reconfigure_finds_the_same_drift(self) -> None:
        """The engine keeps the switches every event consults as flags: reconfigure must
        set them, so slicing switched on later finds the drift slicing from the start does."""
        events = sliced_stream(error_after=0.3)
        values = [orjson.dumps(e) for e in events]
        core = PartitionDetectors(DetectionSettings(), "in", 0)
        assert core.process_batch(list(range(10_000)), values[:10_000]).detections == []
        core.reconfigure(_settings())
        later = core.process_batch(list(range(10_000, len(values))), values[10_000:])
        # The slices start at the reconfigure: as a core slicing from that event on.
        fresh = PartitionDetectors(_settings(), "in", 0)
        since = fresh.process_batch(list(range(10_000, len(values))), values[10_000:])
        assert _positions(later.detections) == _positions(since.detections)
        assert _positions(later.detections) == [
            (39416, "__error__", "performance", {"region": "west"})
        ]
        # And switched off again, the slices stop: no slice alert from then on.
        core.reconfigure(DetectionSettings())
        again = core.process_batch(list(range(len(values))), values)
        assert [d.segment for d in again.detections if d.segment is not None] == []

    def test_a_corrupt_slice_key_is_refused(self) -> None:
        from detector.core.state import StateFormatError

        _, core = _run(sliced_stream(n=500, change=500))
        entries = {k: v for k, v in core.snapshot().items() if v is not None}
        blob = entries.pop(slice_name("credit", "region", "west"))
        entries[SLICE_PREFIX + "not json"] = blob
        with pytest.raises(StateFormatError, match="not a slice's key"):
            PartitionDetectors.restore(_settings(), "in", 0, entries)
