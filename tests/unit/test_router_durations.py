"""Prometheus durations: parsing, formatting and the config field type."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from detector.core.durations import (
    MAX_MS,
    Duration,
    DurationError,
    format_duration,
    parse_duration,
)

S = 1000
M = 60 * S
H = 60 * M
D = 24 * H


class TestParseDuration:
    @pytest.mark.parametrize(
        ("text", "ms"),
        [
            ("0", 0),
            ("0s", 0),
            ("500ms", 500),
            ("90s", 90 * S),
            ("5m", 5 * M),
            ("4h", 4 * H),
            ("1h30m", H + 30 * M),
            ("2d", 2 * D),
            ("1w", 7 * D),
            ("1y", 365 * D),
            ("1y2w3d4h5m6s7ms", 365 * D + 14 * D + 3 * D + 4 * H + 5 * M + 6 * S + 7),
        ],
    )
    def test_valid(self, text: str, ms: int) -> None:
        """Units y w d h m s ms, largest first, add up to milliseconds."""
        assert parse_duration(text) == ms

    @pytest.mark.parametrize(
        "text",
        ["", "5", "5x", "1m1h", "1h1h", "-1s", "1.5h", " 5m", "5m ", "5 m", "1H", "1ms1s", "300y"],
    )
    def test_invalid(self, text: str) -> None:
        """Anything else (no unit, wrong order, signs, fractions, spaces, overflow) is refused."""
        with pytest.raises(DurationError, match=r"^expected "):
            parse_duration(text)

    def test_error_is_a_value_error(self) -> None:
        """DurationError is a ValueError, so callers may catch either."""
        assert issubclass(DurationError, ValueError)


class TestFormatDuration:
    @pytest.mark.parametrize(
        ("ms", "text"),
        [
            (0, "0s"),
            (500, "500ms"),
            (90 * S, "1m30s"),
            (H + 30 * M, "1h30m"),
            (90 * D, "90d"),
            (14 * D, "2w"),
            (365 * D, "1y"),
            (D + 1, "1d1ms"),
        ],
    )
    def test_examples(self, ms: int, text: str) -> None:
        """Prometheus's form: years and weeks only when exact (90d, not 12w6d)."""
        assert format_duration(ms) == text

    @given(st.integers(min_value=0, max_value=MAX_MS))
    def test_round_trip(self, ms: int) -> None:
        """parse_duration reads back what format_duration writes."""
        assert parse_duration(format_duration(ms)) == ms

    def test_negative(self) -> None:
        """A negative duration cannot be formatted."""
        with pytest.raises(ValueError):
            format_duration(-1)


class _Model(BaseModel):
    wait: Duration


class TestDurationField:
    def test_string_becomes_milliseconds(self) -> None:
        """A config string becomes milliseconds, and dumps back as a duration string."""
        model = _Model.model_validate({"wait": "1h30m"})
        assert model.wait == H + 30 * M
        assert model.model_dump() == {"wait": "1h30m"}

    @pytest.mark.parametrize("value", [30, 1.5, True, None, ["5m"]])
    def test_numbers_rejected(self, value: object) -> None:
        """Bare numbers (seconds? minutes?) and other types are refused with an example."""
        with pytest.raises(ValidationError, match="expected a duration such as 30s, 5m, 4h"):
            _Model.model_validate({"wait": value})

    def test_bare_zero_accepted(self) -> None:
        """YAML's bare 0 is zero, as Alertmanager reads it."""
        assert _Model.model_validate({"wait": 0}).wait == 0

    def test_bad_string(self) -> None:
        """A malformed string fails with the expected syntax."""
        with pytest.raises(ValidationError, match="largest first"):
            _Model.model_validate({"wait": "1m1h"})
