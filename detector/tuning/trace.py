"""What the HTML report plots: the stream, binned, in bounded memory (``replay --html``).

:class:`StreamTrace` is the backtest's ``trace`` (:class:`detector.tuning.backtest.Trace`):
it is shown every event with its position among its model's events, and keeps, per model
and per feature (the prediction as ``__prediction__``, the error rate as ``__error__``),
*bins* of ``width`` consecutive model events. Each bin holds:

* ``events``: the events during which the feature was known to the model (from the first
  event that had its key on; an event without the key counts as missing, as in the
  engine): the missing-rate tracker's observations;
* ``present``: of those, the events with a non-null value: the value tracker's
  observations;
* ``total`` and ``squares``: the sum and the sum of squares of the numeric values;
* ``categories``: per category, its count (categorical values, and a prediction that is
  a class or class probabilities, watched through their argmax); at most
  :data:`MAX_CATEGORIES` categories are kept, the others are counted in ``other``;
* for the error rate, ``events`` counts the labelled events and ``flags`` the wrong
  predictions; a label from the labels source (``replay --labels``) counts in the bin of
  its prediction (the realized accuracy of the predictions of that stretch);
* for the estimated accuracy (``__estimated__``, probability outputs once the model's
  estimation is calibrated), ``events`` counts the scored predictions and ``total`` the
  sum of their calibrated probabilities of being right (the core's own
  :class:`~detector.core.estimation.EstimatedPerformance`, calibrated on the same first
  labelled predictions as the core's: exact for a source of one partition).

Values become tracker input with the core's own functions (:func:`~detector.core.values.kind_of`,
:func:`~detector.core.values.categorical`, :func:`~detector.core.values.prediction_value`,
:meth:`~detector.core.performance.PerformanceTracker.error`). Memory is bounded whatever the
stream's length: bins start one event wide, and when a model has more than
:data:`MAX_BINS`, neighbouring bins are merged in pairs and the width doubles.

The trackers count *observations* (a feature's non-null values, its events, the labelled
events), not model events: :meth:`StreamTrace.position_of` maps the k-th observation back
to a model-event position, through the cumulative counts of the bins (exact for bins one
event wide; within a wider bin, observations are taken as evenly spread).

Predictions waiting for a label of the labels source are remembered (model, event id ->
position and prediction) up to ``detection.labels.max_pending`` per model, as the core's
join bounds them; the oldest are forgotten beyond it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from detector.core.estimation import EstimatedPerformance
from detector.core.performance import PerformanceTracker, fingerprint, score_of
from detector.core.settings import ERROR, PREDICTION, DetectionSettings
from detector.core.values import categorical, kind_of, prediction_value

#: Bins per model, at most (then neighbouring bins merge and the width doubles).
MAX_BINS = 1000
#: Categories kept per feature once bins merge (the most frequent ones); up to twice as
#: many are admitted in between. Others are counted together as ``other``.
MAX_CATEGORIES = 20

#: What a tracker observes (``observations``): a feature's non-null values (the value
#: tracker: mean, variance, categorical, prediction), the feature's events (the
#: missing-rate tracker), the labelled events (the error-rate tracker, feature ERROR).
VALUES = "values"
MISSING = "missing"
#: What the estimated-accuracy tracker observes: the scored predictions once calibrated.
SCORED = "scored"

#: The tracker (what it observes) behind each drift type.
TRACKER_OF = {
    "mean": VALUES,
    "variance": VALUES,
    "categorical": VALUES,
    "prediction": VALUES,
    "missing_rate": MISSING,
    "performance": MISSING,  # the error series' "events" are the labelled events
    "error_rate": MISSING,  # the same, as alerts of earlier releases call it
    "estimated_performance": SCORED,
}

_SCALARS = (str, int, float, bool)


class Series:
    """The bins of one feature of one model (lists aligned with the model's bins)."""

    __slots__ = (
        "categories",
        "configured",
        "events",
        "flags",
        "kind",
        "other",
        "present",
        "squares",
        "start",
        "total",
        "totals",
    )

    def __init__(self, bins: int, start: int, configured: str | None = None) -> None:
        #: "numeric" or "categorical" once a value told (or the config said: ``configured``).
        self.kind: str | None = configured
        self.configured = configured
        #: The model position of the first event that counted for this feature.
        self.start = start
        self.events = [0] * bins
        self.present = [0] * bins
        self.total = [0.0] * bins
        self.squares = [0.0] * bins
        self.flags = [0] * bins
        self.categories: dict[str, list[int]] = {}
        self.totals: dict[str, int] = {}
        self.other = [0] * bins

    def grow(self) -> None:
        """Add an empty bin at the end."""
        self.events.append(0)
        self.present.append(0)
        self.total.append(0.0)
        self.squares.append(0.0)
        self.flags.append(0)
        self.other.append(0)
        for counts in self.categories.values():
            counts.append(0)

    def number(self, b: int, x: float) -> None:
        self.events[b] += 1
        self.present[b] += 1
        self.total[b] += x
        self.squares[b] += x * x

    def category(self, b: int, name: str) -> None:
        self.events[b] += 1
        self.present[b] += 1
        counts = self.categories.get(name)
        if counts is None:
            if len(self.categories) >= 2 * MAX_CATEGORIES:
                self.other[b] += 1
                return
            counts = self.categories[name] = [0] * len(self.events)
            self.totals[name] = 0
        counts[b] += 1
        self.totals[name] += 1

    def merge(self) -> None:
        """Merge neighbouring bins in pairs; keep the MAX_CATEGORIES most frequent."""
        self.events = _pairs(self.events)
        self.present = _pairs(self.present)
        self.total = _pairs(self.total)
        self.squares = _pairs(self.squares)
        self.flags = _pairs(self.flags)
        other = _pairs(self.other)
        ranked = sorted(self.totals, key=lambda name: (-self.totals[name], name))
        kept: dict[str, list[int]] = {}
        for i, name in enumerate(ranked):
            counts = _pairs(self.categories[name])
            if i < MAX_CATEGORIES:
                kept[name] = counts
            else:
                other = [a + b for a, b in zip(other, counts, strict=True)]
                del self.totals[name]
        self.categories = {name: kept[name] for name in ranked[:MAX_CATEGORIES]}
        self.other = other

    def array(self, name: str) -> np.ndarray:
        """One per-bin field as a float array (``events``, ``present``, ``total``, ...)."""
        return np.asarray(getattr(self, name), dtype=np.float64)

    def share(self, category: str) -> np.ndarray:
        """The counts of a category per bin (zeros if it was not kept)."""
        counts = self.categories.get(category)
        if counts is None:
            return np.zeros(len(self.events))
        return np.asarray(counts, dtype=np.float64)


def _pairs(values: list[Any]) -> list[Any]:
    if len(values) % 2:
        values = [*values, 0]
    return [values[i] + values[i + 1] for i in range(0, len(values), 2)]


class ModelTrace:
    """The bins of one model: ``width`` events each, ``events`` model events so far."""

    def __init__(self, max_bins: int) -> None:
        self.max_bins = max_bins
        self.width = 1
        self.events = 0
        self.bins = 0
        self.features: dict[str, Series] = {}
        self.prediction: Series | None = None
        self.error: Series | None = None
        #: The errors, as the performance tracker makes them (its regression cut-off).
        self.errors: PerformanceTracker | None = None
        #: The estimated accuracy per bin, and the estimation that calibrates it.
        self.estimated: Series | None = None
        self.estimation: EstimatedPerformance | None = None
        #: Predictions waiting for a label of the labels source: event id -> (position,
        #: prediction), oldest first.
        self.pending: dict[str, tuple[int, Any]] = {}
        self.merges = 0

    def all_series(self) -> list[Series]:
        series = list(self.features.values())
        series += [s for s in (self.prediction, self.error, self.estimated) if s is not None]
        return series

    def bin(self, position: int) -> int:
        """The bin of ``position`` (bins added, merged as needed)."""
        b = position // self.width
        while b >= self.max_bins:
            for series in self.all_series():
                series.merge()
            self.width *= 2
            self.bins = (self.bins + 1) // 2
            self.merges += 1
            b = position // self.width
        while self.bins <= b:
            for series in self.all_series():
                series.grow()
            self.bins += 1
        return b

    def series(self, feature: str) -> Series | None:
        if feature == PREDICTION:
            return self.prediction
        if feature == ERROR:
            return self.error
        return self.features.get(feature)


class StreamTrace:
    """The backtest's trace for the report; ``settings`` (optional) for the features the
    config ignores or declares categorical, as the engine treats them."""

    def __init__(
        self, settings: DetectionSettings | None = None, *, max_bins: int = MAX_BINS
    ) -> None:
        if max_bins < 2:
            raise ValueError("max_bins must be at least 2")
        self.settings = settings or DetectionSettings()
        self.max_bins = max_bins
        self.models: dict[str, ModelTrace] = {}
        self._ignored: dict[str, frozenset[str]] = {}

    # -- collecting ---------------------------------------------------------------------

    def observe(self, model: str, position: int, event: dict[str, Any]) -> None:
        """One event of ``model``, the ``position``-th (from 0) of its events."""
        trace = self.models.get(model)
        if trace is None:
            trace = self.models[model] = ModelTrace(self.max_bins)
            self._ignored[model] = self.settings.ignored(model)
        trace.events = max(trace.events, position + 1)
        features = event.get("features")
        if features is None:
            features = {}
        prediction = event.get("prediction")
        if (
            not isinstance(features, dict)
            or prediction is None
            or not self._fits(trace, features, prediction)
        ):
            return  # the core rejects the event: no tracker sees it
        b = trace.bin(position)
        ignored = self._ignored[model]
        known = trace.features
        counted = 0
        for name, value in features.items():
            if name in ignored:
                continue
            series = known.get(name)
            if series is None:
                configured = self.settings.feature_kind(model, name)
                series = known[name] = Series(trace.bins, position, configured)
            counted += 1
            if value is None:
                series.events[b] += 1
                continue
            if series.kind is None:
                series.kind = kind_of(value)
            if series.kind == "numeric":
                series.number(b, value)
            else:
                series.category(b, categorical(value))
        if counted < len(known):  # features the event left out are missing
            for name, series in known.items():
                if name not in features:
                    series.events[b] += 1
        watched = prediction_value(prediction)
        if trace.prediction is None:
            kind = "categorical" if isinstance(prediction, dict) else kind_of(prediction)
            trace.prediction = Series(trace.bins, position, kind)
        if trace.prediction.kind == "numeric":
            trace.prediction.number(b, watched)  # type: ignore[arg-type]
        else:
            trace.prediction.category(b, categorical(watched))
        label = event.get("label")
        if label is not None:
            self._labelled(model, trace, position, prediction, label)
        elif self.settings.labels.join:
            event_id = event.get("event_id")
            if isinstance(event_id, str):
                pending = trace.pending
                pending.pop(event_id, None)
                pending[event_id] = (position, prediction)
                if len(pending) > self.settings.labels.max_pending:
                    del pending[next(iter(pending))]
        estimation = trace.estimation
        if estimation is not None and estimation.table is not None:
            score = score_of(prediction)
            if score is not None:
                if trace.estimated is None:
                    trace.estimated = Series(trace.bins, position)
                trace.estimated.events[b] += 1
                trace.estimated.total[b] += estimation.right(score)

    def observe_label(self, event: dict[str, Any]) -> None:
        """A label event of the labels source: counted with its waiting prediction."""
        model, event_id = event.get("model"), event.get("event_id")
        trace = self.models.get(model) if isinstance(model, str) else None
        if trace is None or not isinstance(event_id, str) or "label" not in event:
            return
        waiting = trace.pending.pop(event_id, None)
        if waiting is not None and event["label"] is not None:
            self._labelled(model, trace, waiting[0], waiting[1], event["label"])  # type: ignore[arg-type]

    def _labelled(
        self, model: str, trace: ModelTrace, position: int, prediction: Any, label: Any
    ) -> None:
        """A labelled prediction at ``position``: its error, and calibration material."""
        if trace.error is None or trace.errors is None:
            trace.error = Series(trace.bins, position)
            spec = self.settings.performance_detector(model)
            trace.errors = PerformanceTracker(
                spec, self.settings, fingerprint(self.settings, model)
            )
        observed = trace.errors.error(prediction, label)
        if observed is None:  # a regression reference still building
            return
        b = trace.bin(position)
        trace.error.events[b] += 1
        trace.error.flags[b] += observed[0]
        if observed[2] >= 0 and self.settings.estimated_performance.enabled:
            if trace.estimation is None:
                trace.estimation = EstimatedPerformance(self.settings)
            trace.estimation.learn(observed[1], observed[2])

    def _fits(self, trace: ModelTrace, features: dict[str, Any], prediction: Any) -> bool:
        """Whether the event's values have the kinds seen before (else the core rejects
        it as ``feature_type_changed``; other rejections are not mirrored)."""
        if trace.prediction is not None:
            kind = "categorical" if isinstance(prediction, dict) else kind_of(prediction)
            if kind != trace.prediction.kind:
                return False
        for name, value in features.items():
            if value is None:
                continue
            if not isinstance(value, _SCALARS):
                return False
            series = trace.features.get(name)
            if series is None or series.kind is None or series.configured == "categorical":
                continue
            if kind_of(value) != series.kind:
                return False
        return True

    # -- reading ------------------------------------------------------------------------

    def model(self, model: str) -> ModelTrace | None:
        return self.models.get(model)

    def observations(self, model: str, feature: str, tracker: str) -> np.ndarray:
        """A tracker's observations per bin (``VALUES``: non-null values; ``MISSING``: the
        feature's events; for ERROR, the labelled events; ``SCORED``: the scored
        predictions since the estimation was calibrated)."""
        trace = self.models.get(model)
        if tracker == SCORED:
            series = trace.estimated if trace is not None else None
            return np.zeros(0) if series is None else series.array("events")
        series = trace.series(feature) if trace is not None else None
        if series is None:
            return np.zeros(0)
        if feature == ERROR or tracker == MISSING:
            return series.array("events")
        return series.array("present")

    def count_at(self, model: str, feature: str, tracker: str, position: int) -> float:
        """How many observations the tracker had after the event at ``position``."""
        trace = self.models[model]
        counts = self.observations(model, feature, tracker)
        if not counts.size:
            return 0.0
        b = min(position // trace.width, int(counts.shape[0]) - 1)
        before = float(counts[:b].sum())
        lo = b * trace.width
        width = min(trace.width, max(trace.events - lo, 1))
        inside = min(position - lo + 1, width)
        return before + float(counts[b]) * inside / width

    def position_of(self, model: str, feature: str, tracker: str, k: float) -> int:
        """The model-event position of the tracker's ``k``-th observation (from 1), clipped
        to the stream."""
        trace = self.models[model]
        counts = self.observations(model, feature, tracker)
        if not counts.size or trace.events == 0:
            return 0
        cum = np.cumsum(counts)
        if k <= 0:
            k = 1
        b = int(np.searchsorted(cum, k - 1e-9, side="left"))
        if b >= cum.shape[0]:
            return trace.events - 1
        before = float(cum[b - 1]) if b else 0.0
        lo = b * trace.width
        width = min(trace.width, max(trace.events - lo, 1))
        fraction = (k - before) / float(counts[b])
        return int(min(lo + max(math.ceil(fraction * width) - 1, 0), trace.events - 1))


__all__ = [
    "MAX_BINS",
    "MAX_CATEGORIES",
    "MISSING",
    "SCORED",
    "TRACKER_OF",
    "VALUES",
    "Series",
    "StreamTrace",
]
