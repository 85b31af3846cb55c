"""Prediction event v1 (schemas/prediction-event.v1.json): parsing and validation.

``parse_event`` turns one message value into a :class:`PredictionEvent` or raises
:class:`InvalidEvent` with a stable reason code. It never raises anything else on data.
Every event the sidecar reads goes through it; it is compiled (Cython's pure-Python mode,
C types in ``events.pxd``), and runs as plain Python too.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

SCHEMA_VERSION = 1

#: Dead-letter reason codes (stable; used as metric labels and in the DLQ ``reason`` header).
REASONS = (
    "empty",
    "oversized",
    "not_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "unknown_schema_version",
    "non_finite",
    "number_out_of_range",
    "bad_timestamp",
    "feature_type_changed",
    "too_many_models",
    "too_many_features",
)

FeatureValue = float | int | str | bool | None
Prediction = float | int | str | dict[str, float]


class InvalidEvent(Exception):
    """The message is not a valid prediction event. ``reason`` is one of REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class PredictionEvent:
    """A valid prediction event (the fields of schemas/prediction-event.v1.json)."""

    event_id: str
    model: str
    model_version: str | None
    timestamp_ms: int
    features: dict[str, FeatureValue]
    prediction: Prediction
    label: Any
    segment: dict[str, str] | None

    def __init__(
        self,
        event_id: str,
        model: str,
        model_version: str | None,
        timestamp_ms: int,
        features: dict[str, FeatureValue],
        prediction: Prediction,
        label: Any = None,
        segment: dict[str, str] | None = None,
    ) -> None:
        self.event_id = event_id
        self.model = model
        self.model_version = model_version
        self.timestamp_ms = timestamp_ms
        self.features = features
        self.prediction = prediction
        self.label = label
        self.segment = segment

    def _fields(self) -> tuple[Any, ...]:
        return (
            self.event_id,
            self.model,
            self.model_version,
            self.timestamp_ms,
            self.features,
            self.prediction,
            self.label,
            self.segment,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PredictionEvent):
            return NotImplemented
        return self._fields() == other._fields()

    def __repr__(self) -> str:
        names = ("event_id", "model", "model_version", "timestamp_ms", "features")
        shown = ", ".join(f"{n}={v!r}" for n, v in zip(names, self._fields(), strict=False))
        return f"PredictionEvent({shown}, ...)"


