"""The compiled detection core against its references.

- The trackers (detector.core.trackers, compiled) against the oracle (oracle_trackers.py,
  a batch-at-a-time formulation of the same statistics).
- The native ADWIN (detector.core.detectors.Adwin) against River's ADWIN, through trackers.
- The compiled per-event loop against the same source run uncompiled (pure.py).

Every stream is seeded, so positions are asserted exactly: a test fails if either
implementation drifts, not only if they disagree.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import oracle_trackers
import orjson
import pure
import pytest
from kernel_support import Outcome, assert_same, new_core, run_batches
from river import drift

from detector.config import (
    DetectionSettings,
    DetectorSpec,
    FeatureSettings,
    ModelSettings,
)
from detector.core import trackers
from detector.core.detectors import Adwin, RiverDetector
from detector.core.engine import SWEEP_EVERY, PartitionDetectors
from detector.core.hits import Hit
from detector.core.records import BatchResult, InputRecord
from detector.tuning.synthetic import Drift, FeatureShape, StreamSpec, generate

# -- tracker streams ---------------------------------------------------------------------

DEFAULT = DetectionSettings()
#: Every change alerted (no once-per-change window), blocks of 5, a reference of 100 values
#: (not a multiple of the compiled rank search's buckets of 8): many hits.
BUSY = DetectionSettings(
    rearm_after=0,
    block_size=5,
    reference_size=100,
    window_size=100,
    max_categories=4,
    min_category_share=0.05,
)
#: Blocks of one value, odd reference and window sizes, few frequent categories.
TINY = DetectionSettings(
    rearm_after=300,
    block_size=1,
    reference_size=33,
    window_size=37,
    max_categories=2,
    min_category_share=0.2,
)
SETTINGS = {"default": DEFAULT, "busy": BUSY, "tiny": TINY}


def _normal(seed: int) -> np.ndarray:
    """Mean up, variance x3, mean down, variance down, back: 5000 values each."""
    rng = np.random.default_rng(seed)
    parts = [(0.0, 1.0), (0.5, 1.0), (0.5, 3**0.5), (-0.5, 1.0), (-0.5, 0.5), (0.0, 1.0)]
    return np.concatenate([rng.normal(mean, sd, 5000) for mean, sd in parts])


def _counts(seed: int) -> np.ndarray:
    """Integer values, full of ties: Poisson counts whose mean and spread change, a
    constant stretch (a reference without spread) and negative counts."""
    rng = np.random.default_rng(seed)
    parts = [
        rng.poisson(4, 5000),
        rng.poisson(5, 5000),
        2 * rng.poisson(5, 5000) - 5,
        np.full(1000, 3),
        rng.poisson(3, 4000),
    ]
    return np.concatenate(parts).astype(np.float64)


def _categories(seed: int) -> list[str]:
    """Four frequent categories and eight rare ones (0.5 % each); 20 points of share move
    from "a" to "d", then to the rare ones together, then back; last, unseen categories."""
    rng = np.random.default_rng(seed)
    names = ["a", "b", "c", "d"] + [f"rare{i}" for i in range(8)]
    base = np.array([0.5, 0.25, 0.15, 0.06] + [0.005] * 8)
    to_d = base.copy()
    to_d[0] -= 0.2
    to_d[3] += 0.2
    to_rare = base.copy()
    to_rare[0] -= 0.2
    to_rare[4:] += 0.2 / 8
    values: list[str] = []
    for shares in (base, to_d, to_rare, base):
        values += [names[i] for i in rng.choice(len(names), 5000, p=shares / shares.sum())]
    values += [f"new{rng.integers(3)}" if rng.random() < 0.3 else "a" for _ in range(3000)]
    return values


def _flags(seed: int) -> np.ndarray:
    """A missing flag whose rate goes 1 % -> 25 % -> 5 % -> 60 % (5000 values each)."""
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.random(5000) < rate for rate in (0.01, 0.25, 0.25, 0.05, 0.6)])


#: name -> (reference class, compiled class, drift_type argument, values)
CASES: dict[str, tuple[type, type, str | None, Any]] = {
    "numeric": (oracle_trackers.NumericTracker, trackers.NumericTracker, None, _normal(1)),
    "counts": (oracle_trackers.NumericTracker, trackers.NumericTracker, None, _counts(2)),
    "prediction": (
        oracle_trackers.NumericTracker,
        trackers.NumericTracker,
        "prediction",
        _normal(3),
    ),
    "categorical": (
        oracle_trackers.CategoricalTracker,
        trackers.CategoricalTracker,
        None,
        _categories(4),
    ),
    "missing_rate": (oracle_trackers.RateTracker, trackers.RateTracker, "missing_rate", _flags(5)),
}

#: (case, settings) -> the absolute positions and drift types of the hits.
EXPECTED_HITS: dict[tuple[str, str], list[tuple[int, str]]] = {
    ("numeric", "default"): [(5759, "mean"), (10623, "variance")],
    ("numeric", "busy"): [
        (5459, "mean"),
        (10319, "variance"),
        (15339, "mean"),
        (20239, "variance"),
        (25299, "mean"),
    ],
    ("numeric", "tiny"): [
        (5292, "mean"),
        (10213, "variance"),
        (15218, "mean"),
        (20131, "variance"),
        (25156, "variance"),
    ],
    ("counts", "default"): [(5887, "mean"), (10559, "variance")],
    ("counts", "busy"): [
        (5479, "mean"),
        (10279, "variance"),
        (15199, "variance"),
        (16079, "variance"),
    ],
    ("counts", "tiny"): [(5324, "mean"), (10101, "variance"), (15166, "mean"), (16019, "variance")],
    ("prediction", "default"): [(5631, "prediction")],
    ("prediction", "busy"): [
        (5419, "prediction"),
        (10379, "prediction"),
        (15319, "prediction"),
        (20259, "prediction"),
        (25279, "prediction"),
    ],
    ("prediction", "tiny"): [
        (5272, "prediction"),
        (10285, "prediction"),
        (15202, "prediction"),
        (20143, "prediction"),
        (25144, "prediction"),
    ],
    ("categorical", "default"): [(5567, "categorical")],
    ("categorical", "busy"): [
        (5239, "categorical"),
        (10259, "categorical"),
        (15439, "categorical"),
        (20259, "categorical"),
    ],
    ("categorical", "tiny"): [
        (5140, "categorical"),
        (15177, "categorical"),
        (20318, "categorical"),
    ],
    ("missing_rate", "default"): [(5311, "missing_rate")],
    ("missing_rate", "busy"): [
        (5139, "missing_rate"),
        (15379, "missing_rate"),
        (20099, "missing_rate"),
    ],
    ("missing_rate", "tiny"): [
        (5055, "missing_rate"),
        (15267, "missing_rate"),
        (20035, "missing_rate"),
    ],
}


def _absolute(hits: list[Hit], start: int) -> list[Hit]:
    """Hits indexed into the whole stream (a tracker indexes them into each update)."""
    return [dataclasses.replace(hit, index=start + hit.index) for hit in hits]


def _reference_hits(case: str, settings: DetectionSettings, chunk: int) -> list[Hit]:
    reference_cls, _, drift_type, values = CASES[case]
    tracker = reference_cls(settings.detector, settings, drift_type)
    hits: list[Hit] = []
    for start in range(0, len(values), chunk):
        hits += _absolute(tracker.update(values[start : start + chunk]), start)
    return hits


def _compiled(case: str, settings: DetectionSettings) -> Any:
    _, compiled_cls, drift_type, _ = CASES[case]
    return compiled_cls(settings.detector, settings, drift_type)


def _items(values: Any) -> list[Any]:
    """Python values, as the engine hands them to a compiled tracker one at a time."""
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def _one_by_one(tracker: Any, values: Sequence[Any], start: int = 0) -> list[Hit]:
    hits: list[Hit] = []
    for i, value in enumerate(values):
        hits += _absolute(tracker.update((value,)), start + i)
    return hits


def _compiled_hits(case: str, settings: DetectionSettings) -> list[Hit]:
    return _one_by_one(_compiled(case, settings), _items(CASES[case][3]))


def _detectors(tracker: Any) -> list[Any]:
    if hasattr(tracker, "detector"):
        return [tracker.detector]
    if hasattr(tracker, "mean_det"):
        return [tracker.mean_det, tracker.spread_det]
    return list(tracker.detectors)


def _where(hits: list[Hit]) -> list[tuple[int, str]]:
    return [(hit.index, hit.drift_type) for hit in hits]


@pytest.fixture(scope="module")
def compiled_hits() -> dict[tuple[str, str], list[Hit]]:
    """The compiled trackers' hits, value by value, for every case and settings."""
    return {
        (case, name): _compiled_hits(case, settings)
        for case in CASES
        for name, settings in SETTINGS.items()
    }


