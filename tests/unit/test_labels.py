"""Label events, the label join (pending predictions as partition state) and performance
drift on delayed labels."""

from __future__ import annotations

import orjson
import pytest
from label_support import DelayedStream, Fed, feed, join_settings, merged, positions

from detector.core.engine import PartitionDetectors
from detector.core.events import InvalidEvent
from detector.core.labels import (
    EARLY,
    LABELLED,
    WAITING,
    JoinStateError,
    LabelEvent,
    LabelJoin,
    parse_label,
)
from detector.core.settings import LabelSettings
from detector.core.state import StateFormatError


def _label(event_id: str, label: object = 1, ts: int = 1000, model: str = "m") -> bytes:
    return orjson.dumps({"event_id": event_id, "model": model, "label": label, "timestamp": ts})


class TestParseLabel:
    def test_valid(self) -> None:
        label = parse_label(
            b'{"event_id":"e1","model":"m","label":true,"timestamp":"2026-01-01T00:00:00Z",'
            b'"segment":{"region":"eu"},"extra":1}'
        )
        assert (label.event_id, label.model, label.label) == ("e1", "m", True)
        assert label.timestamp_ms == 1_767_225_600_000
        assert label.segment == {"region": "eu"}

    @pytest.mark.parametrize(
        ("raw", "reason"),
        [
            (b"", "empty"),
            (b"{", "not_json"),
            (b"[]", "not_object"),
            (b'{"model":"m","label":1,"timestamp":1}', "missing_field"),
            (b'{"event_id":"e","model":"m","timestamp":1}', "missing_field"),
            (b'{"event_id":"e","model":"m","label":null,"timestamp":1}', "wrong_type"),
            (b'{"event_id":"e","model":"m","label":[1],"timestamp":1}', "wrong_type"),
            (b'{"event_id":"e","model":"m","label":1}', "missing_field"),
            (b'{"event_id":"e","model":"m","label":1,"timestamp":"soon"}', "bad_timestamp"),
            (
                b'{"event_id":"e","model":"m","label":1,"timestamp":1,"schema_version":2}',
                "unknown_schema_version",
            ),
        ],
    )
    def test_invalid(self, raw: bytes, reason: str) -> None:
        with pytest.raises(InvalidEvent) as caught:
            parse_label(raw)
        assert caught.value.reason == reason


def _join(**settings: object) -> LabelJoin:
    return LabelJoin(LabelSettings(join=True, **settings))  # type: ignore[arg-type]


def _entry_states(join: LabelJoin) -> dict[str, int]:
    return {key[1]: entry[0] for chunk in join.chunks.values() for key, entry in chunk.items()}


