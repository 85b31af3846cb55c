"""Every documented event shape takes the fast path, with the dict path's results.

The README and ``schemas/prediction-event.v1.json`` document: epoch-millisecond and RFC 3339
timestamps (``Z`` or an offset, with or without fractions), ``segment``, ``schema_version``,
``label``, class-probability predictions, nulls and absent features, ``model_version`` and
unknown extra top-level fields. For every one of them, alone and mixed:

- the compiled core, which reads events from their bytes (``PartitionDetectors._scan``),
  gives exactly what the same source gives uncompiled when it parses every event with
  orjson and matches it as a dict: detections (every field), rejections (reason and
  detail), counts and state;
- only a model's first event (and a first label) needs full admission, and only those and
  invalid events are parsed with orjson: ``run_batches`` counts both, so a change that
  pushes a shape off the fast path fails here;
- invalid timestamps, segments and schema versions are rejected with the same reason and
  detail on both paths: the rules are the parser's functions (``detector.core.events``),
  which both paths call;
- rewritten and corrupted events (repeated keys, escapes, non-ASCII text, other number
  spellings, stray bytes) give the same results as parsing them with orjson.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import orjson
import pytest
from kernel_support import Outcome, assert_same, run_batches

from detector.core.engine import SWEEP_EVERY
from detector.core.events import MAX_EPOCH_MS, InvalidEvent, parse_event, timestamp_ms
from detector.core.records import InputRecord
from detector.core.settings import DetectionSettings

#: Small blocks and references, every change alerted: many detections in short streams.
BUSY = DetectionSettings(
    rearm_after=0, block_size=4, reference_size=64, window_size=64, feature_ttl_s=3600.0
)
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
STEP_MS = 37
N = 2600  # events of a model; everything changes at N // 2


def _iso(ms: int, offset_minutes: int = 0, timespec: str = "milliseconds") -> str:
    zone = UTC if offset_minutes == 0 else timezone(timedelta(minutes=offset_minutes))
    text = datetime.fromtimestamp(ms / 1000, zone).isoformat(timespec=timespec)
    return text[:-6] + "Z" if offset_minutes == 0 else text


# -- shapes: each rewrites a plain event (the first event of a stream included) -----------

Doc = dict[str, Any]
Shape = Callable[[Doc, int, np.random.Generator], None]


def _epoch_ms(doc: Doc, i: int, rng: np.random.Generator) -> None:
    pass


def _epoch_ms_float(doc: Doc, i: int, rng: np.random.Generator) -> None:
    doc["timestamp"] = doc["timestamp"] + 0.75


def _rfc3339_z(doc: Doc, i: int, rng: np.random.Generator) -> None:
    doc["timestamp"] = _iso(doc["timestamp"])


def _rfc3339_z_seconds(doc: Doc, i: int, rng: np.random.Generator) -> None:
    doc["timestamp"] = _iso(doc["timestamp"], timespec="seconds")


def _rfc3339_offset(doc: Doc, i: int, rng: np.random.Generator) -> None:
    doc["timestamp"] = _iso(doc["timestamp"], 120, "seconds")  # "+02:00", no fraction


def _rfc3339_offset_fraction(doc: Doc, i: int, rng: np.random.Generator) -> None:
    doc["timestamp"] = _iso(doc["timestamp"], -330, "microseconds")  # "-05:30", .123000


def _segment(doc: Doc, i: int, rng: np.random.Generator) -> None:
    doc["segment"] = [{"region": "eu", "tier": "gold"}, {}, None, {"region": "us"}][i % 4]


def _schema_version(doc: Doc, i: int, rng: np.random.Generator) -> None:
    doc["schema_version"] = 1.0 if i % 5 == 4 else 1  # 1.0 == 1: valid too


def _labels(doc: Doc, i: int, rng: np.random.Generator) -> None:
    """0/1 or boolean labels for a score, class names for class probabilities; wrong on
    10 % of the events, then 40 %; a null label now and then."""
    wrong = rng.random() < (0.4 if i >= N // 2 else 0.1)
    prediction = doc["prediction"]
    label: Any
    if isinstance(prediction, dict):
        label = ["yes", "no"][(prediction.get("yes", 0) >= 0.5) == wrong]
    else:
        label = int((prediction >= 0.5) != wrong)
        label = [label, bool(label)][i % 2]
    doc["label"] = None if i % 3 == 2 else label


def _class_probabilities(doc: Doc, i: int, rng: np.random.Generator) -> None:
    p = doc["prediction"]
    doc["prediction"] = (
        {"no": round(1 - p, 4), "yes": round(p, 4)}
        if i % 7
        else {"no": 0.2, "yes": 0.2, "maybe": round(0.6 * p, 4), "other": 0}
    )


def _nulls_absent(doc: Doc, i: int, rng: np.random.Generator) -> None:
    if not i:
        return  # the first event has every feature: each has its kind from the start
    features = doc["features"]
    rate = 0.15 if i >= N // 2 else 0.03
    for name in list(features):
        u = rng.random()
        if u < rate:
            features[name] = None
        elif u < 2 * rate:
            del features[name]


def _model_version(doc: Doc, i: int, rng: np.random.Generator) -> None:
    if i % 3 == 1:
        doc["model_version"] = None
    elif i % 3 == 2:
        del doc["model_version"]


def _extra_fields(doc: Doc, i: int, rng: np.random.Generator) -> None:
    doc["request_id"] = f"req-{i}"
    doc["trace"] = {"span": "a1", "sampled": True, "depth": [1, 2]}
    doc["latency_ms"] = 12.5
    if i % 2:  # unknown fields first, too
        items = list(doc.items())
        doc.clear()
        doc.update(reversed(items))


def _readme(doc: Doc, i: int, rng: np.random.Generator) -> None:
    """Everything at once, as the README's example event."""
    for shape in (_rfc3339_z, _segment, _labels, _class_probabilities, _nulls_absent):
        shape(doc, i, rng)
    doc["model_version"] = "2026-11-01"
    doc["request_id"] = f"req-{i}"


