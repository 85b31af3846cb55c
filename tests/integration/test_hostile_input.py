"""Hostile input, property-based: whatever arrives, the sidecar stays up, every bad message
lands on the dead-letter topic unchanged with the right reason, and every good one is
processed. Counts are exact.

One sidecar process per test; hypothesis feeds it several examples, each one a consecutive
range of offsets of the same single-partition input topic. The expected reason of each bad
message comes from how it was generated (see ``Item``), not from the product, except for
arbitrary JSON objects, which are classified with ``parse_event`` as the issue suggests.

The stream starts with a primer event per model that fixes every feature's kind, so a later
value of another kind is a ``feature_type_changed`` whatever else was generated. Generated
valid events keep every feature's kind and stay within one hour of event time (far below
``feature_ttl_s``), so no feature expires and no limit is reached: validity never depends
on the history.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from support import (
    BASE_TS_MS,
    SidecarProcess,
    by_label,
    config_with_server,
    scrape,
    settings_for,
    wait_checkpointed,
)

from detector.broker import free_port
from detector.core.events import REASONS, InvalidEvent, parse_event

pytestmark = pytest.mark.integration

MAX_BYTES = 1024
MODELS = ("alpha", "beta")  # alpha: numeric prediction; beta: class names
REQUIRED = ("event_id", "model", "timestamp", "features", "prediction")
RAW = "__raw_token__"  # replaced by a bare JSON-ish token (NaN, 1e400) after encoding
ABSENT = object()

PRIMERS = [
    {
        "event_id": f"primer-{model}",
        "model": model,
        "timestamp": BASE_TS_MS,
        "features": {"x": 1.0, "y": 2, "c": "a"},
        "prediction": 0.5 if model == "alpha" else "yes",
    }
    for model in MODELS
]


@dataclass(frozen=True)
class Item:
    """One message value; ``reason`` None for a good event of ``model``."""

    value: bytes | None
    reason: str | None
    model: str | None = None


def _item(value: bytes | None, reason: str | None, model: str | None = None) -> Item:
    """Reasons that win over the content: no value, then size (as documented)."""
    if not value:
        return Item(value, "empty")
    if len(value) > MAX_BYTES:
        return Item(value, "oversized")
    return Item(value, reason, model if reason is None else None)


# --- strategies ------------------------------------------------------------------------------

FINITE = st.floats(allow_nan=False, allow_infinity=False)
INTS = st.integers(min_value=-(2**63), max_value=2**63 - 1)
NUMBERS = FINITE | INTS
TEXT = st.text(max_size=12)
JSON = st.recursive(
    st.none() | st.booleans() | NUMBERS | TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def _rfc3339(ms: int, offset: str) -> str:
    hours = 0 if offset == "Z" else int(offset[:3])
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(timezone(timedelta(hours=hours)))
    text = moment.isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z") if offset == "Z" else text


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    model = draw(st.sampled_from(MODELS))
    ms = draw(st.integers(BASE_TS_MS, BASE_TS_MS + 3_600_000))
    event: dict[str, Any] = {
        "event_id": draw(st.text(min_size=1, max_size=12)),
        "model": model,
        "timestamp": draw(st.sampled_from([ms, _rfc3339(ms, "Z"), _rfc3339(ms, "+02:00")])),
    }
    features: dict[str, Any] = {}
    for name, values in (("x", NUMBERS), ("y", NUMBERS), ("c", TEXT | st.booleans())):
        value = draw(st.just(ABSENT) | st.none() | values)
        if value is not ABSENT:
            features[name] = value
    event["features"] = features
    if model == "alpha":
        event["prediction"] = draw(NUMBERS)
    else:
        classes = st.sampled_from(["yes", "no", "maybe"])
        event["prediction"] = draw(classes | st.dictionaries(classes, NUMBERS, min_size=1))
    optional = {
        "model_version": st.none() | TEXT,
        "label": JSON,
        "segment": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
        "schema_version": st.just(1),
        "extra": JSON,
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            event[key] = draw(strategy)
    return event


def _encode(event: dict[str, Any], raw: str | None = None) -> bytes:
    data = orjson.dumps(event)
    if raw is not None:
        data = data.replace(orjson.dumps(RAW), raw.encode(), 1)
    return data


def _bad_timestamp(value: str) -> bool:
    try:
        return datetime.fromisoformat(value).tzinfo is None
    except ValueError:
        return True


@st.composite
def broken_events(draw: st.DrawFn) -> Item:
    """A valid event with exactly one thing wrong, and the reason that must be reported."""
    event = draw(valid_events())
    model = event["model"]
    kind = draw(
        st.sampled_from(
            [
                "missing_field",
                "wrong_type",
                "non_finite",
                "number_out_of_range",
                "bad_timestamp",
                "unknown_schema_version",
                "feature_type_changed",
                "oversized",
            ]
        )
    )
    raw = None
    if kind == "missing_field":
        del event[draw(st.sampled_from(REQUIRED))]
    elif kind == "wrong_type":
        key, value = draw(
            st.sampled_from(
                [
                    ("event_id", 5),
                    ("event_id", ""),
                    ("event_id", None),
                    ("model", 7),
                    ("model", ""),
                    ("model", ["alpha"]),
                    ("model_version", 3),
                    ("model_version", {"v": 1}),
                    ("timestamp", True),
                    ("timestamp", None),
                    ("timestamp", [1]),
                    ("timestamp", {"ms": 1}),
                    ("features", [1]),
                    ("features", "x"),
                    ("features", 3),
                    ("features", None),
                    ("prediction", None),
                    ("prediction", [0.5]),
                    ("prediction", {}),
                    ("prediction", {"yes": "high"}),
                    ("segment", "eu"),
                    ("segment", {"region": 1}),
                    ("features.x", [1]),
                    ("features.c", {"a": 1}),
                ]
            )
        )
        if key.startswith("features."):
            event["features"][key.split(".")[1]] = value
        else:
            event[key] = value
    elif kind in ("non_finite", "number_out_of_range"):
        tokens = ["NaN", "Infinity", "-Infinity"] if kind == "non_finite" else ["1e400", "-2e308"]
        raw = draw(st.sampled_from(tokens))
        where = draw(st.sampled_from(["x", "prediction", "label"]))
        if where == "x":
            event["features"]["x"] = RAW
        else:
            event[where] = RAW
    elif kind == "bad_timestamp":
        fixed = st.sampled_from(
            ["yesterday", "2026-11-26T10:00:00", "2026-13-01T00:00:00Z", "", -1, 1e16, -0.5]
        )
        event["timestamp"] = draw(
            fixed | st.just(253_402_300_800_000) | TEXT.filter(_bad_timestamp)
        )
    elif kind == "unknown_schema_version":
        event["schema_version"] = draw(st.sampled_from([2, 0, -1, "1", True, None, 2.5, [1]]))
    elif kind == "feature_type_changed":
        numeric = model == "alpha"
        field = draw(st.sampled_from(["x", "c", "prediction"]))
        if field == "x":
            event["features"]["x"] = draw(TEXT | st.booleans())
        elif field == "c":
            event["features"]["c"] = draw(NUMBERS)
        else:
            event["prediction"] = draw(TEXT if numeric else NUMBERS)
    else:
        event["pad"] = "p" * draw(st.integers(MAX_BYTES, 3 * MAX_BYTES))
    return _item(_encode(event, raw), kind)


def _not_json(raw: bytes) -> bool:
    """Not a JSON text: not UTF-8, or not JSON once decoded (the stdlib's grammar)."""
    try:
        json.loads(raw.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return True
    return False


def _arbitrary_object(doc: dict[str, Any]) -> Item:
    raw = orjson.dumps(doc)
    try:
        parse_event(raw, MAX_BYTES)
    except InvalidEvent as exc:
        return _item(raw, exc.reason)
    raise AssertionError("filtered out")


def _invalid_object(doc: dict[str, Any]) -> bool:
    try:
        parse_event(orjson.dumps(doc), MAX_BYTES)
    except InvalidEvent:
        return True
    return False


ITEMS = st.one_of(
    valid_events().map(lambda e: _item(orjson.dumps(e), None, e["model"])),
    valid_events().map(lambda e: _item(orjson.dumps(e), None, e["model"])),
    broken_events(),
    broken_events(),
    st.binary(min_size=1, max_size=64).filter(_not_json).map(lambda b: _item(b, "not_json")),
    JSON.filter(lambda v: not isinstance(v, dict)).map(
        lambda v: _item(orjson.dumps(v), "not_object")
    ),
    st.dictionaries(st.text(max_size=10), JSON, max_size=6)
    .filter(_invalid_object)
    .map(_arbitrary_object),
    st.sampled_from([b"", None]).map(lambda v: _item(v, "empty")),
)


# --- the test --------------------------------------------------------------------------------


def test_hostile_input_is_dead_lettered_exactly(kafka: Any, unique: Any, tmp_path: Path) -> None:
    source = kafka.create_topic(unique("in"), partitions=1)
    port = free_port()
    config = config_with_server(
        tmp_path / "config.yaml",
        kafka.bootstrap_servers,
        port=port,
        input_topic=source,
        alert_topic=unique("alerts"),
        group_id=unique("group"),
        max_message_bytes=MAX_BYTES,
        checkpoint_interval_s=0.2,
    )
    kafka_settings = settings_for(config).kafka
    kafka.produce(source, [orjson.dumps(e) for e in PRIMERS])
    position = {"next": len(PRIMERS)}
    examples: list[int] = []
    sidecar = SidecarProcess(config, tmp_path / "sidecar.log").start()
    try:
        kafka.wait_committed(kafka_settings.group_id, source, {0: len(PRIMERS)}, watch=[sidecar])
        wait_checkpointed(sidecar, {0: len(PRIMERS)})

        # No shrinking: every call is a round trip through the broker and the sidecar; a
        # failure message names the offsets and values instead.
        @settings(
            max_examples=15,
            deadline=None,
            phases=(Phase.explicit, Phase.reuse, Phase.generate),
            suppress_health_check=list(HealthCheck),
        )
        @given(st.lists(ITEMS, min_size=8, max_size=40))
        def feed(items: list[Item]) -> None:
            before = scrape(port)
            start = position["next"]
            end = start + len(items)
            kafka.produce(source, [item.value for item in items])
            position["next"] = end
            kafka.wait_committed(kafka_settings.group_id, source, {0: end}, watch=[sidecar])
            wait_checkpointed(sidecar, {0: end})
            after = scrape(port)
            assert sidecar.proc is not None and sidecar.proc.poll() is None
            examples.append(len(items))

            bad = {start + i: item for i, item in enumerate(items) if item.reason is not None}
            letters = [
                r
                for r in kafka.read_all(kafka_settings.dead_letter)
                if start <= int(r.headers["original_offset"]) < end
            ]
            by_offset = {int(r.headers["original_offset"]): r for r in letters}
            assert len(by_offset) == len(letters), "a message was dead-lettered twice"
            assert sorted(by_offset) == sorted(bad), (
                f"dead-lettered {sorted(by_offset)}, expected {sorted(bad)}: "
                f"{[(start + i, it.reason, it.value) for i, it in enumerate(items)]}"
            )
            for offset, item in bad.items():
                record = by_offset[offset]
                reason = record.headers["reason"].decode()
                assert reason == item.reason, (offset, item.value, record.headers)
                assert reason in REASONS
                assert record.headers["original_topic"] == source.encode()
                value = item.value or b""
                if item.reason == "oversized":
                    assert record.headers.get("truncated") == b"true"
                    assert record.value == value[:MAX_BYTES]
                else:
                    assert "truncated" not in record.headers
                    assert (record.value or b"") == value

            good = Counter(item.model for item in items if item.reason is None)
            processed = Counter(by_label(after, "drift_detector_events_processed_total", "model"))
            processed.subtract(by_label(before, "drift_detector_events_processed_total", "model"))
            assert +processed == good
            reasons = Counter(item.reason for item in items if item.reason is not None)
            dead = Counter(by_label(after, "drift_detector_dead_letters_total", "reason"))
            dead.subtract(by_label(before, "drift_detector_dead_letters_total", "reason"))
            assert +dead == reasons

        feed()
        assert sidecar.terminate() == 0, sidecar.output()[-3000:]
    finally:
        sidecar.cleanup()
    assert sum(examples) == position["next"] - len(PRIMERS)
    print(f"\n{len(examples)} examples, {sum(examples)} messages")