class TestLabelJoin:
    def test_label_after_prediction_joins(self) -> None:
        join = _join()
        assert join.prediction("m", "e1", 7, 1000, "v2", 0.8, None) is None
        joined = join.label(LabelEvent("e1", "m", 1, 61_000), 3)
        assert joined is not None
        assert (joined.prediction, joined.label, joined.offset, joined.model_version) == (
            0.8,
            1,
            7,
            "v2",
        )
        assert (joined.label_offset, joined.label_ms - joined.prediction_ms) == (3, 60_000)
        assert _entry_states(join) == {"e1": LABELLED}
        assert join.take_outcomes() == {("m", "joined"): 1}

    def test_label_before_prediction_waits_for_it(self) -> None:
        join = _join()
        assert join.label(LabelEvent("e1", "m", 0, 900), 5) is None
        assert _entry_states(join) == {"e1": EARLY}
        joined = join.prediction("m", "e1", 9, 1000, None, 0.2, None)
        assert joined is not None and (joined.label, joined.label_offset) == (0, 5)
        assert join.take_outcomes() == {("m", "joined"): 1}

    def test_duplicates_are_counted_and_ignored(self) -> None:
        join = _join()
        join.prediction("m", "e1", 1, 1000, None, 0.8, None)
        assert join.label(LabelEvent("e1", "m", 1, 2000), 1) is not None
        assert join.label(LabelEvent("e1", "m", 0, 3000), 2) is None  # first label wins
        assert join.prediction("m", "e1", 2, 4000, None, 0.8, None) is None
        assert join.take_outcomes() == {
            ("m", "joined"): 1,
            ("m", "duplicate"): 1,
            ("m", "duplicate_prediction"): 1,
        }

    def test_inline_label_joins_at_once_and_marks_the_prediction(self) -> None:
        join = _join()
        joined = join.prediction("m", "e1", 1, 1000, None, 0.8, 1)
        assert joined is not None and joined.label_offset is None
        assert join.label(LabelEvent("e1", "m", 0, 2000), 4) is None
        assert join.take_outcomes() == {("m", "inline"): 1, ("m", "duplicate"): 1}

    def test_entries_expire_after_the_horizon_in_event_time(self) -> None:
        """A label for an event never seen expires as unknown; predictions expire with or
        without their label (the label coverage)."""
        join = _join(horizon="10s")
        join.prediction("m", "a", 0, 1000, None, 0.1, None)
        join.prediction("m", "b", 1, 2000, None, 0.1, None)
        join.label(LabelEvent("a", "m", 0, 3000), 0)
        join.label(LabelEvent("ghost", "m", 0, 3000), 1)
        join.prediction("m", "c", 2, 13_500, None, 0.1, None)  # watermark 13.5 s
        assert join.expire() == 3
        assert _entry_states(join) == {"c": WAITING}
        assert join.take_outcomes() == {
            ("m", "joined"): 1,
            ("m", "expired_labelled"): 1,
            ("m", "expired_unlabelled"): 1,
            ("m", "unknown"): 1,
        }

    def test_beyond_max_pending_the_oldest_are_evicted(self) -> None:
        join = _join(max_pending=200)
        for i in range(201):
            join.prediction("m", f"e{i}", i, 1000 + i, None, 0.5, None)
        assert len(join) == 198  # down to 99 % of the bound
        assert sorted(_entry_states(join)) == sorted(f"e{i}" for i in range(3, 201))
        assert join.take_outcomes() == {("m", "expired_unlabelled"): 3, ("m", "evicted"): 3}

    def test_snapshot_restore_round_trip(self) -> None:
        join = _join()
        for i in range(5000):
            join.prediction("m", f"e{i}", i, 1000 + i, "v1", {"0": 0.3, "1": 0.7}, None)
        join.label(LabelEvent("e7", "m", 1, 9000), 0)
        join.label(LabelEvent("early", "m", True, 9000), 1)
        entries = {k: v for k, v in join.snapshot().items() if v is not None}
        assert sorted(entries) == ["\x00labels/0", "\x00labels/1", "\x00labels/meta"]
        again = LabelJoin.restore(LabelSettings(join=True), entries)
        assert again.chunks == join.chunks and again.where == join.where
        assert (again.next_seq, again.watermark_ms, again.operations) == (
            join.next_seq,
            join.watermark_ms,
            join.operations,
        )
        assert join.snapshot() == {}  # nothing changed since

    @pytest.mark.parametrize(
        "blob",
        [
            b"not json",
            b'{"format":2,"entries":[]}',
            b'{"format":1,"entries":[["m","e",0,5000,0,0,null,0.1]]}',  # seq out of chunk
            b'{"format":1,"entries":[["m","e",7,0,0,0,null,0.1]]}',  # unknown state
            b'{"format":1,"entries":[["m","e",0,0,0,0,null,[1]]]}',  # not a prediction
        ],
    )
    def test_corrupt_state_is_refused(self, blob: bytes) -> None:
        meta = orjson.dumps({"format": 1, "next_seq": 10, "watermark_ms": 0, "operations": 0})
        with pytest.raises(JoinStateError):
            LabelJoin.restore(
                LabelSettings(join=True), {"\x00labels/meta": meta, "\x00labels/0": blob}
            )