SHAPES: dict[str, Shape] = {
    "epoch-ms": _epoch_ms,
    "epoch-ms-float": _epoch_ms_float,
    "rfc3339-z": _rfc3339_z,
    "rfc3339-z-seconds": _rfc3339_z_seconds,
    "rfc3339-offset": _rfc3339_offset,
    "rfc3339-offset-fraction": _rfc3339_offset_fraction,
    "segment": _segment,
    "schema-version": _schema_version,
    "label": _labels,
    "class-probabilities": _class_probabilities,
    "nulls-absent": _nulls_absent,
    "model-version": _model_version,
    "extra-fields": _extra_fields,
    "readme": _readme,
}


def _plain(model: str, n: int, seed: int) -> list[Doc]:
    """A model's events: numbers (ints and floats), categories and booleans, a score
    prediction; every feature and the prediction change at the middle of the stream."""
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n):
        shift = i >= n // 2
        score = float(rng.normal(1.0 if shift else 0.0, 1.0))
        p = 1.0 / (1.0 + math.exp(-(score + float(rng.normal(0.0, 1.0)))))
        docs.append(
            {
                "event_id": f"{model}-{i}",
                "model": model,
                "model_version": "v1",
                "timestamp": START_MS + STEP_MS * i,
                "features": {
                    "amount": round(float(rng.lognormal(3.0, 2.0 if shift else 1.0)), 2),
                    "score": score,
                    "count": int(rng.poisson(6 if shift else 3)),
                    "country": ["DE", "FR", "GB"][int(rng.choice(3, p=_shares(shift)))],
                    "is_new_device": bool(rng.random() < (0.6 if shift else 0.3)),
                },
                "prediction": round(p, 4),
            }
        )
    return docs


def _shares(shift: bool) -> list[float]:
    return [0.2, 0.3, 0.5] if shift else [0.6, 0.3, 0.1]


def _shaped(shape: str, model: str, n: int, seed: int) -> list[Doc]:
    rng = np.random.default_rng(seed + 1)
    docs = _plain(model, n, seed)
    for i, doc in enumerate(docs):
        SHAPES[shape](doc, i, rng)
    return docs


def _records(values: list[bytes | None]) -> list[InputRecord]:
    """Offsets from 0; a Kafka timestamp on two records in three."""
    return [
        InputRecord("in", 0, i, value, 1000 + i if i % 3 else None)
        for i, value in enumerate(values)
    ]


