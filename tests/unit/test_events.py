"""Parsing and validation of prediction events."""

from __future__ import annotations

import pytest

from detector.core.events import InvalidEvent, parse_event

GOOD = (
    b'{"event_id":"e1","model":"fraud","model_version":"3","timestamp":1767225600000,'
    b'"features":{"amount":12.5,"country":"DE","vip":true,"age":null},"prediction":0.91}'
)


class TestParseEvent:
    def test_valid_event(self) -> None:
        """A valid event keeps its fields; epoch-ms timestamps pass through."""
        event = parse_event(GOOD)
        assert event.event_id == "e1"
        assert event.model == "fraud"
        assert event.model_version == "3"
        assert event.timestamp_ms == 1767225600000
        assert event.features == {"amount": 12.5, "country": "DE", "vip": True, "age": None}
        assert event.prediction == 0.91
        assert event.label is None

    def test_rfc3339_timestamp(self) -> None:
        """RFC 3339 times with an offset become epoch milliseconds."""
        raw = GOOD.replace(b"1767225600000", b'"2026-01-01T01:00:00.250+01:00"')
        assert parse_event(raw).timestamp_ms == 1767225600250

    def test_class_probabilities(self) -> None:
        """A prediction may be an object of class probabilities."""
        raw = GOOD.replace(b'"prediction":0.91', b'"prediction":{"fraud":0.2,"ok":0.8}')
        assert parse_event(raw).prediction == {"fraud": 0.2, "ok": 0.8}

    @pytest.mark.parametrize(
        ("raw", "reason"),
        [
            (b"", "empty"),
            (None, "empty"),
            (b"\xff\xfe garbage", "not_json"),
            (b"{not json", "not_json"),
            (b"[1, 2]", "not_object"),
            (b'"a string"', "not_object"),
            (GOOD.replace(b'"event_id":"e1",', b""), "missing_field"),
            (GOOD.replace(b'"model":"fraud",', b""), "missing_field"),
            (GOOD.replace(b'"timestamp":1767225600000,', b""), "missing_field"),
            (GOOD.replace(b',"prediction":0.91', b""), "missing_field"),
            (GOOD.replace(b'"model":"fraud"', b'"model":7'), "wrong_type"),
            (GOOD.replace(b'"amount":12.5', b'"amount":[1]'), "wrong_type"),
            (GOOD.replace(b'"prediction":0.91', b'"prediction":[0.91]'), "wrong_type"),
            (
                GOOD.replace(b'{"event_id"', b'{"schema_version":2,"event_id"'),
                "unknown_schema_version",
            ),
            (GOOD.replace(b"12.5", b"NaN"), "non_finite"),
            (GOOD.replace(b"12.5", b"-Infinity"), "non_finite"),
            (GOOD.replace(b"12.5", b"1e400"), "number_out_of_range"),
            (GOOD.replace(b"1767225600000", b'"yesterday"'), "bad_timestamp"),
            (GOOD.replace(b"1767225600000", b'"2026-01-01T00:00:00"'), "bad_timestamp"),
            (GOOD.replace(b"1767225600000", b"-5"), "bad_timestamp"),
        ],
    )
    def test_rejections(self, raw: bytes | None, reason: str) -> None:
        """Each kind of bad input is rejected with its own stable reason code."""
        with pytest.raises(InvalidEvent) as info:
            parse_event(raw)
        assert info.value.reason == reason

    def test_oversized(self) -> None:
        """A message over the size limit is rejected before it is parsed."""
        with pytest.raises(InvalidEvent) as info:
            parse_event(GOOD, max_bytes=100)
        assert info.value.reason == "oversized"
        assert str(len(GOOD)) in info.value.detail

    @pytest.mark.parametrize("raw", [b"1\x00", b"\x001", b"\xef\xbb\xbf{}", b'"\\ud800"'])
    def test_non_utf8_lookalikes_are_not_json(self, raw: bytes) -> None:
        """Bytes that only a UTF-16/32 guess or a lenient parser would read are not_json,
        never misreported as a number out of range."""
        with pytest.raises(InvalidEvent) as info:
            parse_event(raw)
        assert info.value.reason == "not_json"