CASE_SETTINGS = [(case, name) for case in CASES for name in SETTINGS]
NUMERIC_CASE_SETTINGS = [
    (case, name) for case, name in CASE_SETTINGS if CASES[case][1] is trackers.NumericTracker
]


class TestTrackersMatchReference:
    @pytest.mark.parametrize(("case", "settings"), CASE_SETTINGS)
    def test_exact_hits(
        self, compiled_hits: dict[tuple[str, str], list[Hit]], case: str, settings: str
    ) -> None:
        """The compiled tracker, fed value by value, hits at known positions."""
        assert _where(compiled_hits[case, settings]) == EXPECTED_HITS[case, settings]

    @pytest.mark.parametrize("chunk", [1, 7, 333, 10**9])
    @pytest.mark.parametrize(("case", "settings"), CASE_SETTINGS)
    def test_same_hits_as_reference(
        self,
        compiled_hits: dict[tuple[str, str], list[Hit]],
        case: str,
        settings: str,
        chunk: int,
    ) -> None:
        """The reference tracker, in any batching, gives exactly the compiled tracker's hits:
        positions, drift types, statistics, detectors, effects, evidence, descriptions."""
        expected = compiled_hits[case, settings]
        assert _reference_hits(case, SETTINGS[settings], chunk) == expected

    @pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "uncompiled"])
    @pytest.mark.parametrize("ahead", ["same", "other"])
    @pytest.mark.parametrize(("case", "settings"), NUMERIC_CASE_SETTINGS)
    def test_prepared_ranks_change_nothing(
        self,
        compiled_hits: dict[tuple[str, str], list[Hit]],
        case: str,
        settings: str,
        ahead: str,
        compiled: bool,
    ) -> None:
        """``prepare(x)`` before each value (as the engine's layout match does) leaves the
        hits and the state as they were; so does preparing a different value (the bucket
        found for it is not used for another)."""
        drift_type, values = CASES[case][2], _items(CASES[case][3])
        module = trackers if compiled else pure.core().trackers
        tracker = module.NumericTracker(SETTINGS[settings].detector, SETTINGS[settings], drift_type)
        plain = module.NumericTracker(SETTINGS[settings].detector, SETTINGS[settings], drift_type)
        hits: list[Hit] = []
        for i, value in enumerate(values):
            tracker.prepare(value if ahead == "same" else value + 0.5 + i % 3)
            hits += _absolute(tracker.update((value,)), i)
            plain.update((value,))
        assert _where(hits) == _where(compiled_hits[case, settings])
        if compiled:  # (the uncompiled module's hits are of its own Hit class)
            assert hits == compiled_hits[case, settings]
        state, expected = tracker.__getstate__(), plain.__getstate__()
        for key in ("seen", "since", "cnt", "sum_a", "sum_b", "building"):
            assert state[key] == expected[key], key
        np.testing.assert_array_equal(state["reference"], expected["reference"])

    @pytest.mark.parametrize("case", list(CASES))
    def test_compiled_batching_does_not_matter(
        self, compiled_hits: dict[tuple[str, str], list[Hit]], case: str
    ) -> None:
        """The compiled tracker fed in uneven chunks hits as when fed value by value."""
        items = _items(CASES[case][3])
        tracker = _compiled(case, BUSY)
        hits: list[Hit] = []
        start = 0
        for size in [1, 7, 333, 2, 4096] * 100:
            hits += _absolute(tracker.update(items[start : start + size]), start)
            start += size
        assert start >= len(items)
        assert hits == compiled_hits[case, "busy"]

    @pytest.mark.parametrize("case", list(CASES))
    def test_same_state_as_reference(self, case: str) -> None:
        """After the stream both trackers have seen as many values, re-learned their
        references at the same points and remember the same last change per drift type
        (suppressed changes included)."""
        for settings in SETTINGS.values():
            reference_cls, _, drift_type, values = CASES[case]
            reference = reference_cls(settings.detector, settings, drift_type)
            reference.update(values)
            compiled = _compiled(case, settings)
            compiled.update(_items(values))
            state = compiled.__getstate__()
            assert state["seen"] == reference.seen == len(values)
            assert state["rearm"].last == reference.rearm.last
            if case == "missing_rate":
                assert compiled.rates() == reference.rates()
            elif case == "categorical":
                assert state["codes"] == reference.codes
                assert state["ref_counts"] == reference.ref_counts
                assert state["building"] == reference.building
            else:
                assert state["building"] == reference.building
                np.testing.assert_array_equal(state["reference"], reference.reference)

    def test_streams_reach_the_corner_cases(
        self, compiled_hits: dict[tuple[str, str], list[Hit]]
    ) -> None:
        """The streams exercise the rare paths: a change in the rare categories (the
        "__other__" detector), a constant reference (no effect size), suppressed repeats."""
        categories = {hit.evidence["category"] for hit in compiled_hits["categorical", "busy"]}
        assert "__other__" in categories
        assert None in {hit.effect for hit in compiled_hits["counts", "busy"]}
        reference = oracle_trackers.NumericTracker(DEFAULT.detector, DEFAULT, "prediction")
        reference.update(CASES["prediction"][3])
        assert reference.rearm.last["prediction"] > EXPECTED_HITS["prediction", "default"][0][0]

    @pytest.mark.parametrize("case", list(CASES))
    @pytest.mark.parametrize("cut", [2503, 10001, 15200])
    def test_pickled_tracker_resumes_identically(
        self, compiled_hits: dict[tuple[str, str], list[Hit]], case: str, cut: int
    ) -> None:
        """A compiled tracker pickled mid-stream (mid-block, mid-reference) continues with
        the uninterrupted tracker's hits."""
        items = _items(CASES[case][3])
        tracker = _compiled(case, BUSY)
        before = _one_by_one(tracker, items[:cut])
        copy = pickle.loads(pickle.dumps(tracker))
        after = _one_by_one(copy, items[cut:], cut)
        assert before + after == compiled_hits[case, "busy"]

    @pytest.mark.parametrize(
        "spec",
        [
            DetectorSpec(name="PageHinkley", params={"threshold": 20}),
            DetectorSpec(name="KSWIN", params={"alpha": 0.0001, "seed": 1}),
        ],
        ids=["PageHinkley", "KSWIN"],
    )
    @pytest.mark.parametrize("case", ["numeric", "categorical", "missing_rate"])
    def test_other_river_detectors(self, spec: DetectorSpec, case: str) -> None:
        """With a non-ADWIN River detector (public update/drift_detected on both sides) the
        trackers agree too."""
        reference_cls, compiled_cls, drift_type, values = CASES[case]
        values = values[:8000]
        reference = reference_cls(spec, DEFAULT, drift_type)
        expected = _absolute(reference.update(values), 0)
        compiled = compiled_cls(spec, DEFAULT, drift_type)
        assert _one_by_one(compiled, _items(values)) == expected
        assert expected