def _both(
    records: list[InputRecord], batch: int = 333, settings: DetectionSettings = BUSY
) -> tuple[Outcome, Outcome]:
    """The compiled core, reading events from their bytes, and the same source uncompiled
    parsing every event with orjson and matching it as a dict."""
    expected = run_batches(records, len(records), reference=True, settings=settings, dict_only=True)
    got = run_batches(records, batch, reference=False, settings=settings)
    assert expected.parsed == len(records)
    return got, expected


def _sweeps(n: int) -> int:
    """Events of a model handed to the reference path for a sweep, among its first n."""
    return n // SWEEP_EVERY


class TestEveryShapeOnTheFastPath:
    @pytest.mark.parametrize("shape", list(SHAPES))
    def test_same_results_and_compiled(self, shape: str) -> None:
        """One model's stream in the shape: identical results on both paths, and the
        compiled loop hands the reference path only the model's first event and the
        sweeps."""
        records = _records([orjson.dumps(doc) for doc in _shaped(shape, "fraud", N, 11)])
        got, expected = _both(records)
        assert_same(got, expected, shape)
        assert not expected.result.rejections
        assert expected.result.processed == {"fraud": N}
        assert expected.result.detections, "the stream must make detectors fire"
        # One full admission, at the first event: every later event matches its layout
        # (sweeps run in place and keep it).
        assert got.admissions == 1, f"{shape}: {got.admissions} full admissions"
        # ... and every later event is read from its bytes (not parsed with orjson).
        assert got.parsed == 1, f"{shape}: {got.parsed} events parsed with orjson"

    def test_shapes_reach_every_tracker(self) -> None:
        """The streams are not vacuous: between them, every drift type is detected."""
        found: Counter[str] = Counter()
        for shape in ("readme", "label", "nulls-absent"):
            records = _records([orjson.dumps(doc) for doc in _shaped(shape, "m", N, 5)])
            outcome = run_batches(records, 500, reference=False, settings=BUSY)
            found.update(d.drift_type for d in outcome.result.detections)
        assert set(found) >= {
            "mean",
            "variance",
            "categorical",
            "missing_rate",
            "prediction",
            "performance",
        }, found

    @pytest.mark.parametrize("batch", [1, 97, 10**9])
    def test_mixed_shapes(self, batch: int) -> None:
        """Three models interleaved, every shape mixed event by event (each event in a shape
        drawn at random, first events included; one model's predictions are always class
        probabilities, as a prediction keeps its kind): identical results, and only each
        model's first event, first labelled event and sweeps on the reference path."""
        rng = np.random.default_rng(2026)
        mixable = [name for name in SHAPES if name not in ("class-probabilities", "readme")]
        streams = []
        for m, model in enumerate(("fraud", "crédit", "模型")):
            docs = _plain(model, N, 20 + m)
            shape_rng = np.random.default_rng(40 + m)
            for i, doc in enumerate(docs):
                if m == 2:
                    _class_probabilities(doc, i, shape_rng)
                SHAPES[mixable[int(rng.integers(len(mixable)))]](doc, i, shape_rng)
            streams.append(docs)
        values: list[bytes | None] = []
        taken = [0, 0, 0]
        while any(taken[m] < N for m in range(3)):
            m = int(rng.integers(3))
            if taken[m] < N:
                values.append(orjson.dumps(streams[m][taken[m]]))
                taken[m] += 1
        got, expected = _both(_records(values), batch)
        assert_same(got, expected, f"mixed, batches of {batch}")
        assert not expected.result.rejections
        assert expected.result.processed == {"fraud": N, "crédit": N, "模型": N}
        assert len(expected.result.detections) > 10
        # The first labelled event of a model whose first event has no label creates the
        # error-rate tracker: a full admission.
        first_labels = sum(
            1
            for docs in streams
            if docs[0].get("label") is None and any(d.get("label") is not None for d in docs)
        )
        assert first_labels > 0
        assert got.admissions == 3 + first_labels
        # Non-ASCII model names and values too are read from the bytes.
        assert got.parsed == got.admissions


# -- rejections: the same reason and detail on both paths ---------------------------------

