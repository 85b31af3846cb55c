"""Prediction event v1 (schemas/prediction-event.v1.json): parsing and validation.

``parse_event`` turns one message value into a :class:`PredictionEvent` or raises
:class:`InvalidEvent` with a stable reason code. It never raises anything else on data.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
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


@dataclass(slots=True)
class PredictionEvent:
    event_id: str
    model: str
    model_version: str | None
    timestamp_ms: int
    features: dict[str, FeatureValue]
    prediction: Prediction
    label: Any = None
    segment: dict[str, str] | None = None


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
    float rounding), in [0, MAX_EPOCH_MS) either way. The one rule for both paths: the
    reference parser and the compiled loop call it.
    """
    if type(value) is int and 0 <= value < MAX_EPOCH_MS:
        return value
    if type(value) is str:
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
    if isinstance(value, bool):
        raise InvalidEvent("wrong_type", "timestamp must be an RFC 3339 string or epoch ms")
    if isinstance(value, int | float):
        if not math.isfinite(value) or not 0 <= value < MAX_EPOCH_MS:
            raise InvalidEvent("bad_timestamp", f"epoch milliseconds out of range: {value!r}")
        return int(value)
    raise InvalidEvent("wrong_type", "timestamp must be an RFC 3339 string or epoch ms")


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


def _required_str(doc: dict[str, Any], key: str) -> str:
    if key not in doc:
        raise InvalidEvent("missing_field", f"required field {key!r} is missing")
    value = doc[key]
    if not isinstance(value, str) or not value:
        raise InvalidEvent("wrong_type", f"{key!r} must be a non-empty string")
    return value


_FEATURE_TYPES = frozenset((float, int, str, bool, type(None)))


def _check_prediction(value: Any) -> Prediction:
    if type(value) is float or isinstance(value, str | int):
        return value
    if isinstance(value, dict) and value:
        for name, prob in value.items():
            if type(prob) not in (float, int):
                raise InvalidEvent(
                    "wrong_type", f"prediction class {name[:64]!r} must map to a number"
                )
        return value
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
    """Validate a decoded event; the first problem found, in this order, is the reason."""
    if not isinstance(doc, dict):
        raise InvalidEvent("not_object", f"top level is a JSON {type(doc).__name__}, not an object")
    if "schema_version" in doc:
        check_schema_version(doc["schema_version"])
    event_id = _required_str(doc, "event_id")
    model = _required_str(doc, "model")
    model_version = doc.get("model_version")
    if model_version is not None and not isinstance(model_version, str):
        raise InvalidEvent("wrong_type", "'model_version' must be a string")
    if "timestamp" not in doc:
        raise InvalidEvent("missing_field", "required field 'timestamp' is missing")
    ts = timestamp_ms(doc["timestamp"])
    features = doc.get("features")
    if features is None and "features" not in doc:
        raise InvalidEvent("missing_field", "required field 'features' is missing")
    if not isinstance(features, dict):
        raise InvalidEvent("wrong_type", "'features' must be an object")
    if check_features:
        check_feature_types(features)
    if "prediction" not in doc:
        raise InvalidEvent("missing_field", "required field 'prediction' is missing")
    prediction = _check_prediction(doc["prediction"])
    segment = doc.get("segment")
    if segment is not None:
        check_segment(segment)
    return PredictionEvent(
        event_id=event_id,
        model=model,
        model_version=model_version,
        timestamp_ms=ts,
        features=features,
        prediction=prediction,
        label=doc.get("label"),
        segment=segment,
    )