def _river_adwin(spec: DetectorSpec) -> RiverDetector:
    assert spec.name == "ADWIN"
    return RiverDetector("ADWIN", drift.ADWIN(**spec.params))


class TestRiverIsTheReference:
    @pytest.mark.parametrize(("case", "settings"), CASE_SETTINGS)
    def test_native_adwin_equals_river_adwin(
        self,
        monkeypatch: pytest.MonkeyPatch,
        compiled_hits: dict[tuple[str, str], list[Hit]],
        case: str,
        settings: str,
    ) -> None:
        """Oracle trackers whose detectors are river.drift.ADWIN driven through River's
        public update/drift_detected give exactly the hits of the compiled trackers, which
        run the native port of ADWIN."""
        monkeypatch.setattr(oracle_trackers, "build_detector", _river_adwin)
        reference_cls, _, drift_type, values = CASES[case]
        probe = reference_cls(DEFAULT.detector, DEFAULT, drift_type)
        probe.update(values[:1000])  # past the reference: the categorical detectors exist
        compiled = _compiled(case, DEFAULT)
        compiled.update(_items(values[:1000]))
        assert {type(d) for d in _detectors(probe)} == {RiverDetector}
        assert {type(d) for d in _detectors(compiled)} == {Adwin}
        assert _reference_hits(case, SETTINGS[settings], 333) == compiled_hits[case, settings]