EXPECTED = [(6375, 5695, "performance")]  # change at prediction 6000
OUTCOMES = {
    ("credit", "expired_labelled"): 7450,
    ("credit", "expired_unlabelled"): 842,
    ("credit", "joined"): 10782,
}


class TestDelayedLabels:
    """12,000 predictions a second apart, error rate 10 % then 40 % from prediction 6000,
    labels after an exponential lag (mean 60 s), 10 % never labelled, horizon 1 h."""

    def _core(self) -> PartitionDetectors:
        return PartitionDetectors(join_settings(horizon="1h"), "predictions", 0)

    def test_detection_position_and_outcomes(self) -> None:
        fed = feed(self._core(), merged(DelayedStream()))
        assert positions(fed.detections) == EXPECTED
        detection = fed.detections[0]
        assert detection.event_id == "p6375"
        assert detection.label == {
            "topic": "labels",
            "partition": 0,
            "offset": 5695,
            "timestamp_ms": detection.detected_at_ms,
        }
        assert fed.outcomes == OUTCOMES
        coverage = OUTCOMES[("credit", "expired_labelled")] / (
            OUTCOMES[("credit", "expired_labelled")] + OUTCOMES[("credit", "expired_unlabelled")]
        )
        assert round(coverage, 3) == 0.898  # 10 % never labelled
        assert len(fed.delays) == 10_782 and round(sum(fed.delays) / len(fed.delays)) == 61

    @pytest.mark.parametrize("cut", [2000, 9000, 13_000, 20_000])
    def test_restart_with_pending_predictions_changes_nothing(self, cut: int) -> None:
        """Snapshot (pending predictions included), restore, continue: same detections and
        the same outcomes as without the restart."""
        records = merged(DelayedStream())
        first = self._core()
        fed = feed(first, records[:cut])
        assert len(first.join) > 0  # type: ignore[arg-type]
        entries = {k: v for k, v in first.snapshot().items() if v is not None}
        second = PartitionDetectors.restore(join_settings(horizon="1h"), "predictions", 0, entries)
        fed = feed(second, records[cut:], fed)
        assert positions(fed.detections) == EXPECTED
        assert fed.outcomes == OUTCOMES

    def test_batching_does_not_matter(self) -> None:
        records = merged(DelayedStream())
        core = self._core()
        fed = Fed()
        for start in range(0, len(records), 777):
            feed(core, records[start : start + 777], fed)
        assert positions(fed.detections) == EXPECTED and fed.outcomes == OUTCOMES

    def test_stationary_error_rate_with_delayed_labels_is_quiet(self) -> None:
        stream = DelayedStream(n=40_000, after=0.1, seed=12)
        assert feed(self._core(), merged(stream)).detections == []

    def test_bad_labels_are_rejected_with_their_coordinates(self) -> None:
        core = self._core()
        result = core.process_labels([4, 5], [b"{", _label("e1", model="m")])
        assert [(r.record.topic, r.record.offset, r.reason) for r in result.rejections] == [
            ("labels", 4, "not_json")
        ]
        assert result.label_outcomes == {}  # the good one waits for its prediction

    def test_model_names_cannot_take_the_join_keys(self) -> None:
        core = self._core()
        event = {
            "event_id": "e",
            "model": "\x00labels/meta",
            "timestamp": 1,
            "features": {},
            "prediction": 0.5,
        }
        result = core.process_batch([0], [orjson.dumps(event)])
        assert [r.reason for r in result.rejections] == ["wrong_type"]

    def test_corrupt_join_state_stops_the_restore(self) -> None:
        with pytest.raises(StateFormatError):
            PartitionDetectors.restore(join_settings(), "predictions", 0, {"\x00labels/0": b"[]"})