#: (field, value) of invalid events; each is rejected, with the parser's own detail.
INVALID: list[tuple[str, Any]] = [
    ("timestamp", "yesterday"),
    ("timestamp", "2026-01-01T00:00:00"),  # no offset
    ("timestamp", "2026-01-01T00:00:00.5"),
    ("timestamp", "2026-13-01T00:00:00Z"),
    ("timestamp", "2026-01-01T24:00:00Z"),
    ("timestamp", "2026-01-01t00:00:00z"),
    ("timestamp", "1969-12-31T23:59:59.999Z"),  # before the epoch
    ("timestamp", "0001-01-01T00:00:00+00:00"),
    ("timestamp", "9999-12-31T23:59:59-01:00"),  # past MAX_EPOCH_MS
    ("timestamp", ""),
    ("timestamp", -1),
    ("timestamp", MAX_EPOCH_MS),
    ("timestamp", 2**63 - 1),
    ("timestamp", -0.5),
    ("timestamp", 1e300),
    ("timestamp", float(MAX_EPOCH_MS)),
    ("timestamp", True),
    ("timestamp", None),
    ("timestamp", [START_MS]),
    ("timestamp", {"ms": START_MS}),
    ("segment", {"region": 1}),
    ("segment", {"region": None}),
    ("segment", {"region": "eu", "tier": ["gold"]}),
    ("segment", "eu"),
    ("segment", ["eu"]),
    ("segment", 7),
    ("schema_version", 2),
    ("schema_version", True),
    ("schema_version", "1"),
    ("schema_version", None),
    ("schema_version", 1.5),
    ("model_version", 3),
    ("model_version", {"v": "1"}),
]

#: Valid but unusual values of the same fields: accepted, and on the compiled loop.
UNUSUAL: list[tuple[str, Any]] = [
    ("timestamp", 0),
    ("timestamp", MAX_EPOCH_MS - 1),
    ("timestamp", 0.0),
    ("timestamp", MAX_EPOCH_MS - 0.5),
    ("timestamp", "1970-01-01T00:00:00Z"),
    ("timestamp", "9999-12-31T23:59:59.999Z"),
    ("timestamp", "9999-12-31T23:59:59.999999+00:00"),
    ("timestamp", "2026-01-01T00:00:00.1234567Z"),  # more than 6 digits: truncated
    ("timestamp", "2026-01-01T00:00:00,5+01:00"),
    ("timestamp", "2026-01-01 00:00:00Z"),
    ("timestamp", "2026-01-01T00:00:00+14:00"),
    ("timestamp", "2026-01-01T00:00:00-12:00"),
    ("timestamp", "2026-01-01T00:00:00.999999-05:30"),
    ("segment", {}),
    ("segment", None),
    ("segment", {"": ""}),
    ("schema_version", 1.0),
    ("model_version", ""),
]


def _with(field: str, value: Any, i: int) -> bytes:
    doc = _plain("fraud", 1, 3)[0]
    doc["event_id"] = f"odd-{i}"
    doc[field] = value
    return orjson.dumps(doc)


class TestSameRejections:
    def test_invalid_fields(self) -> None:
        """Invalid timestamps, segments, schema and model versions, between valid events
        of a model the compiled loop already takes: rejected with the reference path's
        reason and detail; only they (and the first event) reach the reference path."""
        plain = [orjson.dumps(doc) for doc in _plain("fraud", 300, 9)]
        values: list[bytes | None] = list(plain[:100])
        for i, (field, value) in enumerate(INVALID):
            values.append(_with(field, value, i))
            values.append(plain[100 + i])
        got, expected = _both(_records(values), 7)
        assert_same(got, expected, "invalid fields")
        reasons = Counter(r.reason for r in expected.result.rejections)
        assert reasons == {
            "bad_timestamp": 16,
            "wrong_type": 12,
            "unknown_schema_version": 5,
        }, reasons
        # Rejected by the parser before admission: only the first (valid) event is admitted.
        assert got.admissions == 1
        # The reader leaves the invalid ones to orjson's parse, which words the rejection.
        assert got.parsed == 1 + len(INVALID)

    def test_unusual_valid_fields(self) -> None:
        """Valid values at the edges of the rules: admitted by the compiled loop itself,
        with the reference path's results."""
        plain = [orjson.dumps(doc) for doc in _plain("fraud", 200, 9)]
        values: list[bytes | None] = list(plain[:100])
        for i, (field, value) in enumerate(UNUSUAL):
            values.append(_with(field, value, i))
            values.append(plain[100 + i])
        got, expected = _both(_records(values), 7)
        assert_same(got, expected, "unusual fields")
        assert not expected.result.rejections
        assert got.admissions == 1
        assert got.parsed == 1


