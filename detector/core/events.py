"""Prediction event v1 (schemas/prediction-event.v1.json): parsing and validation.

``parse_event`` turns one message value into a :class:`PredictionEvent` or raises
:class:`InvalidEvent` with a stable reason code. It never raises anything else on data.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
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


def _timestamp_ms(value: Any) -> int:
    if type(value) is int and 0 <= value < 253402300800000:
        return value
    if isinstance(value, bool):
        raise InvalidEvent("wrong_type", "timestamp must be an RFC 3339 string or epoch ms")
    if isinstance(value, int | float):
        if not math.isfinite(value) or not 0 <= value < 253402300800000:
            raise InvalidEvent("bad_timestamp", f"epoch milliseconds out of range: {value!r}")
        return int(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidEvent("bad_timestamp", f"not an RFC 3339 time: {value[:64]!r}") from None
        if moment.tzinfo is None:
            raise InvalidEvent("bad_timestamp", f"RFC 3339 time lacks an offset: {value[:64]!r}")
        return int(moment.timestamp() * 1000)
    raise InvalidEvent("wrong_type", "timestamp must be an RFC 3339 string or epoch ms")


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


_MAX_EPOCH_MS = 253402300800000  # 10000-01-01


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
    # Fast path: the usual well-formed shape, recognised with exact type tests. Anything
    # else takes the full path below, which says precisely what is wrong.
    if type(doc) is dict and "schema_version" not in doc and "segment" not in doc:
        event_id = doc.get("event_id")
        model = doc.get("model")
        timestamp = doc.get("timestamp")
        features = doc.get("features")
        prediction = doc.get("prediction")
        model_version = doc.get("model_version")
        if (
            type(event_id) is str
            and event_id
            and type(model) is str
            and model
            and type(timestamp) is int
            and 0 <= timestamp < _MAX_EPOCH_MS
            and type(features) is dict
            and (type(prediction) is float or type(prediction) is str)
            and (model_version is None or type(model_version) is str)
        ):
            if check_features:
                check_feature_types(features)
            return PredictionEvent(
                event_id, model, model_version, timestamp, features, prediction, doc.get("label")
            )
    return _parse_slow(doc, check_features)


def _parse_slow(doc: Any, check_features: bool) -> PredictionEvent:
    if not isinstance(doc, dict):
        raise InvalidEvent("not_object", f"top level is a JSON {type(doc).__name__}, not an object")
    version = doc.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise InvalidEvent("unknown_schema_version", f"schema_version {version!r} is not 1")
    event_id = _required_str(doc, "event_id")
    model = _required_str(doc, "model")
    model_version = doc.get("model_version")
    if model_version is not None and not isinstance(model_version, str):
        raise InvalidEvent("wrong_type", "'model_version' must be a string")
    if "timestamp" not in doc:
        raise InvalidEvent("missing_field", "required field 'timestamp' is missing")
    timestamp_ms = _timestamp_ms(doc["timestamp"])
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
    if segment is not None and (
        not isinstance(segment, dict) or not all(isinstance(v, str) for v in segment.values())
    ):
        raise InvalidEvent("wrong_type", "'segment' must be an object of strings")
    return PredictionEvent(
        event_id=event_id,
        model=model,
        model_version=model_version,
        timestamp_ms=timestamp_ms,
        features=features,
        prediction=prediction,
        label=doc.get("label"),
        segment=segment,
    )