# -- the per-event loop ------------------------------------------------------------------

FRAUD_DRIFTS = (
    Drift("score", "mean", 4000),
    Drift("channel", "categorical", 4000),
    Drift("amount", "missing_rate", 4000),
    Drift("utilisation", "variance", 4000),
    Drift("__prediction__", "prediction", 4000),
)
CREDIT_FEATURES = (
    FeatureShape("income", "lognormal", missing=0.02),
    FeatureShape("tenure", "poisson"),
    FeatureShape(
        "region",
        "categorical",
        0.0,
        ("north", "south", "east", "west", "r1", "r2", "r3"),
        (0.45, 0.3, 0.15, 0.07, 0.01, 0.01, 0.01),
    ),
)
CREDIT_DRIFTS = (
    Drift("income", "variance", 2500),
    Drift("tenure", "mean", 3000),
    Drift("region", "categorical", 3000, ramp=500),
)
CHURN_FEATURES = (
    FeatureShape("usage", "heavy"),
    FeatureShape("plan", "categorical", 0.0, ("basic", "pro"), (0.7, 0.3)),
)
CHURN_DRIFTS = (Drift("plan", "missing_rate", 2000), Drift("usage", "mean", 3000))

_BAD_EVENT = b'{"event_id": "x", "model": "fraud", "timestamp": 1, '
#: Messages that are not valid events, or not for these models' kinds.
MALFORMED: list[bytes | None] = [
    b"not json",
    b"",
    None,
    b"[1, 2]",
    b'{"model": "fraud"}',
    _BAD_EVENT + b'"features": [1], "prediction": 0.5}',
    _BAD_EVENT + b'"features": {}, "prediction": [0.5]}',
    _BAD_EVENT + b'"features": {"score": NaN}, "prediction": 0.5}',
    _BAD_EVENT + b'"features": {"score": [1]}, "prediction": 0.5}',
    _BAD_EVENT + b'"features": {"score": "high"}, "prediction": 0.5}',
    _BAD_EVENT + b'"features": {"channel": 3}, "prediction": 0.5}',
    _BAD_EVENT + b'"features": {}, "prediction": "yes"}',
    b'{"event_id": "x", "model": "fraud", "timestamp": "yesterday", "features": {}, '
    b'"prediction": 0.5}',
    b'{"event_id": "", "model": "fraud", "timestamp": 1, "features": {}, "prediction": 0.5}',
    b'{"event_id": "x", "model": "churn", "timestamp": 1, "features": {}, '
    b'"prediction": {"0": "high"}}',
    b'{"event_id": "x", "model": "churn", "timestamp": 1, "features": {}, "prediction": {}}',
    b'{"event_id": "x", "model": "churn", "timestamp": 1, "features": {}, "prediction": 0.5}',
]