# -- the timestamp rule ------------------------------------------------------------------


class TestTimestampRule:
    @pytest.mark.parametrize(
        ("value", "ms"),
        [
            (START_MS, START_MS),
            (0, 0),
            (START_MS + 0.999, START_MS),
            ("2026-01-01T00:00:00Z", START_MS),
            ("2026-01-01T00:00:00.120Z", START_MS + 120),
            ("2026-11-26T10:00:00.120Z", 1_795_687_200_120),
            ("2026-01-01T02:00:00+02:00", START_MS),
            ("2025-12-31T18:30:00.5-05:30", START_MS + 500),
            ("2026-01-01T00:00:00.999999Z", START_MS + 999),
            ("9999-12-31T23:59:59.999999Z", MAX_EPOCH_MS - 1),
            ("1970-01-01T00:00:00.001+00:00", 1),
        ],
    )
    def test_values(self, value: Any, ms: int) -> None:
        """Epoch milliseconds pass through (floats truncated); RFC 3339 times become exact
        epoch milliseconds (sub-millisecond digits dropped, no float rounding)."""
        assert timestamp_ms(value) == ms

    def test_exact_where_float_rounding_was_not(self) -> None:
        """Far from the epoch a double has no microseconds to spare: the old
        ``int(timestamp() * 1000)`` rounded 9999-12-31T23:59:59.999999Z up to the next
        second; the integer arithmetic does not."""
        moment = datetime.fromisoformat("9999-12-31T23:59:59.999999Z")
        assert int(moment.timestamp() * 1000) != MAX_EPOCH_MS - 1
        assert timestamp_ms("9999-12-31T23:59:59.999999Z") == MAX_EPOCH_MS - 1

    @pytest.mark.parametrize(("field", "value"), INVALID)
    def test_parser_rejects(self, field: str, value: Any) -> None:
        """Every invalid value of INVALID is rejected by the parser itself."""
        with pytest.raises(InvalidEvent):
            parse_event(_with(field, value, 0))

    @pytest.mark.parametrize(("field", "value"), UNUSUAL)
    def test_parser_accepts(self, field: str, value: Any) -> None:
        parse_event(_with(field, value, 0))


# -- the event reader: bytes it takes and bytes it leaves to orjson ------------------------


def _features_first(raw: bytes) -> bytes:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw
    if not isinstance(doc, dict) or "features" not in doc:
        return raw
    return orjson.dumps({"features": doc.pop("features"), **doc})


