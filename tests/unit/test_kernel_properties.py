"""Property-based: the compiled per-event loop against the reference path, on random streams.

``tests/unit/test_kernel.py`` compares the compiled loop (``detector.core._kernel.run``) and
the reference path (``PartitionDetectors(..., reference=True)``) on fixed seeded streams. Here
hypothesis draws the *structure* of a stream (models, feature pools with colliding, unicode
and ignored names, feature kinds, how often keys are left out or reordered, kind changes,
new features, odd and malformed messages, timestamps, settings, batchings) and a seed; a
numpy generator driven by that seed then writes the events quickly. Every stream is
processed by the reference path and by the compiled loop (in one batch, in batches of a
drawn size, snapshotted and restored midway, reconfigured midway); all must agree on every
detection (every field), rejection, processed count, expiry count, detector count and the
per-model state.

The settings are small (blocks of 2, references of 32, a 50 ms feature TTL, at most 6
features per model and 2 models per partition), so that detectors fire, references are
re-learned, features expire at sweeps and new features are refused, within a few thousand
events. ``test_generator_reaches_the_interesting_paths`` proves it on a fixed plan.

The properties also found three bugs outside the compiled loop, on both paths (a crash on
values near the double limit, and two refused-event changes missing from snapshots);
``test_refused_event_is_in_the_next_snapshot`` keeps the shrunk snapshot cases.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from kernel_support import Outcome, add_result, assert_same, run_batches

from detector.config import DetectionSettings, DetectorSpec, FeatureSettings, ModelSettings
from detector.core.engine import SWEEP_EVERY
from detector.core.events import MAX_EPOCH_MS, InvalidEvent, parse_event
from detector.core.records import BatchResult, InputRecord

# -- settings ------------------------------------------------------------------------------

#: A configured model: an ignore list, a configured-categorical feature (numbers are
#: categories), a configured-numeric feature (a string is wrong_type) and an ignored one;
#: another model on PageHinkley (the RiverDetector driver, not AdwinFast).
MODEL_SETTINGS = {
    "fraud": ModelSettings(
        ignore_features=["request_id"],
        features={
            "txn": FeatureSettings(kind="categorical"),
            "amount": FeatureSettings(kind="numeric"),
            "late": FeatureSettings(ignore=True),
        },
    ),
    "crédit": ModelSettings(detector=DetectorSpec(name="PageHinkley", params={"threshold": 5})),
}
SMALL = DetectionSettings(
    reference_size=32,
    window_size=32,
    block_size=2,
    rearm_after=0,
    max_categories=3,
    min_category_share=0.05,
    feature_ttl_s=0.05,
    max_features_per_model=6,
    max_models=2,
    models=MODEL_SETTINGS,
)
#: Blocks of one value, odd reference and window sizes, a once-per-change window.
ODD = DetectionSettings(
    reference_size=33,
    window_size=37,
    block_size=1,
    rearm_after=300,
    max_categories=2,
    min_category_share=0.2,
    feature_ttl_s=1.0,
    max_features_per_model=9,
    max_models=3,
    models=MODEL_SETTINGS,
)
DEFAULTS = DetectionSettings(models=MODEL_SETTINGS)
SETTINGS = {"small": SMALL, "odd": ODD, "defaults": DEFAULTS}

# -- stream plans (drawn by hypothesis) ---------------------------------------------------

#: Model names: two configured ones (one with a non-ASCII name), two plain ones.
MODEL_NAMES = ("fraud", "crédit", "churn", "模型")
#: Feature names shared by every model (so they collide across models): the ignored
#: "request_id" and "late" and the configured "txn"/"amount" of "fraud", unicode names
#: (NFC and NFD spellings of the same letter), the empty name, names of the engine's own
#: pseudo-features.
FEATURE_NAMES = (
    "amount",
    "score",
    "country",
    "txn",
    "request_id",
    "late",
    "x",
    "é",
    "e\u0301",
    "名前",
    "🙂",
    "",
    "a.b c",
    "__prediction__",
    "__error__",
)
#: Names that appear out of nowhere (brand-new features).
NEW_NAMES = (*(f"new_{k}" for k in range(10)), "ñew", "新しい", "x ")
#: float, int, ints and floats, str, bool, strings and booleans, null for the first part of
#: the stream then float, (almost) always null.
KINDS = ("float", "int", "num", "str", "bool", "cat", "late", "null")
NUMERIC_KINDS = frozenset(("float", "int", "num", "late", "null"))
PREDICTIONS = ("float", "int", "str", "dict")
LABELS = ("none", "binary", "bool", "str", "float", "mixed")
CATEGORIES = ("a", "b", "c", "d", "ü", "日本", "")
CLASSES = ("yes", "no", "maybe")
MAX_MS = MAX_EPOCH_MS
#: Phases of a model's stream, in turn: base, more spread (numbers), more nulls and more
#: wrong predictions, base again, shifted (numbers, categories, predictions).
BASE, SPREAD, SHIFT = 0, 1, 3


@dataclasses.dataclass(frozen=True)
class ModelPlan:
    name: str
    features: tuple[tuple[str, str], ...]  # (name, kind)
    prediction: str
    labels: str
    p_label: float
    p_include: float  # chance that an event carries a given feature at all
    p_null: float
    p_shuffle: float
    p_empty: float  # chance of an event with no features at all
    weight: float


@dataclasses.dataclass(frozen=True)
class StreamPlan:
    seed: int
    n: int
    models: tuple[ModelPlan, ...]
    p_kind_change: float
    p_new_feature: float
    p_malformed: float
    p_odd: float  # valid events in less usual forms (see _Writer.oddity)
    start_ms: int
    step_ms: int
    p_backwards: float
    phase: int  # events of a model per phase: base, spread and missing, base, shift


@st.composite
def model_plans(draw: st.DrawFn, name: str) -> ModelPlan:
    # Often more features than SMALL.max_features_per_model (6): refusals.
    size = draw(st.sampled_from((1, 2, 4, 6, 7, 8)))
    names = draw(
        st.lists(st.sampled_from(FEATURE_NAMES), min_size=size, max_size=size, unique=True)
    )
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=len(names), max_size=len(names)))
    return ModelPlan(
        name=name,
        features=tuple(zip(names, kinds, strict=True)),
        prediction=draw(st.sampled_from(PREDICTIONS)),
        labels=draw(st.sampled_from(LABELS)),
        p_label=draw(st.sampled_from((0.0, 0.3, 1.0))),
        p_include=draw(st.sampled_from((1.0, 0.97, 0.7, 0.3))),
        p_null=draw(st.sampled_from((0.0, 0.05, 0.4))),
        p_shuffle=draw(st.sampled_from((0.0, 0.1, 1.0))),
        p_empty=draw(st.sampled_from((0.0, 0.02, 0.3))),
        weight=draw(st.sampled_from((1.0, 2.0, 5.0))),
    )


@st.composite
def stream_plans(draw: st.DrawFn) -> StreamPlan:
    names = draw(st.lists(st.sampled_from(MODEL_NAMES), min_size=1, max_size=3, unique=True))
    # Lengths spread on purpose (hypothesis favours small integers): a few hundred events
    # up to a few thousand, past SWEEP_EVERY events of a model.
    n = draw(st.sampled_from((300, 800, 1500, 3000))) + draw(st.integers(0, 100))
    return StreamPlan(
        seed=draw(st.integers(0, 2**32 - 1)),
        n=n,
        models=tuple(draw(model_plans(name)) for name in names),
        p_kind_change=draw(st.sampled_from((0.0, 0.003, 0.03))),
        p_new_feature=draw(st.sampled_from((0.0, 0.005, 0.05))),
        p_malformed=draw(st.sampled_from((0.0, 0.01, 0.05))),
        p_odd=draw(st.sampled_from((0.0, 0.01, 0.05))),
        start_ms=draw(st.sampled_from((0, 1, 1_767_225_600_000, MAX_MS - 10**6))),
        step_ms=draw(st.sampled_from((0, 1, 10, 40))),
        p_backwards=draw(st.sampled_from((0.0, 0.02))),
        phase=draw(st.sampled_from((40, 150, 400))),
    )


# -- the generator: a plan and its seed -> message values ---------------------------------


class _Writer:
    """Writes one stream from a plan with a seeded numpy generator (fast, deterministic)."""

    def __init__(self, plan: StreamPlan) -> None:
        self.plan = plan
        self.rng = np.random.default_rng(plan.seed)
        self.ts = plan.start_ms
        self.seen = [0] * len(plan.models)  # events written per model
        weights = np.array([m.weight for m in plan.models])
        self.shares = weights / weights.sum()

    def chance(self, p: float) -> bool:
        return p > 0.0 and self.rng.random() < p

    def pick(self, items: Sequence[Any]) -> Any:
        return items[int(self.rng.integers(len(items)))]

    def values(self) -> list[bytes | None]:
        out: list[bytes | None] = []
        for i in range(self.plan.n):
            if self.chance(self.plan.p_malformed):
                out.append(self.malformed(i))
            else:
                out.append(orjson.dumps(self.event(i)))
        return out

    # -- one event ---------------------------------------------------------------------

    def event(self, i: int) -> dict[str, Any]:
        plan, rng = self.plan, self.rng
        m = int(rng.choice(len(plan.models), p=self.shares))
        model = plan.models[m]
        k = self.seen[m]
        self.seen[m] += 1
        phase = (k // plan.phase) % 4
        self.ts += int(rng.integers(0, 2 * plan.step_ms + 1))
        ts = self.ts
        if self.chance(plan.p_backwards):
            ts = max(0, ts - int(rng.integers(1, 200)))
        doc: dict[str, Any] = {
            "event_id": f"e{i}" if i % 7 else f"é-{i}",
            "model": model.name,
            "model_version": f"v{phase}",
            "timestamp": ts,
            "features": self.features(model, k, phase),
            "prediction": self.prediction(model, phase),
        }
        if self.chance(model.p_label):
            doc["label"] = self.label(model, phase)
        elif self.chance(0.05):
            doc["label"] = None
        if self.chance(plan.p_odd):
            self.oddity(doc)
        if self.chance(0.05):  # top-level key order and unknown fields do not matter
            items = list(doc.items())
            rng.shuffle(items)  # type: ignore[arg-type]
            doc = dict(items)
            doc["extra"] = {"anything": [1, 2]}
        return doc

    def features(self, model: ModelPlan, k: int, phase: int) -> dict[str, Any]:
        plan = self.plan
        if self.chance(model.p_empty):
            return {}
        items: list[tuple[str, Any]] = []
        for name, kind in model.features:
            if model.p_include < 1.0 and not self.chance(model.p_include):
                continue
            if self.chance(model.p_null * (8 if phase == SPREAD else 1)):
                value = None
            else:
                value = self.value(kind, k, phase)
                if value is not None and self.chance(plan.p_kind_change):
                    value = self.other_kind(kind)
            items.append((name, value))
        if self.chance(plan.p_new_feature):
            name = self.pick(NEW_NAMES)
            items.append((name, self.value(self.pick(("float", "str", "null")), k, phase)))
        if self.chance(model.p_shuffle):
            order = self.rng.permutation(len(items))
            items = [items[j] for j in order]
        return dict(items)

    def value(self, kind: str, k: int, phase: int) -> Any:
        rng = self.rng
        if kind == "num":
            kind = "float" if rng.random() < 0.5 else "int"
        elif kind == "cat":
            kind = "str" if rng.random() < 0.5 else "bool"
        elif kind == "late":
            if k < 2 * self.plan.phase:
                return None
            kind = "float"
        elif kind == "null":
            if rng.random() < 0.995:
                return None
            kind = "float"
        if kind == "float":
            if rng.random() < 0.002:  # extremes: std and mean overflow, subnormals, -0.0
                return self.pick((1e308, -1e308, 1e200, 5e-324, -0.0, 0.0, 1e-300))
            value = float(
                rng.normal(3.0 if phase == SHIFT else 0.0, 4.0 if phase == SPREAD else 1.0)
            )
            return round(value, int(rng.integers(0, 4))) if rng.random() < 0.3 else value
        if kind == "int":
            if rng.random() < 0.002:
                return self.pick((2**63 - 1, -(2**63), 2**64 - 1, 0))
            return int(rng.poisson(8 if phase == SHIFT else 3)) * (3 if phase == SPREAD else 1)
        if kind == "str":
            shares = (0.5, 0.2, 0.1, 0.1, 0.05, 0.03, 0.02)
            if phase == SHIFT:
                shares = (0.1, 0.2, 0.1, 0.5, 0.05, 0.03, 0.02)
            return CATEGORIES[int(rng.choice(len(CATEGORIES), p=shares))]
        # bool
        return bool(rng.random() < (0.7 if phase == SHIFT else 0.2))

    def other_kind(self, kind: str) -> Any:
        if kind in NUMERIC_KINDS:
            return self.pick(("oops", True, False, "1.5"))
        return self.pick((1.5, 7, 0, -2.25))

    def prediction(self, model: ModelPlan, phase: int) -> Any:
        rng = self.rng
        kind = model.prediction
        if self.chance(self.plan.p_kind_change):
            return self.pick(("yes", True)) if kind in ("float", "int") else self.pick((0.5, 1))
        if kind == "float":
            if self.chance(self.plan.p_odd):
                return int(rng.integers(0, 2))  # an int prediction: still numeric
            p = rng.normal(0.7 if phase == SHIFT else 0.3, 0.3 if phase == SPREAD else 0.1)
            return round(float(min(1.0, max(0.0, p))), 4)
        if kind == "int":
            if self.chance(self.plan.p_odd):
                return float(rng.integers(0, 4)) + 0.5
            return int(rng.integers(0, 8 if phase == SHIFT else 4))
        if self.chance(self.plan.p_odd):
            return self.pick((True, False))  # a boolean: the class "true" or "false"
        if kind == "str":
            shares = (0.2, 0.7, 0.1) if phase == SHIFT else (0.6, 0.3, 0.1)
            return CLASSES[int(rng.choice(3, p=shares))]
        # class probabilities
        p = float(rng.beta(5, 2) if phase == SHIFT else rng.beta(2, 5))
        style = rng.random()
        if style < 0.05:
            return {"yes": 0.5, "no": 0.5}  # a tie: the greatest class name
        if style < 0.1:
            return {"yes": int(p > 0.5), "no": int(p <= 0.5)}  # int probabilities
        if style < 0.3:
            return {"yes": round(p * 0.8, 4), "no": round((1 - p) * 0.8, 4), "maybe": 0.2}
        return {"yes": round(p, 4), "no": round(1 - p, 4)}

    def label(self, model: ModelPlan, phase: int) -> Any:
        rng = self.rng
        style = model.labels
        if style == "mixed":
            style = self.pick(("none", "binary", "bool", "str", "float", "odd"))
        if style == "odd":  # not in the contract, but not validated either
            return self.pick(([1], {"a": 1}, 2**64 - 1, "", True))
        if style == "none":
            return None
        wrong = rng.random() < (0.5 if phase == SPREAD else 0.1)
        if style == "binary":
            return int(wrong)
        if style == "bool":
            return bool(wrong)
        if style == "str":
            return self.pick(CLASSES)
        return round(float(rng.normal(0.5, 1.0)), 3)

    def oddity(self, doc: dict[str, Any]) -> None:
        """A valid event in a less usual documented form: RFC 3339 times (``Z`` or an
        offset, with or without fractions), float epoch milliseconds, segments, schema
        versions, null or absent model versions. The compiled loop takes them all
        (``tests/unit/test_fast_path_shapes.py`` proves it); here they are mixed into
        every stream."""
        ts = doc["timestamp"]
        what = int(self.rng.integers(11))
        if what == 0:
            moment = datetime.fromtimestamp(ts / 1000, UTC)
            doc["timestamp"] = moment.isoformat(timespec="milliseconds")
        elif what == 1:
            doc["timestamp"] = ts + 0.25 if ts + 1 < MAX_MS else float(ts)
        elif what == 2:
            doc["segment"] = {"region": "eu"}
        elif what == 3:
            doc["schema_version"] = 1
        elif what == 4:
            doc["model_version"] = None
        elif what == 5:
            del doc["model_version"]
        elif what == 6:
            doc["segment"] = None
        elif what == 7:  # an offset, no fraction: the event's time truncated to the second
            zone = timezone(-timedelta(hours=3, minutes=30))  # "-03:30"
            doc["timestamp"] = datetime.fromtimestamp(ts // 1000, zone).isoformat()
        elif what == 8:  # "Z", microseconds
            moment = datetime.fromtimestamp(ts // 1000, UTC) + timedelta(milliseconds=ts % 1000)
            doc["timestamp"] = moment.isoformat(timespec="microseconds")[:-6] + "Z"
        elif what == 9:
            doc["segment"] = self.pick(({}, {"region": "eu", "tier": ""}, {"é": "日本"}))
        else:
            doc["schema_version"] = 1.0

    # -- malformed messages ------------------------------------------------------------

    def malformed(self, i: int) -> bytes | None:
        doc = self.event(i)
        what = int(self.rng.integers(len(_MALFORMED)))
        return _MALFORMED[what](doc)


def _drop(key: str) -> Callable[[dict[str, Any]], bytes]:
    def make(doc: dict[str, Any]) -> bytes:
        doc.pop(key, None)
        return orjson.dumps(doc)

    return make


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], bytes]:
    def make(doc: dict[str, Any]) -> bytes:
        doc[key] = value
        return orjson.dumps(doc)

    return make


def _feature(value: Any) -> Callable[[dict[str, Any]], bytes]:
    def make(doc: dict[str, Any]) -> bytes:
        doc["features"]["x"] = value
        return orjson.dumps(doc)

    return make


def _token(token: bytes) -> Callable[[dict[str, Any]], bytes]:
    """A bare token (NaN, 1e400, a lone surrogate) as the value of feature "x"."""

    def make(doc: dict[str, Any]) -> bytes:
        doc["features"]["x"] = "__TOKEN__"
        return orjson.dumps(doc).replace(b'"__TOKEN__"', token)

    return make


_MALFORMED: list[Callable[[dict[str, Any]], bytes | None]] = [
    lambda doc: None,
    lambda doc: b"",
    lambda doc: orjson.dumps(doc)[:-3],
    # Duplicate keys (valid JSON; the last one wins): a feature's kind, the model.
    lambda doc: orjson.dumps(doc).replace(b'"features":{', b'"features":{"x":"dup","x":1.5,'),
    lambda doc: orjson.dumps(doc).replace(b'"model":', b'"model":"other","model":'),
    lambda doc: b"[1, 2]",
    lambda doc: b'"event"',
    lambda doc: orjson.dumps([doc]),
    _drop("event_id"),
    _drop("model"),
    _drop("timestamp"),
    _drop("features"),
    _drop("prediction"),
    _set("event_id", ""),
    _set("model", 5),
    _set("model", ""),
    _set("model_version", 3),
    _set("features", [1]),
    _set("features", None),
    _set("prediction", {}),
    _set("prediction", {"yes": "high"}),
    _set("prediction", {"yes": True}),
    _set("prediction", [0.5]),
    _set("prediction", None),
    _set("timestamp", "yesterday"),
    _set("timestamp", "2026-01-01T00:00:00"),
    _set("timestamp", "1969-12-31T23:59:59.999Z"),
    _set("timestamp", "9999-12-31T23:59:59-01:00"),
    _set("timestamp", -1),
    _set("timestamp", MAX_MS),
    _set("timestamp", 1e300),
    _set("timestamp", True),
    _set("schema_version", 2),
    _set("schema_version", True),
    _set("segment", {"region": 1}),
    _set("segment", "eu"),
    _set("segment", {"region": None}),
    _set("schema_version", 1.5),
    _feature([1]),
    _feature({"a": 1}),
    _token(b"NaN"),
    _token(b"1e400"),
    _token(b'"\\ud800"'),
]


def _stream(plan: StreamPlan) -> list[InputRecord]:
    """Offsets from 0; a Kafka timestamp on two records in three."""
    values = _Writer(plan).values()
    return [
        InputRecord("in", 0, i, value, 1000 + i if i % 3 else None)
        for i, value in enumerate(values)
    ]


# -- running and comparing ----------------------------------------------------------------


def _label(outcome: Outcome, n: int) -> None:
    """hypothesis statistics (``--hypothesis-show-statistics``): what the example reached."""
    result = outcome.result
    event(f"detections: {'yes' if result.detections else 'none'}")
    event(f"expired: {'yes' if result.expired else 'none'}")
    swept = max(result.processed.values(), default=0) >= SWEEP_EVERY
    event(f"sweep every {SWEEP_EVERY} events: {'yes' if swept else 'no'}")
    for reason in sorted({r.reason for r in result.rejections}):
        event(f"rejected: {reason}")
    event(f"full admissions: {10 * outcome.admissions // max(1, n) * 10}%")


# -- properties ----------------------------------------------------------------------------


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    plan=stream_plans(),
    settings_name=st.sampled_from(("small", "small", "odd", "defaults")),
    batch=st.one_of(st.sampled_from((1, 2, 7, 64, SWEEP_EVERY)), st.integers(1, 500)),
    max_bytes=st.one_of(st.none(), st.none(), st.integers(180, 400)),
)
def test_compiled_loop_equals_reference_path(
    plan: StreamPlan, settings_name: str, batch: int, max_bytes: int | None
) -> None:
    """On any stream, the compiled loop in one batch and in batches of any size gives what
    the reference path gives: detections, rejections, counts, detector count, state."""
    settings_ = SETTINGS[settings_name]
    records = _stream(plan)
    run = functools.partial(run_batches, records, settings=settings_, max_bytes=max_bytes)
    expected = run(len(records), reference=True)
    whole = run(len(records), reference=False)
    _label(whole, len(records))
    assert_same(whole, expected, "compiled, one batch")
    assert_same(run(batch, reference=False), expected, f"compiled, batches of {batch}")


#: SMALL with other model settings: kinds configured the other way round, "x" ignored,
#: "request_id" and "late" no longer ignored, "txn" ignored for "churn".
RECONFIGURED = DetectionSettings(
    **{
        **SMALL.model_dump(exclude={"models"}),
        "models": {
            "fraud": ModelSettings(
                ignore_features=["x"],
                features={
                    "amount": FeatureSettings(kind="categorical"),
                    "score": FeatureSettings(kind="numeric"),
                    "request_id": FeatureSettings(kind="categorical"),
                },
            ),
            "churn": ModelSettings(
                features={
                    "country": FeatureSettings(kind="categorical"),
                    "txn": FeatureSettings(ignore=True),
                }
            ),
        },
    }
)
RECONFIGURATIONS = [
    (SMALL, RECONFIGURED),
    (RECONFIGURED, SMALL),
    (SMALL, ODD),
    (DEFAULTS, RECONFIGURED),
    (SMALL, SMALL),
]


@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    plan=stream_plans(),
    change=st.sampled_from(RECONFIGURATIONS),
    batch=st.one_of(st.sampled_from((1, 64)), st.integers(1, 500)),
    cut=st.floats(0.0, 1.0),
)
def test_reconfigured_midway_equals_reference_path(
    plan: StreamPlan, change: tuple[DetectionSettings, DetectionSettings], batch: int, cut: float
) -> None:
    """Settings reloaded midway (SIGHUP: reset monitors keep their kind but lose their
    trackers, ignored features go, configured kinds change): still identical."""
    before, after = change
    records = _stream(plan)
    at = int(cut * len(records))
    outcomes = []
    for reference in (True, False):
        first = run_batches(records[:at], batch, reference=reference, settings=before)
        reset = first.core.reconfigure(after)
        second = run_batches(
            records[at:], batch, reference=reference, settings=after, core=first.core
        )
        total = BatchResult()
        add_result(total, first.result)
        add_result(total, second.result)
        outcomes.append((reset, Outcome(second.core, total, second.active, 0)))
    (reset, expected), (got_reset, got) = outcomes
    assert got_reset == reset
    assert_same(got, expected, f"reconfigured at {at}, batches of {batch}")


SNAPSHOT_BATCHES = st.one_of(st.integers(1, 40), st.integers(41, 600))


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    plan=stream_plans(),
    settings_name=st.sampled_from(("small", "odd")),
    batch=SNAPSHOT_BATCHES,
    cut=st.floats(0.0, 1.0),
    on_reference=st.booleans(),
)
def test_snapshot_restored_midway_continues_identically(
    plan: StreamPlan, settings_name: str, batch: int, cut: float, on_reference: bool
) -> None:
    """The compiled loop (or the reference path) snapshotted once midway and restored
    into a fresh PartitionDetectors continues exactly as the uninterrupted reference path:
    a restore forgets the layouts and signature caches, and nothing else."""
    settings_ = SETTINGS[settings_name]
    records = _stream(plan)
    at = int(cut * len(records))
    expected = run_batches(records, len(records), reference=True, settings=settings_)
    got = run_batches(records, batch, reference=on_reference, settings=settings_, restore_at=[at])
    assert_same(got, expected, f"one snapshot, restored at {at}, batches of {batch}")


@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    plan=stream_plans(),
    settings_name=st.sampled_from(("small", "small", "odd")),
    batch=SNAPSHOT_BATCHES,
    cuts=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4),
    on_reference=st.booleans(),
)
def test_periodic_snapshots_restore_identically(
    plan: StreamPlan, settings_name: str, batch: int, cuts: list[float], on_reference: bool
) -> None:
    """A snapshot after every batch, the entries accumulated as the changelog keeps them
    (snapshot() returns only models changed since the last one), restored at up to four
    points (restarts, rebalances): the run continues exactly as the uninterrupted
    reference path, on either path."""
    settings_ = SETTINGS[settings_name]
    records = _stream(plan)
    at = [int(cut * len(records)) for cut in cuts]
    expected = run_batches(records, len(records), reference=True, settings=settings_)
    got = run_batches(
        records, batch, reference=on_reference, settings=settings_, restore_at=at, periodic=True
    )
    assert_same(got, expected, f"periodic snapshots, restored at {at}, batches of {batch}")


# -- regressions found by the properties outside the kernel (shrunk) ----------------------


def _event(i: int, ts: int, **features: Any) -> InputRecord:
    value = {"event_id": f"e{i}", "model": "m", "timestamp": ts, "features": features}
    return InputRecord("in", 0, i, orjson.dumps({**value, "prediction": 0.5}))


#: (settings, stream): a snapshot after each of the first two events, then a restore.
#: - "refused": event 1 is refused (too_many_features) without a sweep expiring anything;
#:   ModelState.refused becomes 1, which must reach the snapshot: otherwise the restored
#:   core has refused == 0, takes the sweep due at the "first" refusal (refused % 256 == 1)
#:   at event 2, forgets a and b and admits the event that the uninterrupted core refuses.
#: - "expired": the sweep at refused event 1 forgets a and b, yet the event is still
#:   refused; unless that sweep marks the model changed, the restored core still tracks b
#:   (and a's old monitor) and admits event 2 with 3 features instead of 2.
DIRTY_CASES = {
    "refused": (
        DetectionSettings(max_features_per_model=2, feature_ttl_s=1.0),
        [
            _event(0, 1000, a=1.0, b=1.0),
            _event(1, 1000, a=1.0, b=1.0, c=1.0),
            _event(2, 5000, a=1.0, c=1.0),
        ],
    ),
    "expired": (
        DetectionSettings(max_features_per_model=3, feature_ttl_s=1.0),
        [
            _event(0, 1000, a=1.0, b=1.0),
            _event(1, 5000, a=1.0, c=1.0, d=1.0, e=1.0),
            _event(2, 5000, a=1.0, c=1.0),
        ],
    ),
}


@pytest.mark.parametrize("reference", [False, True], ids=["compiled", "reference"])
@pytest.mark.parametrize("case", ["refused", "expired"])
def test_refused_event_is_in_the_next_snapshot(case: str, reference: bool) -> None:
    """A snapshot after every event, restored after the refused event: the restored core
    continues as the uninterrupted one."""
    settings_, records = DIRTY_CASES[case]
    expected = run_batches(records, 1, reference=reference, settings=settings_)
    refusals = [r.reason for r in expected.result.rejections]
    assert refusals == ["too_many_features"] * (2 if case == "refused" else 1)
    got = run_batches(
        records, 1, reference=reference, settings=settings_, restore_at=[2], periodic=True
    )
    assert_same(got, expected, f"{case}: restored after the refused event")


# -- the generator is not vacuous ----------------------------------------------------------

#: Three models (the third one over SMALL's max_models), colliding and unicode names, every
#: kind, ignored and configured features, left-out and reordered keys, every kind of oddity.
COVERAGE_PLAN = StreamPlan(
    seed=20261126,
    n=6000,
    models=(
        ModelPlan(
            name="fraud",
            features=(
                ("amount", "float"),
                ("txn", "int"),
                ("country", "str"),
                ("request_id", "str"),
                ("é", "bool"),
                ("late", "float"),
                ("x", "late"),
            ),
            prediction="float",
            labels="binary",
            p_label=0.3,
            p_include=0.97,
            p_null=0.05,
            p_shuffle=0.1,
            p_empty=0.02,
            weight=5.0,
        ),
        ModelPlan(
            name="模型",
            features=(("amount", "num"), ("e\u0301", "cat"), ("🙂", "str"), ("", "float")),
            prediction="dict",
            labels="mixed",
            p_label=0.3,
            p_include=0.7,
            p_null=0.05,
            p_shuffle=1.0,
            p_empty=0.02,
            weight=2.0,
        ),
        ModelPlan(
            name="churn",
            features=(("x", "int"),),
            prediction="str",
            labels="str",
            p_label=1.0,
            p_include=1.0,
            p_null=0.0,
            p_shuffle=0.0,
            p_empty=0.0,
            weight=1.0,
        ),
    ),
    p_kind_change=0.003,
    p_new_feature=0.003,
    p_malformed=0.01,
    p_odd=0.01,
    start_ms=1_767_225_600_000,
    step_ms=10,
    p_backwards=0.02,
    phase=400,
)


@pytest.fixture(scope="module")
def coverage_records() -> list[InputRecord]:
    return _stream(COVERAGE_PLAN)


def test_generator_reaches_the_interesting_paths(coverage_records: list[InputRecord]) -> None:
    """On a fixed plan the generated stream makes detectors of every drift type fire,
    rejects events for many reasons (kind changes, refused features and models among
    them), expires features at sweeps, and still leaves most events to the compiled loop;
    the compiled loop agrees with the reference path."""
    records = coverage_records
    expected = run_batches(records, len(records), reference=True, settings=SMALL)
    got = run_batches(records, 333, reference=False, settings=SMALL)
    assert_same(got, expected, "coverage plan")
    result = expected.result
    drift_types = Counter(d.drift_type for d in result.detections)
    assert set(drift_types) >= {
        "mean",
        "variance",
        "categorical",
        "missing_rate",
        "prediction",
        "performance",
    }, drift_types
    features = {(d.model, d.feature) for d in result.detections}
    assert any(not model.isascii() for model, _ in features)
    assert any(not feature.isascii() for _, feature in features)
    assert ("fraud", "request_id") not in features  # ignored
    reasons = Counter(r.reason for r in result.rejections)
    assert set(reasons) >= {
        "feature_type_changed",
        "too_many_features",
        "too_many_models",
        "not_json",
        "wrong_type",
        "missing_field",
        "bad_timestamp",
        "empty",
    }, reasons
    assert result.expired > 0
    assert max(result.processed.values()) > 2 * SWEEP_EVERY
    processed = sum(result.processed.values())
    assert processed > len(records) // 2
    # At least 90 % of the admitted events matched a known layout. Full admission takes
    # events of a new shape, kind, model or label, and those admission refuses (too many
    # models or features, a changed kind), which are among the rejections.
    assert got.admissions > 0
    assert got.admissions - len(result.rejections) < processed // 10, (got.admissions, processed)


def test_generator_writes_valid_events_mostly(coverage_records: list[InputRecord]) -> None:
    """Most generated messages parse; those that do not were meant to be malformed."""
    bad = 0
    for record in coverage_records:
        try:
            parse_event(record.value)
        except InvalidEvent:
            bad += 1
    assert 0 < bad < len(coverage_records) // 20