def _fraud(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    """Every drift kind at event 4000, plus: int and float values of one numeric feature, a
    boolean feature whose share changes, a feature that appears at event 1500 and shifts at
    5000, one that is null for its first 1000 events, keys left out, nulls, reordered keys,
    and labels (0/1 or booleans) on half the events whose error rate rises at 4000."""
    events = list(generate(StreamSpec("fraud", n, seed=42, drifts=FRAUD_DRIFTS)))
    for i, event in enumerate(events):
        features = event["features"]
        if features["txn_count"] is not None and rng.random() < 0.5:
            features["txn_count"] = int(features["txn_count"])
        features["is_new_device"] = bool(rng.random() < (0.3 if i < 4000 else 0.6))
        features["delayed"] = None if i < 1000 else str(rng.choice(["x", "y", "z"]))
        if i >= 1500:
            features["late"] = round(float(rng.normal(0.0 if i < 5000 else 1.0, 1.0)), 4)
        if rng.random() < 0.04:
            del features[list(features)[rng.integers(len(features))]]
        if rng.random() < 0.03:
            features[list(features)[rng.integers(len(features))]] = None
        if rng.random() < 0.03:
            event["features"] = dict(reversed(features.items()))
        if rng.random() < 0.5:
            right = int(event["prediction"] >= 0.5)
            label = 1 - right if rng.random() < (0.1 if i < 4000 else 0.4) else right
            event["label"] = bool(label) if rng.random() < 0.3 else label
    return events


def _credit(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    """Rare categories, and events in the less usual documented shapes, which the compiled
    loop takes too: null model versions, segments, schema versions, RFC 3339 timestamps,
    int predictions."""
    events = list(
        generate(StreamSpec("credit", n, seed=7, features=CREDIT_FEATURES, drifts=CREDIT_DRIFTS))
    )
    for event in events:
        if rng.random() < 0.02:
            event["model_version"] = None
        if rng.random() < 0.01:
            event["segment"] = {"region": "eu"}
        if rng.random() < 0.01:
            event["schema_version"] = 1
        if rng.random() < 0.01:
            event["timestamp"] = "2026-01-01T00:00:00.5+00:00"
        if rng.random() < 0.01:
            event["prediction"] = int(event["prediction"] > 0.5)
    return events


def _churn(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    """Class-probability predictions, 0/1 labels on some events, some empty feature sets."""
    events = list(
        generate(StreamSpec("churn", n, seed=9, features=CHURN_FEATURES, drifts=CHURN_DRIFTS))
    )
    for i, event in enumerate(events):
        p = event["prediction"]
        event["prediction"] = {"0": round(1 - p, 6), "1": p}
        if rng.random() < 0.3:
            event["label"] = int(rng.random() < (0.5 if i < 2500 else 0.9))
        if rng.random() < 0.01:
            event["features"] = {}
    return events


def _irregular_stream() -> list[bytes | None]:
    """Three models interleaved at random, with malformed messages in between."""
    rng = np.random.default_rng(2024)
    queues = [_fraud(rng, 8000), _credit(rng, 4000), _churn(rng, 4000)]
    taken = [0, 0, 0]
    values: list[bytes | None] = []
    while any(taken[m] < len(queues[m]) for m in range(3)):
        m = int(rng.choice(3, p=[0.5, 0.25, 0.25]))
        if taken[m] == len(queues[m]):
            continue
        values.append(orjson.dumps(queues[m][taken[m]]))
        taken[m] += 1
        if rng.random() < 0.006:
            values.append(MALFORMED[int(rng.integers(len(MALFORMED)))])
    return values


def _records(values: Sequence[bytes | None]) -> list[InputRecord]:
    """Offsets from 0; a Kafka timestamp on two records in three."""
    return [
        InputRecord("in", 0, i, value, 1000 + i if i % 3 else None)
        for i, value in enumerate(values)
    ]


def _found(outcome: Outcome) -> list[tuple[int, str, str, str]]:
    return [(d.offset, d.model, d.feature, d.drift_type) for d in outcome.result.detections]


#: Ignored features, a numeric feature configured categorical (its ints and floats are
#: categories), another River detector for one model.
CONFIGURED = DetectionSettings(
    models={
        "fraud": ModelSettings(
            ignore_features=["latency"],
            features={
                "txn_count": FeatureSettings(kind="categorical"),
                "late": FeatureSettings(ignore=True),
            },
        ),
        "credit": ModelSettings(
            detector=DetectorSpec(name="PageHinkley", params={"threshold": 20})
        ),
    }
)


@pytest.fixture(scope="module")
def irregular() -> list[InputRecord]:
    return _records(_irregular_stream())


@pytest.fixture(scope="module")
def reference_run(irregular: list[InputRecord]) -> Outcome:
    return run_batches(irregular, 500, reference=True)


#: (offset, model, feature, drift_type) of the irregular stream's detections.
EXPECTED_DETECTIONS = [
    (2569, "fraud", "delayed", "missing_rate"),
    (8714, "fraud", "amount", "missing_rate"),
    (8938, "fraud", "is_new_device", "categorical"),
    (9078, "fraud", "utilisation", "variance"),
    (9471, "fraud", "channel", "categorical"),
    (9693, "fraud", "__prediction__", "prediction"),
    (9777, "churn", "plan", "missing_rate"),
    (10141, "fraud", "score", "mean"),
    (10268, "fraud", "__error__", "performance"),
    (10983, "fraud", "late", "mean"),
    (13138, "credit", "income", "variance"),
    (14458, "churn", "usage", "mean"),
    (15586, "credit", "region", "categorical"),
    (16057, "credit", "tenure", "mean"),
]
EXPECTED_REJECTIONS = {
    "wrong_type": 31,
    "feature_type_changed": 21,
    "empty": 14,
    "not_json": 9,
    "not_object": 6,
    "missing_field": 6,
    "bad_timestamp": 4,
    "non_finite": 2,
}


class TestLoopMatchesReferencePath:
    def test_reference_path_detections(self, reference_run: Outcome) -> None:
        """The reference path finds every injected change of the irregular stream, at known
        offsets, and rejects the malformed messages with known reasons."""
        assert _found(reference_run) == EXPECTED_DETECTIONS
        assert Counter(r.reason for r in reference_run.result.rejections) == EXPECTED_REJECTIONS
        assert reference_run.result.processed == {"fraud": 8000, "credit": 4000, "churn": 4000}
        assert reference_run.active == 73  # 71, and the estimated performance of 2 models

    @pytest.mark.parametrize("batch", [1, 7, 333, 10**9])
    def test_same_results_as_reference_path(
        self, irregular: list[InputRecord], reference_run: Outcome, batch: int
    ) -> None:
        """The compiled loop, in any batching, gives the reference path's detections (every
        field), rejections, processed counts, expiries, detector count and model state."""
        assert_same(run_batches(irregular, batch, reference=False), reference_run)

    def test_reference_path_batching_does_not_matter(
        self, irregular: list[InputRecord], reference_run: Outcome
    ) -> None:
        """The reference path gives the same results event by event as in batches."""
        assert_same(run_batches(irregular, 1, reference=True), reference_run)

    def test_loop_takes_most_events(self, irregular: list[InputRecord]) -> None:
        """Most events match a model's layout, those with left-out or reordered keys, RFC
        3339 times, segments and schema versions included; 29 take full admission: first
        events, new features, new kinds, first labels, and the next event of a model after
        a refused one (which rebuilds the model's layout). Rejected events and sweeps do
        not (before format 4 the reference path took 135: the rejected ones and sweeps)."""
        compiled = run_batches(irregular, 333, reference=False)
        assert compiled.admissions == 29
        assert compiled.admissions < len(irregular) // 10

    @pytest.mark.parametrize("batch", [1, 333, 10**9])
    def test_same_results_with_configured_models(
        self, irregular: list[InputRecord], batch: int
    ) -> None:
        """Ignored features, a kind override and a PageHinkley model: still identical."""
        expected = run_batches(irregular, 500, reference=True, settings=CONFIGURED)
        got = run_batches(irregular, batch, reference=False, settings=CONFIGURED)
        assert_same(got, expected)
        assert len(expected.result.detections) == 13
        assert "late" not in {d.feature for d in expected.result.detections}

    def test_prediction_last_seen_is_kept(self) -> None:
        """The prediction monitor's last_seen_ms (part of the snapshot) is the last event's
        time on both paths."""
        values = [
            orjson.dumps(
                {
                    "event_id": f"e{i}",
                    "model": "m",
                    "timestamp": 1000 + i,
                    "features": {"x": 1.0},
                    "prediction": 0.5,
                }
            )
            for i in range(2)
        ]
        outcomes = [run_batches(_records(values), 2, reference=r) for r in (True, False)]
        seen = [o.core.models["m"].prediction.last_seen_ms for o in outcomes]  # type: ignore[union-attr]
        assert seen[0] == 1001
        assert seen[1] == seen[0]


class TestSnapshots:
    @pytest.mark.parametrize("cut", [1, 2569, 8001, 12345])
    def test_restored_loop_continues_identically(
        self, irregular: list[InputRecord], reference_run: Outcome, cut: int
    ) -> None:
        """Snapshot the compiled loop's state, restore it into a fresh PartitionDetectors and
        continue: the same results as the uninterrupted run."""
        first = run_batches(irregular[:cut], 333, reference=False)
        restored = PartitionDetectors.restore(DEFAULT, "in", 0, first.core.snapshot())
        second = run_batches(irregular[cut:], 333, reference=False, core=restored)
        whole = BatchResult(
            detections=first.result.detections + second.result.detections,
            rejections=first.result.rejections + second.result.rejections,
            processed=dict(Counter(first.result.processed) + Counter(second.result.processed)),
            expired=first.result.expired + second.result.expired,
        )
        assert_same(Outcome(restored, whole, restored.active_detectors, 0), reference_run)

    @pytest.mark.parametrize("cut", [2569, 9500])
    def test_snapshots_of_both_paths_continue_identically(
        self, irregular: list[InputRecord], cut: int
    ) -> None:
        """The snapshots taken after the compiled and the uncompiled core hold the same
        models and, restored (each by its own code), continue with the same results."""
        outcomes = []
        for on_reference in (False, True):
            before = run_batches(irregular[:cut], 333, reference=on_reference)
            entries = before.core.snapshot()
            assert set(entries) == {"fraud", "credit", "churn"}
            core = type(before.core).restore(before.core.settings, "in", 0, entries)
            outcomes.append(run_batches(irregular[cut:], 333, reference=on_reference, core=core))
        assert outcomes[0].result.detections
        assert_same(outcomes[1], outcomes[0])


# -- sweeps ------------------------------------------------------------------------------

#: Features unseen for 3 s of event time (300 events of a model) are forgotten at sweeps;
#: at most 10 features per model, so new features wait for a sweep to make room.
SWEEPING = DetectionSettings(feature_ttl_s=3.0, max_features_per_model=10)


def _bursty_stream() -> list[bytes | None]:
    """A model whose extra features come and go: every 700 events a new numeric feature
    for 300 events, and every other 700 a categorical one on half the events; another
    model interleaved (one event in three)."""
    rng = np.random.default_rng(77)
    fraud = list(
        generate(StreamSpec("fraud", 6000, seed=3, drifts=(Drift("score", "mean", 3000),)))
    )
    credit = list(generate(StreamSpec("credit", 3000, seed=4, features=CREDIT_FEATURES)))
    for i, event in enumerate(fraud):
        features = event["features"]
        phase = i // 700
        if i % 700 < 300:
            features[f"burst_{phase}"] = float(rng.normal())
        if phase % 2 and rng.random() < 0.5:
            features[f"tag_{phase}"] = str(rng.choice(["x", "y"]))
    queues = [fraud, credit]
    taken = [0, 0]
    values: list[bytes | None] = []
    while taken[0] < len(fraud) or taken[1] < len(credit):
        m = int(rng.random() < 1 / 3)
        if taken[m] == len(queues[m]):
            m = 1 - m
        values.append(orjson.dumps(queues[m][taken[m]]))
        taken[m] += 1
    return values


def _event(i: int, timestamp: int, **features: object) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"e{i}",
            "model": "m",
            "timestamp": timestamp,
            "features": features,
            "prediction": 0.5,
        }
    )


@pytest.fixture(scope="module")
def bursty() -> list[InputRecord]:
    return _records(_bursty_stream())


@pytest.fixture(scope="module")
def expected(bursty: list[InputRecord]) -> Outcome:
    return run_batches(bursty, 500, reference=True, settings=SWEEPING)


class TestSweepsMatchReference:
    def test_reference_path_sweeps(self, expected: Outcome) -> None:
        """The stream makes sweeps forget features, and refuses new features until a sweep
        at a refused event makes room."""
        assert expected.result.expired == 10
        assert Counter(r.reason for r in expected.result.rejections) == {"too_many_features": 255}
        assert expected.result.processed == {"fraud": 5745, "credit": 3000}
        assert expected.active == 54
        assert _found(expected) == [
            (2742, "fraud", "burst_1", "missing_rate"),
            (3036, "fraud", "tag_1", "missing_rate"),
            (4902, "fraud", "tag_3", "missing_rate"),
            (5921, "fraud", "score", "mean"),
            (6939, "fraud", "burst_5", "missing_rate"),
            (7143, "fraud", "tag_5", "missing_rate"),
        ]

    @pytest.mark.parametrize("batch", [1, 7, 333, SWEEP_EVERY, 10**9])
    def test_same_results_as_reference_path(
        self, bursty: list[InputRecord], expected: Outcome, batch: int
    ) -> None:
        """With sweeps and refusals, the compiled loop still gives identical results."""
        assert_same(run_batches(bursty, batch, reference=False, settings=SWEEPING), expected)

    def test_stale_feature_sent_as_null_is_tracked_again(self) -> None:
        """A feature forgotten at a sweep whose event carries it as null is a new feature
        from the next event on, as on the reference path: its missing rate is tracked again
        and its return is detected at the same event."""
        last = SWEEP_EVERY + 4000
        values = [_event(0, 1000, x=1.0, k=1.0)]
        values += [_event(i, 1000 + 10 * i, x=1.0, k=None) for i in range(1, last - 2000)]
        values += [
            _event(i, 1000 + 10 * i, x=1.0, k=float(i % 7)) for i in range(last - 2000, last)
        ]
        settings = DetectionSettings(feature_ttl_s=1.0)
        records = _records(values)
        expected = run_batches(records, 500, reference=True, settings=settings)
        assert expected.result.expired == 1
        assert _found(expected) == [(3199, "m", "k", "missing_rate")]
        assert_same(run_batches(records, 500, reference=False, settings=settings), expected)
        # The sweep is at event 1023 (the model's 1024th); the next event registers k again.
        after_sweep = run_batches(
            records[: SWEEP_EVERY + 1], 500, reference=True, settings=settings
        )
        got = run_batches(records[: SWEEP_EVERY + 1], 500, reference=False, settings=settings)
        assert list(after_sweep.core.models["m"].features) == ["x", "k"]
        assert list(got.core.models["m"].features) == ["x", "k"]

    def test_event_at_epoch_zero(self) -> None:
        """An event timestamped 0 (epoch milliseconds) sets its features' last-seen time to
        0, which means never seen: a later sweep does not forget them, on both paths."""
        head = [_event(0, 1000, x=1.0, y=1.0), _event(1, 0, x=2.0, y=1.0)]
        tail = [_event(i, 10_000_000, x=None, y=1.0) for i in range(2, SWEEP_EVERY)]
        records = _records(head + tail)
        settings = DetectionSettings(feature_ttl_s=1.0)
        last_seen = []
        outcomes = []
        for reference in (True, False):
            core = new_core(settings, reference=reference)
            core.process(records[:2])
            last_seen.append(core.models["m"].features["x"].last_seen_ms)
            outcomes.append(run_batches(records[2:], 1, reference=reference, core=core))
        assert last_seen[0] == 0
        assert outcomes[0].result.expired == 0
        assert last_seen[1] == last_seen[0]
        assert outcomes[1].result.expired == outcomes[0].result.expired