def _rewrites(raw: bytes, rng: np.random.Generator) -> bytes:
    """The same event written another way, or a slightly different event: what the
    engine's reader must either read exactly as orjson would or leave to it."""
    edits = [
        lambda r: r.replace(b'"amount":', b'"amount":1,"amount":', 1),  # orjson: the last
        lambda r: r.replace(b'"model":', b'"model":"x","model":', 1),
        lambda r: r.replace(b",", b" ,\n\t ").replace(b":", b" : "),
        lambda r: r.replace(b'"DE"', b'"D\\u0045"'),  # the same string, escaped
        lambda r: r.replace(b'"fraud"', b'"fr\\u0061ud"'),
        lambda r: r.replace(b'"DE"', '"DÉ"'.encode()),  # a new category, not ASCII
        lambda r: r.replace(b'"country"', b'"c\\u00f6untry"'),  # a new feature
        lambda r: r.replace(b'"count":3', b'"count":3.0e0'),
        lambda r: r.replace(b'"count":3', b'"count":12345678901234567890'),
        lambda r: r.replace(b'"count":3', b'"count":"3"'),  # another kind: refused
        lambda r: r.replace(b'"count":3', b'"count":[3]'),
        lambda r: r.replace(b'"count":', b'"uncounted":'),  # a new feature: admitted
        lambda r: r.replace(b"true", b"1").replace(b"false", b"0"),
        lambda r: r.replace(b'"is_new_device":', b'"is_new_device":null,"x":'),
        lambda r: r.replace(b'"features":{', b'"features":{"amount":null,'),
        _features_first,
        lambda r: r.replace(b'"prediction":', b'"prediction":{"a":0.5},"p2":', 1),
        lambda r: r.replace(b'"label":1', b'"label":{"v":1}'),
        lambda r: r + b" \n",
        lambda r: r + b"x",
        lambda r: r[:-1],
        lambda r: b"\xef\xbb\xbf" + r,
        lambda r: r.replace(b'"event_id":', b'"schema_version":1,"event_id":'),
        lambda r: r.replace(b'"event_id":', b'"schema_version":1e0,"event_id":'),
        lambda r: r.replace(b'"model_version":"v1"', b'"model_version":null'),
        lambda r: r.replace(b'"timestamp":', b'"timestamp":-'),
        # Top-level names: a known one escaped, and others sharing a known one's initial.
        lambda r: r.replace(b'"model":', b'"mod\\u0065l":', 1),
        lambda r: r.replace(b'"label":', b'"l\\u0061bel":', 1),
        lambda r: r.replace(b'"timestamp":', b'"timestamps":1,"timestamp":', 1),
        lambda r: r.replace(b'"features":', b'"f":{},"features":', 1),
        lambda r: r.replace(b'"model_version":', b'"model_versions":', 1),
        lambda r: r.replace(b'"amount":', b'"amountx":', 1),  # a new feature: admitted
    ]
    out = raw
    for _ in range(int(rng.integers(1, 3))):
        out = edits[int(rng.integers(len(edits)))](out)
    if rng.random() < 0.3:  # and a byte changed, dropped or added
        data = bytearray(out)
        at = int(rng.integers(len(data)))
        choice = rng.random()
        alphabet = b'{}[]:,"\\ 019.-eEtn\x00\xc3'
        if choice < 0.4:
            data[at] = alphabet[int(rng.integers(len(alphabet)))]
        elif choice < 0.7:
            del data[at]
        else:
            data.insert(at, alphabet[int(rng.integers(len(alphabet)))])
        out = bytes(data)
    return out


class TestEventReader:
    @pytest.mark.parametrize("shape", ["epoch-ms", "readme", "extra-fields", "label"])
    def test_rewritten_events(self, shape: str) -> None:
        """Valid events of a model interleaved with rewritten ones (other spellings of the
        same event, slightly different events, invalid bytes): the compiled core, which
        reads what it can from the bytes, gives exactly the results of parsing every event
        with orjson."""
        rng = np.random.default_rng(7)
        plain = [orjson.dumps(doc) for doc in _shaped(shape, "fraud", 1400, 13)]
        values: list[bytes | None] = []
        for i, raw in enumerate(plain):
            values.append(raw)
            if i > 0 and rng.random() < 0.4:
                values.append(_rewrites(plain[int(rng.integers(i))], rng))
        got, expected = _both(_records(values), 101)
        assert_same(got, expected, f"rewritten {shape}")
        rewritten = len(values) - len(plain)
        assert rewritten > 400
        assert expected.result.rejections, "some rewrites are invalid"
        assert len(expected.result.rejections) < rewritten, "some rewrites are valid"
        # The reader took the plain events and some of the rewritten ones, not all.
        assert len(values) - rewritten < len(values) - got.parsed < len(values)

    def test_feature_names_json_escapes(self) -> None:
        """Feature names with a quote, a backslash, a control character or non-ASCII
        text (JSON escapes the first three): read from the bytes like any other, with the
        results of parsing every event with orjson."""
        names = ['say "hi"', "back\\slash", "tab\there", "größe", "plain"]
        rng = np.random.default_rng(3)
        values: list[bytes | None] = []
        for i in range(N):
            shift = i >= N // 2
            features: dict[str, Any] = {
                name: float(rng.normal(1.0 if shift else 0.0, 1.0)) for name in names
            }
            if i % 7 == 3:
                del features[names[i % len(names)]]
            doc = _plain("fraud", 1, i)[0]
            doc["event_id"] = f"ev-{i}"
            doc["features"] = features
            values.append(orjson.dumps(doc))
        got, expected = _both(_records(values))
        assert_same(got, expected, "escaped feature names")
        assert expected.result.detections
        assert got.admissions == 1 and got.parsed == 1