class _NonFinite(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NonFinite(name)


def _checked_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise OverflowError(text)
    return value


def _diagnose(raw: bytes, error: str) -> InvalidEvent:
    """orjson refused the bytes: say why, telling NaN/Infinity and overflow apart.

    JSON is UTF-8 here: the bytes are decoded strictly first (the standard library's
    json.loads would otherwise guess UTF-16/32 and skip a byte-order mark)."""
    try:
        text = raw.decode("utf-8")
        json.loads(text, parse_constant=_reject_constant, parse_float=_checked_float)
    except _NonFinite as exc:
        return InvalidEvent("non_finite", f"JSON contains {exc.args[0]}, which is not a number")
    except OverflowError as exc:
        return InvalidEvent("number_out_of_range", f"number {exc.args[0][:40]} overflows a double")
    except (ValueError, UnicodeDecodeError) as exc:
        return InvalidEvent("not_json", f"not valid JSON: {str(exc)[:200]}")
    # Accepted by the standard library only (a lone surrogate escape, for instance).
    return InvalidEvent("not_json", f"not valid JSON: {error[:200]}")


#: Event times are from the epoch (0) up to, not including, 10000-01-01T00:00:00Z.
MAX_EPOCH_MS = 253402300800000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def timestamp_ms(value: Any) -> int:
    """An event's ``timestamp`` as epoch milliseconds, or InvalidEvent.

    Epoch milliseconds (an int, or a float, truncated) or an RFC 3339 string with an
    offset (``Z`` or ``+02:00``; fractions below a millisecond are dropped, exactly: no
    float rounding), in [0, MAX_EPOCH_MS) either way. What is accepted is what
    ``datetime.fromisoformat`` accepts, with an offset: the RFC 3339 form every producer
    writes is read by :func:`rfc3339_ms` (about 30 times cheaper); any other string by
    ``fromisoformat`` (tests hold the two to the same results).
    """
    if type(value) is int and 0 <= value < MAX_EPOCH_MS:
        return value
    if type(value) is str:
        ms = rfc3339_ms(value)
        if ms >= 0:
            return ms
        return _isoformat_ms(value)
    if isinstance(value, bool):
        raise InvalidEvent("wrong_type", "timestamp must be an RFC 3339 string or epoch ms")
    if isinstance(value, int | float):
        if not math.isfinite(value) or not 0 <= value < MAX_EPOCH_MS:
            raise InvalidEvent("bad_timestamp", f"epoch milliseconds out of range: {value!r}")
        return int(value)
    raise InvalidEvent("wrong_type", "timestamp must be an RFC 3339 string or epoch ms")


def _isoformat_ms(value: str) -> int:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEvent("bad_timestamp", f"not an RFC 3339 time: {value[:64]!r}") from None
    if moment.tzinfo is None:
        raise InvalidEvent("bad_timestamp", f"RFC 3339 time lacks an offset: {value[:64]!r}")
    since = moment - _EPOCH  # exact: days, seconds and microseconds
    ms = since.days * 86_400_000 + since.seconds * 1000 + since.microseconds // 1000
    if 0 <= ms < MAX_EPOCH_MS:
        return ms
    raise InvalidEvent("bad_timestamp", f"RFC 3339 time out of range: {value[:64]!r}")


def _digits(text: str, start: int, count: int) -> int:
    """The number written by ``count`` ASCII digits at ``start``; -1 if any is not one."""
    number = 0
    for i in range(start, start + count):
        c = ord(text[i]) - 48
        if c < 0 or c > 9:
            return -1
        number = number * 10 + c
    return number


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a proleptic Gregorian date (year >= 1)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _month_days(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def rfc3339_ms(text: str) -> int:
    """Epoch milliseconds of ``YYYY-MM-DDTHH:MM:SS[.digits](Z|+HH:MM|-HH:MM)`` (RFC 3339,
    upper-case ``T`` and ``Z``), exactly as ``datetime.fromisoformat`` and the arithmetic
    of :func:`timestamp_ms` give them; -1 for any other string and for a time outside
    [0, MAX_EPOCH_MS) (``fromisoformat`` then decides, and words the error)."""
    n = len(text)
    if n < 20 or text[4] != "-" or text[7] != "-" or text[10] != "T":
        return -1
    if text[13] != ":" or text[16] != ":":
        return -1
    year = _digits(text, 0, 4)
    month = _digits(text, 5, 2)
    day = _digits(text, 8, 2)
    hour = _digits(text, 11, 2)
    minute = _digits(text, 14, 2)
    second = _digits(text, 17, 2)
    if year < 1 or month < 1 or month > 12 or day < 1 or day > _month_days(year, month):
        return -1
    if hour < 0 or hour > 23 or minute < 0 or minute > 59 or second < 0 or second > 59:
        return -1
    pos = 19
    millis = 0
    if text[pos] == ".":
        pos += 1
        first = pos
        while pos < n and 48 <= ord(text[pos]) <= 57:
            if pos - first < 3:
                millis = millis * 10 + ord(text[pos]) - 48
            pos += 1
        if pos == first:
            return -1
        for _ in range(pos - first, 3):
            millis *= 10
    if pos >= n:
        return -1
    offset = 0
    if text[pos] == "Z":
        pos += 1
    elif text[pos] == "+" or text[pos] == "-":
        if pos + 6 != n or text[pos + 3] != ":":
            return -1
        off_hour = _digits(text, pos + 1, 2)
        off_minute = _digits(text, pos + 4, 2)
        if off_hour < 0 or off_hour > 23 or off_minute < 0 or off_minute > 59:
            return -1
        offset = off_hour * 60 + off_minute
        if text[pos] == "-":
            offset = -offset
        pos += 6
    else:
        return -1
    if pos != n:
        return -1
    seconds = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
    ms = (seconds - offset * 60) * 1000 + millis
    if ms < 0 or ms >= MAX_EPOCH_MS:
        return -1
    return ms


def check_schema_version(version: Any) -> None:
    """``schema_version`` (when the event has one) must be 1; else InvalidEvent."""
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise InvalidEvent("unknown_schema_version", f"schema_version {version!r} is not 1")


def check_segment(segment: Any) -> None:
    """``segment`` (when the event has one, and not null) must be an object of strings;
    else InvalidEvent. Its value is not used by detection today."""
    if isinstance(segment, dict):
        for value in segment.values():
            if not isinstance(value, str):
                break
        else:
            return
    raise InvalidEvent("wrong_type", "'segment' must be an object of strings")


#: An absent field (event_of).
MISSING: Any = object()
#: An event's ``features`` when the engine read them from its bytes itself (event_of).
READ: Any = object()
_MISSING = MISSING  # compiled: C constants (events.pxd)
_READ = READ


def required_str(doc: dict[str, Any], key: str) -> str:
    """``doc[key]``, a non-empty string (events and labels alike), or InvalidEvent."""
    return _required(doc.get(key, _MISSING), key)


def _required(value: Any, key: str) -> str:
    if value is _MISSING:
        raise InvalidEvent("missing_field", f"required field {key!r} is missing")
    if not isinstance(value, str) or not value:
        raise InvalidEvent("wrong_type", f"{key!r} must be a non-empty string")
    return value


_FEATURE_TYPES = frozenset((float, int, str, bool, type(None)))


def _check_prediction(value: Any) -> None:
    if type(value) is float or isinstance(value, str | int):
        return
    if isinstance(value, dict) and value:
        for name, prob in value.items():
            if type(prob) is not float and type(prob) is not int:
                raise InvalidEvent(
                    "wrong_type", f"prediction class {name[:64]!r} must map to a number"
                )
        return
    raise InvalidEvent(
        "wrong_type", "prediction must be a number, a string or an object of class probabilities"
    )


def check_feature_types(features: dict[str, Any]) -> None:
    """Raise InvalidEvent unless every feature value is a number, string, boolean or null."""
    if not _FEATURE_TYPES.issuperset(map(type, features.values())):
        for name, item in features.items():
            if type(item) not in _FEATURE_TYPES:
                raise InvalidEvent(
                    "wrong_type",
                    f"feature {name[:64]!r} must be a number, string, boolean or null",
                )


def parse_event(
    value: bytes | None, max_bytes: int = 1_048_576, *, check_features: bool = True
) -> PredictionEvent:
    """Parse and validate one message value. Raises InvalidEvent, nothing else.

    ``check_features=False`` skips the feature value type check, for callers that do it
    themselves (the engine does it once per distinct feature-type signature).
    """
    if not value:
        raise InvalidEvent("empty", "message has no value")
    if len(value) > max_bytes:
        raise InvalidEvent("oversized", f"{len(value)} bytes exceeds the limit of {max_bytes}")
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise _diagnose(value, str(exc)) from None
    return _parse_doc(doc, check_features)


def _parse_doc(doc: Any, check_features: bool) -> PredictionEvent:
    """Validate a decoded event (see :func:`event_of`)."""
    if not isinstance(doc, dict):
        raise InvalidEvent("not_object", f"top level is a JSON {type(doc).__name__}, not an object")
    fields: dict[str, Any] = doc  # compiled: a dict's own lookups, no method calls
    return event_of(
        fields.get("schema_version", _MISSING),
        fields.get("event_id", _MISSING),
        fields.get("model", _MISSING),
        fields.get("model_version"),
        fields.get("timestamp", _MISSING),
        fields.get("features", _MISSING),
        fields.get("prediction", _MISSING),
        fields.get("label"),
        fields.get("segment"),
        check_features,
    )


def event_of(
    version: Any,
    event_id: Any,
    model: Any,
    model_version: Any,
    stamp: Any,
    features: Any,
    prediction: Any,
    label: Any,
    segment: Any,
    check_features: bool,
) -> PredictionEvent:
    """An event from its top-level fields' values (MISSING for an absent field; None for
    an absent ``model_version``, ``label`` or ``segment``), or InvalidEvent: the first
    problem found, in this order, is the reason. The engine's reader of event bytes
    (:meth:`detector.core.engine.PartitionDetectors._scan`) passes ``features=READ``: it
    has read and checked them itself, into the model's layout."""
    if version is not _MISSING:
        check_schema_version(version)
    event_id = _required(event_id, "event_id")
    model = _required(model, "model")
    if model_version is not None and not isinstance(model_version, str):
        raise InvalidEvent("wrong_type", "'model_version' must be a string")
    if stamp is _MISSING:
        raise InvalidEvent("missing_field", "required field 'timestamp' is missing")
    ts = timestamp_ms(stamp)
    if features is _MISSING:
        raise InvalidEvent("missing_field", "required field 'features' is missing")
    if features is not _READ:
        if not isinstance(features, dict):
            raise InvalidEvent("wrong_type", "'features' must be an object")
        if check_features:
            check_feature_types(features)
    if prediction is _MISSING:
        raise InvalidEvent("missing_field", "required field 'prediction' is missing")
    _check_prediction(prediction)
    if segment is not None:
        check_segment(segment)
    event = PredictionEvent.__new__(PredictionEvent)  # compiled: no argument parsing
    event.event_id = event_id
    event.model = model
    event.model_version = model_version
    event.timestamp_ms = ts
    event.features = features
    event.prediction = prediction
    event.label = label
    event.segment = segment
    return event
