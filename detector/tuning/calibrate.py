"""``detector calibrate``: each detector's threshold chosen for a false-alarm budget.

For each model of the source (a stretch the team trusts to be stable):

1. The model's events are **block-bootstrapped** (circular blocks of ``block_length``
   consecutive events, drawn at random) into long simulated streams, so that short-range
   dependence inside a block survives, and each stream is run through the sidecar's own
   core (:func:`detector.tuning.replay.process_records`) with ``rearm_after = 0`` (every raw
   detection counts, none is suppressed as a repeat) at one setting of a **ladder** of loose
   settings of the threshold parameter (ADWIN ``delta``, KSWIN ``alpha``, PageHinkley
   ``threshold``). The detections of each feature (its missing rate included), of the
   prediction and of the error rate are counted: false alarms per event at that setting.
2. ``log(rate)`` is fitted against ``log(parameter)`` by weighted least squares (weights:
   the counts, Poisson; the scale inflated by the residuals when they are wider, as
   autocorrelation makes them), on the settings that gave enough alarms to count, with one
   slope for the features of one detector and a level per feature. The line is followed
   to the feature's share of the budget (the model's budget split evenly over its
   features, prediction and error rate), and the setting chosen is
   the one at which the **upper end of the 95 % interval** of the fitted rate meets that
   share. Below the tightest counted setting the line is followed with a slope no steeper
   than :data:`TAIL_SLOPES` (1 for ADWIN's ``delta`` and KSWIN's ``alpha``: the counted
   slope flattens towards it as the setting tightens; docs/tuning.md has the counts); how
   far it was followed is reported (``extrapolated``, in decades).
3. The expected delay for a one-standard-deviation mean shift (a 20-point category move for
   a categorical feature, a one-standard-deviation shift for a numeric prediction) is
   measured by injection (:mod:`detector.tuning.inject`) into bootstrapped streams, with the
   calibrated settings: the median over ``delay_runs`` streams.

Everything runs on the core `detector run` runs; nothing here knows how a tracker works.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from detector.core.events import InvalidEvent, parse_event
from detector.core.records import InputRecord
from detector.core.settings import ERROR, PREDICTION, DetectionSettings, DetectorSpec
from detector.core.values import kind_of
from detector.tuning.inject import FOUND_BY, InjectionError, inject, parse_injection
from detector.tuning.replay import process_records

#: Per detector: the threshold parameter and the ladder of loose settings (loosest first)
#: at which false alarms are counted. Measured on rank-uniform streams: the loosest gives
#: about 5e-5 false alarms per event per feature, the tightest about 1e-6.
LADDERS: dict[str, tuple[str, tuple[float, ...]]] = {
    "ADWIN": ("delta", (0.9, 0.6, 0.4, 0.25, 0.15, 0.1)),
    "KSWIN": ("alpha", (0.05, 0.02, 0.01, 0.005, 0.002, 0.001)),
    "PageHinkley": ("threshold", (3.0, 5.0, 8.0, 12.0, 18.0, 25.0)),
}

#: A setting counts towards the fit when it gave at least this many false alarms.
MIN_COUNT = 5
#: Fewer events of a model than this: refused (the reference and a window do not fit
#: often enough for the resampling to mean anything).
MIN_EVENTS = 2_000
#: Fewer than this: calibrated, with a warning in the output.
FEW_EVENTS = 20_000
Z95 = 1.959963984540054

_PERIODS_S = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86_400,
    "week": 7 * 86_400,
    "month": 30 * 86_400,
    "year": 365 * 86_400,
}
_ABBREVIATIONS = {
    "s": "second",
    "sec": "second",
    "min": "minute",
    "m": "minute",
    "h": "hour",
    "hr": "hour",
    "d": "day",
    "w": "week",
    "wk": "week",
    "mo": "month",
    "y": "year",
    "yr": "year",
}


class CalibrationError(ValueError):
    """A bad budget, rate or source for ``detector calibrate``; the message says which."""


def _unit_seconds(unit: str, what: str) -> int:
    name = unit.strip().lower()
    name = _ABBREVIATIONS.get(name, name)
    if name.endswith("s") and name[:-1] in _PERIODS_S:
        name = name[:-1]
    if name not in _PERIODS_S:
        raise CalibrationError(
            f"{what}: unknown time unit {unit!r} (expected one of {', '.join(_PERIODS_S)})"
        )
    return _PERIODS_S[name]


def parse_budget(text: str) -> tuple[float, float]:
    """``"1 per week"`` -> (false alarms, period in seconds). ``"3 per 2 days"`` works."""
    match = re.fullmatch(r"\s*([0-9.eE+-]+)\s*(?:per|/)\s*([0-9.]*)\s*([A-Za-z]+)\s*", text)
    if match is None:
        raise CalibrationError(f"--budget: expected 'N per UNIT' (e.g. '1 per week'), got {text!r}")
    count = _number(match.group(1), "--budget")
    periods = _number(match.group(2), "--budget") if match.group(2) else 1.0
    if count <= 0 or periods <= 0:
        raise CalibrationError(f"--budget: expected a positive count and period, got {text!r}")
    return count, periods * _unit_seconds(match.group(3), "--budget")


def parse_rate(text: str) -> float:
    """``"50/s"``, ``"3000/min"``, ``"20 per second"`` -> events per second."""
    match = re.fullmatch(r"\s*([0-9.eE+-]+)\s*(?:per|/)\s*([A-Za-z]+)\s*", text)
    if match is None:
        raise CalibrationError(f"--rate: expected 'N/UNIT' (e.g. '50/s'), got {text!r}")
    rate = _number(match.group(1), "--rate") / _unit_seconds(match.group(2), "--rate")
    if rate <= 0:
        raise CalibrationError(f"--rate: expected a positive rate, got {text!r}")
    return rate


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CalibrationError(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise CalibrationError(f"{what}: {text!r} is not a finite number")
    return value


@dataclass(frozen=True)
class Fit:
    """``log(rate) = a + b * log(parameter)`` for one feature, with the covariance of
    (a, b), over the settings fitted; beyond ``edge`` (the tightest of them), with a slope
    no steeper than ``tail`` (see :data:`TAIL_SLOPES`)."""

    a: float
    b: float
    cov: tuple[tuple[float, float], tuple[float, float]]
    edge: float = 0.0  # log of the tightest fitted setting
    tail: float | None = None  # the steepest slope followed beyond it (None: the fit's)

    def _line(self, x: float) -> tuple[float, float]:
        (caa, cab), (_, cbb) = self.cov
        variance = caa + 2 * cab * x + cbb * x * x
        return self.a + self.b * x, math.sqrt(max(variance, 0.0))

    def log_rate(self, x: float) -> tuple[float, float]:
        """The log rate at ``x = log(parameter)`` and its standard error."""
        tail = self.tail
        if tail is None or abs(self.b) <= tail or (x - self.edge) * self.b >= 0:
            return self._line(x)  # inside the fitted range, or the fit's slope is gentler
        mean, se = self._line(self.edge)
        return mean + math.copysign(tail, self.b) * (x - self.edge), se


#: The steepest slope (of log rate on log parameter) followed below the tightest counted
#: setting. ADWIN's ``delta`` and KSWIN's ``alpha`` are probabilities: far in the tail a
#: false alarm is a level crossing whose rate is about proportional to them (slope 1), while
#: at the loose settings counted the slope is steeper (about 1.4 for ADWIN) and flattens as
#: the setting tightens (counted: docs/tuning.md). Following the steeper fitted slope would
#: promise fewer false alarms than come. A Page-Hinkley threshold enters the run length
#: exponentially, so its log-log slope only steepens: the fitted one is followed.
TAIL_SLOPES: dict[str, float | None] = {"ADWIN": 1.0, "KSWIN": 1.0, "PageHinkley": None}


def fit_rates(
    points: dict[str, Sequence[tuple[float, int, int]]], tail: float | None = None
) -> dict[str, Fit]:
    """One weighted least-squares fit of ``log(alarms / events)`` on ``log(parameter)``
    for features of the same detector: a common slope, an intercept per feature.

    ``points``: per feature, (parameter, false alarms, events) at each setting. Settings
    with at least :data:`MIN_COUNT` alarms are used (a feature with none: every setting
    with an alarm); weights are the counts (the variance of a log Poisson count is about
    one over the count), and the covariance is scaled up by the residuals when they are
    wider than Poisson (autocorrelation). The slope is shared because it is the detector's
    (its threshold's effect on a rank-uniform or share statistic), while the level is the
    feature's; so a feature with few alarms borrows the slope of the others. Features
    without an alarm, or a pool with fewer than two settings, get no fit."""
    rows: list[tuple[int, float, float, float]] = []  # feature index, x, y, weight
    names: list[str] = []
    for name, feature_points in points.items():
        usable = [(p, n, e) for p, n, e in feature_points if n >= MIN_COUNT]
        if not usable:
            usable = [(p, n, e) for p, n, e in feature_points if n >= 1]
        if not usable:
            continue
        index = len(names)
        names.append(name)
        rows.extend((index, math.log(p), math.log(n / e), float(n)) for p, n, e in usable)
    if len({x for _, x, _, _ in rows}) < 2:
        return {}
    width = len(names) + 1
    design = np.zeros((len(rows), width))
    for r, (index, x, _, _) in enumerate(rows):
        design[r, index] = 1.0
        design[r, -1] = x
    y = np.array([row[2] for row in rows])
    w = np.array([row[3] for row in rows])
    normal = design.T @ (design * w[:, None])
    try:
        inverse = np.linalg.inv(normal)
    except np.linalg.LinAlgError:
        return {}
    coef = inverse @ (design.T @ (w * y))
    residuals = y - design @ coef
    dof = len(rows) - width
    dispersion = max(1.0, float(np.sum(w * residuals**2)) / dof) if dof > 0 else 1.0
    cov = inverse * dispersion
    # The tightest fitted setting: the end towards fewer alarms of the fitted range.
    xs = [x for _, x, _, _ in rows]
    edge = min(xs) if coef[-1] > 0 else max(xs)
    fits = {}
    for index, name in enumerate(names):
        fits[name] = Fit(
            float(coef[index]),
            float(coef[-1]),
            (
                (float(cov[index, index]), float(cov[index, -1])),
                (float(cov[-1, index]), float(cov[-1, -1])),
            ),
            edge=edge,
            tail=tail,
        )
    return fits


def _round_tighter(value: float, tighter_is_smaller: bool) -> float:
    """Three significant digits, rounded towards fewer false alarms."""
    if value <= 0:
        return value
    digits = 2 - math.floor(math.log10(value))
    scale = 10.0**digits
    rounded = (math.floor if tighter_is_smaller else math.ceil)(value * scale) / scale
    return float(f"{rounded:.3g}")


@dataclass
class FeatureCalibration:
    """What the calibration chose and measured for one feature of one model."""

    model: str
    feature: str
    kind: str
    base: DetectorSpec
    #: (parameter value, false alarms, simulated events) at each ladder setting.
    points: list[tuple[float, int, int]] = field(default_factory=list)
    target: float = 0.0
    spec: DetectorSpec | None = None  # None: kept as configured (see ``note``)
    rate: float | None = None
    interval: tuple[float, float] | None = None
    extrapolated: float = 0.0  # decades of rate below the tightest counted setting
    delay: float | None = None
    delay_kind: str | None = None
    note: str = ""

    @property
    def param(self) -> str:
        return LADDERS[self.base.name][0]

    @property
    def key(self) -> str:
        return f"models.{self.model}.features.{self.feature}.detector"


@dataclass
class ModelCalibration:
    model: str
    events: int
    rejected: int
    budget_per_event: float
    features: list[FeatureCalibration]
    warnings: list[str] = field(default_factory=list)

    def expected(self) -> tuple[float, float, float]:
        """The model's expected false alarms per event, all its detectors together, and
        an interval (the features' intervals added: conservative)."""
        rate = low = high = 0.0
        for feature in self.features:
            if feature.rate is not None and feature.interval is not None:
                rate += feature.rate
                low += feature.interval[0]
                high += feature.interval[1]
        return rate, low, high


@dataclass
class Calibration:
    budget: str
    rate: str
    source: str
    block_length: int
    simulated_events: int
    models: list[ModelCalibration]


def _calibrate_one(
    feature: FeatureCalibration,
    fit: Fit | None,
    tighter_is_smaller: bool,
    domain: tuple[float, float],
) -> None:
    """Choose ``feature.spec`` from its fit and target (see the module docstring)."""
    events = max((e for _, _, e in feature.points), default=0)
    loosest = feature.points[0][0]
    if fit is None:
        bound = 3.0 / events if events else math.inf  # Poisson 95 % for no event
        feature.interval = (0.0, bound)
        feature.rate = 0.0
        feature.note = (
            f"no false alarm in {events:,} simulated events even at the loosest "
            f"setting ({feature.param}={loosest:g}); kept as configured"
        )
        return
    if (fit.b > 0) != tighter_is_smaller:
        feature.note = "false alarms did not fall at tighter settings; kept as configured"
        return
    target = math.log(feature.target)

    def excess(x: float) -> float:
        mean, se = fit.log_rate(x)
        return mean + Z95 * se - target

    # The loosest allowed setting; the search runs towards tighter ones.
    x_loose = math.log(loosest)
    direction = -1.0 if tighter_is_smaller else 1.0
    x_tight = x_loose + direction * 30.0  # thirteen decades: as far as a fit is followed
    x_tight = min(max(x_tight, math.log(domain[0])), math.log(domain[1]))
    if excess(x_loose) <= 0:
        x = x_loose
    elif excess(x_tight) > 0:
        x = x_tight
        feature.note = "the budget is below what the fit can promise; set to the tightest allowed"
    else:
        lo, hi = x_loose, x_tight  # excess(lo) > 0 >= excess(hi)
        for _ in range(200):
            mid = (lo + hi) / 2
            if excess(mid) > 0:
                lo = mid
            else:
                hi = mid
        x = hi
    value = _round_tighter(math.exp(x), tighter_is_smaller)
    value = min(max(value, domain[0]), domain[1])
    mean, se = fit.log_rate(math.log(value))
    feature.rate = math.exp(mean)
    feature.interval = (math.exp(mean - Z95 * se), math.exp(mean + Z95 * se))
    counted = [n / e for _, n, e in feature.points if n >= 1]
    feature.extrapolated = max(0.0, math.log10(min(counted) / feature.rate))
    params = dict(feature.base.params)
    params[feature.param] = value
    feature.spec = DetectorSpec(name=feature.base.name, params=params)


#: The domain of each threshold parameter (open intervals, as River validates them).
_DOMAINS = {"ADWIN": (1e-300, 0.999), "KSWIN": (1e-300, 0.999), "PageHinkley": (1e-6, 1e12)}
_TIGHTER_IS_SMALLER = {"ADWIN": True, "KSWIN": True, "PageHinkley": False}


# -- simulation (run in worker processes; the model's events are inherited by fork) ----

_EVENTS: dict[str, list[bytes]] = {}


def bootstrap_indices(n: int, length: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """Circular block bootstrap: ``length`` indices into ``n`` events, in blocks of
    ``block`` consecutive ones starting at random."""
    block = max(1, min(block, n))
    starts = rng.integers(0, n, size=-(-length // block))
    indices = (starts[:, None] + np.arange(block)[None, :]) % n
    return indices.reshape(-1)[:length]


def _records(raw: list[bytes], indices: np.ndarray) -> Iterator[InputRecord]:
    for offset, i in enumerate(indices.tolist()):
        yield InputRecord("calibrate", 0, offset, raw[i])


def _count_alarms(
    model: str, settings: DetectionSettings, length: int, block: int, seed: Sequence[int]
) -> dict[str, int]:
    """False alarms per feature on one bootstrapped stream of ``length`` events."""
    raw = _EVENTS[model]
    indices = bootstrap_indices(len(raw), length, block, np.random.default_rng(list(seed)))
    counts: Counter[str] = Counter()
    for _, result in process_records(_records(raw, indices), settings):
        counts.update(d.feature for d in result.detections)
    return dict(counts)


def _delays(
    model: str,
    settings: DetectionSettings,
    specs: dict[str, str],
    start: int,
    after: int,
    block: int,
    seed: Sequence[int],
) -> dict[str, int | None]:
    """Per feature: events from an injected change (``specs``: feature -> --inject spec) to
    its first detection, on one bootstrapped stream (None: not found in ``after`` events)."""
    raw = _EVENTS[model]
    rng = np.random.default_rng(list(seed))
    indices = bootstrap_indices(len(raw), start + after, block, rng)
    events = [orjson.loads(raw[i]) for i in indices.tolist()]
    applied: dict[str, str] = {}
    for feature, spec in specs.items():
        try:
            inject(events, [parse_injection(spec)], seed=seed[-1])
        except InjectionError:
            continue
        applied[feature] = spec.split("kind=")[1].split(",")[0]
    found: dict[str, int | None] = dict.fromkeys(applied)
    records = (
        InputRecord("calibrate", 0, offset, orjson.dumps(event))
        for offset, event in enumerate(events)
    )
    for _, result in process_records(records, settings):
        for detection in result.detections:
            kind = applied.get(detection.feature)
            if (
                kind is not None
                and found[detection.feature] is None
                and detection.offset >= start
                and detection.drift_type in FOUND_BY[kind]
            ):
                found[detection.feature] = detection.offset - start
    return found


def _simulation_settings(
    detection: DetectionSettings, model: str, specs: dict[str, DetectorSpec]
) -> DetectionSettings:
    """``detection`` with ``specs`` as the model's per-feature detectors and every raw
    detection reported (no rearm, no feature forgotten for its age: bootstrapped blocks
    jump in event time)."""
    tree = detection.model_dump()
    models = tree.setdefault("models", {})
    entry = models.setdefault(model, {"ignore_features": [], "detector": None, "features": {}})
    for feature, spec in specs.items():
        feature_entry = entry["features"].setdefault(
            feature, {"kind": None, "ignore": False, "detector": None}
        )
        feature_entry["detector"] = spec.model_dump()
    tree["rearm_after"] = 0
    tree["feature_ttl_s"] = 1e12
    return DetectionSettings.model_validate(tree)


def calibrated_settings(
    detection: DetectionSettings, models: Sequence[ModelCalibration]
) -> DetectionSettings:
    """``detection`` with every calibrated feature's detector set (as the output file)."""
    tree = detection.model_dump()
    for model in models:
        entry = tree["models"].setdefault(
            model.model, {"ignore_features": [], "detector": None, "features": {}}
        )
        for feature in model.features:
            if feature.spec is not None:
                feature_entry = entry["features"].setdefault(
                    feature.feature, {"kind": None, "ignore": False, "detector": None}
                )
                feature_entry["detector"] = feature.spec.model_dump()
    return DetectionSettings.model_validate(tree)


# -- the driver -------------------------------------------------------------------------


def _split_by_model(
    records: Iterator[InputRecord], max_bytes: int
) -> tuple[dict[str, list[bytes]], dict[str, dict[str, str]], dict[str, bool], Counter[str]]:
    """Valid events by model (raw bytes), each model's feature kinds (numeric/categorical,
    by the first non-null value, as the engine admits them), whether it has labels, and
    the rejected events by reason."""
    events: dict[str, list[bytes]] = {}
    kinds: dict[str, dict[str, str]] = {}
    labelled: dict[str, bool] = {}
    rejected: Counter[str] = Counter()
    for record in records:
        try:
            event = parse_event(record.value, max_bytes)
        except InvalidEvent as exc:
            rejected[exc.reason] += 1
            continue
        assert record.value is not None
        events.setdefault(event.model, []).append(record.value)
        model_kinds = kinds.setdefault(event.model, {})
        for name, value in event.features.items():
            if value is not None and name not in model_kinds:
                model_kinds[name] = kind_of(value)
        if PREDICTION not in model_kinds:
            prediction = event.prediction
            model_kinds[PREDICTION] = (
                "categorical" if isinstance(prediction, dict) else kind_of(prediction)
            )
        if event.label is not None:
            labelled[event.model] = True
    return events, kinds, labelled, rejected


def _delay_spec(model: str, feature: str, kind: str, start: int) -> str | None:
    if feature == ERROR:
        return None
    if feature == PREDICTION:
        if kind != "numeric":
            return None
        return f"model={model},kind=prediction,shift=1sd,at={start}"
    if kind == "numeric":
        return f"model={model},feature={feature},kind=mean,shift=1sd,at={start}"
    return f"model={model},feature={feature},kind=categorical,shift=20,at={start}"


def calibrate(
    records: Iterator[InputRecord],
    detection: DetectionSettings,
    *,
    source: str,
    budget: str,
    rate: str | dict[str, str],
    only_model: str | None = None,
    simulated_events: int = 1_000_000,
    block_length: int = 1_000,
    delay_runs: int = 5,
    delay_horizon: int = 50_000,
    seed: int = 0,
    jobs: int | None = None,
    max_message_bytes: int = 1_048_576,
    progress: Callable[[int, int], None] | None = None,
) -> Calibration:
    """Calibrate every model of ``records`` (or ``only_model``). ``rate``: one rate for
    every model, or per model. Raises CalibrationError."""
    alarms, period_s = parse_budget(budget)
    events, kinds, labelled, rejected = _split_by_model(records, max_message_bytes)
    if only_model is not None:
        if only_model not in events:
            known = ", ".join(sorted(events)) or "none"
            raise CalibrationError(f"--model: no events of model {only_model!r} (models: {known})")
        events = {only_model: events[only_model]}
    if not events:
        raise CalibrationError(f"{source}: no valid prediction events")
    rates: dict[str, float] = {}
    for model in events:
        text = rate if isinstance(rate, str) else rate.get(model)
        if text is None:
            raise CalibrationError(f"--rate: no rate given for model {model!r}")
        rates[model] = parse_rate(text)
    models: list[ModelCalibration] = []
    for model, raw in sorted(events.items()):
        if len(raw) < MIN_EVENTS:
            raise CalibrationError(
                f"{source}: model {model!r} has {len(raw):,} valid events; calibration needs "
                f"at least {MIN_EVENTS:,} (a few tens of thousands to be worth trusting)"
            )
        names = [n for n in kinds[model] if n not in detection.ignored(model)]
        if labelled.get(model):
            names.append(ERROR)
        per_event = alarms / (rates[model] * period_s)
        features = [
            FeatureCalibration(
                model=model,
                feature=name,
                kind="rate" if name == ERROR else kinds[model][name],
                base=detection.feature_detector(model, name),
                target=per_event / len(names),
            )
            for name in sorted(names, key=lambda n: (n in (PREDICTION, ERROR), n == ERROR, n))
        ]
        warnings = []
        if len(raw) < FEW_EVENTS:
            warnings.append(
                f"only {len(raw):,} events of {model}: the resampling repeats them; "
                f"{FEW_EVENTS:,} or more are advised"
            )
        models.append(
            ModelCalibration(model, len(raw), sum(rejected.values()), per_event, features, warnings)
        )
    _EVENTS.clear()
    _EVENTS.update(events)
    try:
        _simulate(
            models,
            detection,
            simulated_events,
            block_length,
            delay_runs,
            delay_horizon,
            seed,
            jobs,
            progress,
        )
    finally:
        _EVENTS.clear()
    return Calibration(
        budget=budget,
        rate=rate if isinstance(rate, str) else ", ".join(f"{m}={r}" for m, r in rate.items()),
        source=source,
        block_length=block_length,
        simulated_events=simulated_events,
        models=models,
    )


def _executor(jobs: int | None) -> Any:
    workers = jobs or os.cpu_count() or 1
    if workers <= 1:
        return None
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))


class _Inline:
    """An executor that runs each call at once (one job)."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args))
        return future

    def shutdown(self) -> None:
        return None


def _simulate(
    models: list[ModelCalibration],
    detection: DetectionSettings,
    length: int,
    block: int,
    delay_runs: int,
    horizon: int,
    seed: int,
    jobs: int | None,
    progress: Callable[[int, int], None] | None,
) -> None:
    pool = _executor(jobs) or _Inline()
    steps = max(len(ladder[1]) for ladder in LADDERS.values())
    total = len(models) * steps * length
    total += len(models) * delay_runs * (4 * detection.reference_size + horizon)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    try:
        ladder_jobs: list[tuple[ModelCalibration, int, Future[dict[str, int]]]] = []
        for m_index, model in enumerate(models):
            for step in range(steps):
                specs = {}
                for feature in model.features:
                    param, values = LADDERS[feature.base.name]
                    params = dict(feature.base.params)
                    params[param] = values[min(step, len(values) - 1)]
                    specs[feature.feature] = DetectorSpec(name=feature.base.name, params=params)
                settings = _simulation_settings(detection, model.model, specs)
                future = pool.submit(
                    _count_alarms, model.model, settings, length, block, (seed, m_index, step)
                )
                ladder_jobs.append((model, step, future))
        for model, step, future in ladder_jobs:
            counts = future.result()
            for feature in model.features:
                values = LADDERS[feature.base.name][1]
                value = values[min(step, len(values) - 1)]
                if step < len(values):
                    feature.points.append((value, counts.get(feature.feature, 0), length))
            advance(length)
        for model in models:
            for name in LADDERS:
                pool_features = [f for f in model.features if f.base.name == name]
                fits = fit_rates(
                    {f.feature: f.points for f in pool_features}, tail=TAIL_SLOPES[name]
                )
                for feature in pool_features:
                    fit = fits.get(feature.feature)
                    _calibrate_one(feature, fit, _TIGHTER_IS_SMALLER[name], _DOMAINS[name])
        delay_jobs = []
        start = 4 * detection.reference_size
        for m_index, model in enumerate(models):
            specs_by_feature = {}
            for feature in model.features:
                spec = _delay_spec(model.model, feature.feature, feature.kind, start)
                if spec is not None:
                    specs_by_feature[feature.feature] = spec
            settings = calibrated_settings(detection, [model])
            runs = [
                pool.submit(
                    _delays,
                    model.model,
                    settings,
                    specs_by_feature,
                    start,
                    horizon,
                    block,
                    (seed, m_index, 1000 + run),
                )
                for run in range(delay_runs)
            ]
            delay_jobs.append((model, runs))
        for model, runs in delay_jobs:
            results = []
            for future in runs:
                results.append(future.result())
                advance(start + horizon)
            for feature in model.features:
                observed = [r[feature.feature] for r in results if feature.feature in r]
                if not observed:
                    continue
                feature.delay_kind = (
                    "1sd mean shift" if feature.kind == "numeric" else "20-point category move"
                )
                delays = sorted(math.inf if d is None else float(d) for d in observed)
                median = float(np.median(delays))
                feature.delay = None if math.isinf(median) else median
                if feature.delay is None:
                    feature.note = (
                        feature.note + "; " if feature.note else ""
                    ) + f"the change was not found within {horizon:,} events in most runs"
    finally:
        pool.shutdown()


__all__ = [
    "LADDERS",
    "TAIL_SLOPES",
    "Calibration",
    "CalibrationError",
    "FeatureCalibration",
    "Fit",
    "ModelCalibration",
    "bootstrap_indices",
    "calibrate",
    "calibrated_settings",
    "fit_rates",
    "parse_budget",
    "parse_rate",
]
