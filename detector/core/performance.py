"""Performance drift: a model's error rate on its labelled predictions, and the evidence of
its alerts (error rates, counts, and for probability outputs accuracy and ROC AUC).

Each labelled prediction (its own label, or one joined from the labels topic by
:mod:`detector.core.labels`) becomes a 0/1 error:

* **classification with a score**: a number in [0, 1] (or class probabilities of two
  classes, one of them ``"1"`` or ``"true"``, whose probability is the score) against a
  0/1 or boolean label: wrong when ``score >= threshold`` disagrees with the label;
* **classification**: any other class prediction (a string, a boolean, the argmax of class
  probabilities) against the label as a class name: wrong when they differ;
* **regression**: a number against a number (not both 0/1-like): the absolute error,
  wrong when above the ``error_quantile`` (0.9) of the first ``reference_size`` absolute
  errors, which set the cut-off and are not fed (so the reference error rate is about
  10 %, and a rising rate means the errors grew).

The errors feed a :class:`~detector.core.trackers.RateTracker` with ``drift_type``
``performance`` that reports rising error rates only: the configured detector on block
error rates (ADWIN by default, like the missing rate) or, for River's binary detectors, on
every error (block size 1).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detector.core.hits import Hit
from detector.core.settings import BINARY_DETECTOR_NAMES, DetectionSettings, DetectorSpec
from detector.core.trackers import RateTracker, Ring
from detector.core.values import categorical

PERFORMANCE = "performance"
#: Class names read as the positive class of two-class probabilities.
POSITIVE = ("1", "true", "True", "yes", "positive")


def _number(value: Any) -> bool:
    """An int or a float (a bool is neither here)."""
    t = type(value)
    return t is float or t is int


def fingerprint(settings: DetectionSettings, model: str) -> str:
    """What the tracker's detections depend on: a change resets it (SIGHUP)."""
    spec = settings.performance_detector(model)
    labels = settings.labels
    return (
        f"{spec.name}{sorted(spec.params.items())}/{settings.block_size}/"
        f"{settings.reference_size}/{settings.window_size}/{settings.rearm_after}/"
        f"{labels.threshold}/{labels.error_quantile}"
    )


def binary_label(label: Any) -> int | None:
    if type(label) is bool:
        return int(label)
    if _number(label) and (label == 0 or label == 1):
        return int(label)
    return None


def score_of(prediction: Any) -> float | None:
    """The positive-class score of a probability output, if it is one."""
    if _number(prediction) and 0.0 <= prediction <= 1.0:
        return float(prediction)
    if type(prediction) is dict and len(prediction) == 2:
        for name in POSITIVE:
            if name in prediction:
                return float(prediction[name])
    return None


def _by_probability(item: tuple[str, float]) -> tuple[float, str]:
    return item[1], item[0]


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Mann-Whitney ROC AUC (ties count a half); None without both classes."""
    positives = int(labels.sum())
    negatives = labels.shape[0] - positives
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.shape[0], dtype=np.float64)
    sorted_scores = scores[order]
    # Average ranks over ties.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(average, counts)
    u = float(ranks[labels == 1].sum()) - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))


class PerformanceTracker:
    """The error rate of one model's labelled predictions on one partition."""

    def __init__(self, spec: DetectorSpec, settings: DetectionSettings, fingerprint: str) -> None:
        binary = spec.name in BINARY_DETECTOR_NAMES
        self.fingerprint = fingerprint
        self.rate = RateTracker(spec, settings, PERFORMANCE, 1 if binary else 0, rising=True)
        self.threshold = settings.labels.threshold
        self.quantile = settings.labels.error_quantile
        self.reference_size = settings.reference_size
        self.window_size = settings.window_size
        self.cutoff: float | None = None  # regression: the absolute error cut-off
        self.building: list[float] = []  # regression: reference absolute errors so far
        # Evidence windows of (error, score or nan, label or -1): the first reference_size
        # observations since the last detection, and the last window_size (rings).
        self.reference: list[tuple[int, float, int]] = []
        self._empty_window()
        self.labelled = 0

    def _empty_window(self) -> None:
        """The last window_size observations: a ring of each of the three numbers."""
        self.wrong = Ring(self.window_size)
        self.scores = Ring(self.window_size)
        self.positives = Ring(self.window_size)

    def _keep(self, wrong: int, score: float, positive: int) -> None:
        """One observation into the window (the oldest drops out of a full one)."""
        self.wrong.add(wrong)
        self.scores.add(score)
        self.positives.add(positive)

    def error(self, prediction: Any, label: Any) -> tuple[int, float, int] | None:
        """The 0/1 error of a labelled prediction, its score and 0/1 label (nan and -1 when
        not a scored binary decision); None while a regression reference builds."""
        positive = binary_label(label)
        if positive is not None:
            score = score_of(prediction)
            if score is not None:
                return int((score >= self.threshold) != bool(positive)), score, positive
        if _number(prediction) and _number(label) and positive is None:
            err = abs(float(prediction) - float(label))
            if self.cutoff is None:
                self.building.append(err)
                if len(self.building) >= self.reference_size:
                    self.cutoff = float(np.quantile(np.asarray(self.building), self.quantile))
                    self.building = []
                return None
            return int(err > self.cutoff), float("nan"), -1
        if type(prediction) is dict:
            watched = max(prediction.items(), key=_by_probability)[0]
        else:
            watched = categorical(prediction)
        return int(watched != categorical(label)), float("nan"), -1

    def observe(
        self, prediction: Any, label: Any, index: int, estimation: Any = None
    ) -> Hit | None:
        """Feed one labelled prediction; a hit when the error rate rose. A scored binary
        decision also calibrates ``estimation`` (an EstimatedPerformance), if given."""
        observed = self.error(prediction, label)
        if observed is None:
            return None
        wrong = observed[0]  # (compiled: C values)
        positive = observed[2]
        if estimation is not None and positive >= 0:
            estimation.learn(observed[1], positive)
        self.labelled += 1
        if len(self.reference) < self.reference_size:
            self.reference.append(observed)
        self._keep(wrong, observed[1], positive)
        fired = self.rate.fired
        hit = self.rate.flag(wrong != 0, index)
        if self.rate.fired == fired:
            return None
        evidence = None if hit is None else self._evidence()
        self.reference = []
        self._empty_window()
        if hit is None or evidence is None:
            return None
        hit.evidence["reference"] = evidence[0]
        hit.evidence["current"] = evidence[1]
        ref, cur = evidence[0]["error_rate"], evidence[1]["error_rate"]
        return Hit(
            index=hit.index,
            drift_type=PERFORMANCE,
            statistic="error_rate",
            detector={**hit.detector, "block_size": self.rate.k},
            effect=hit.effect,
            evidence=hit.evidence,
            description=f"error rate {ref:.1%} -> {cur:.1%}",
        )

    def realized_accuracy(self) -> float | None:
        """1 - the error rate of the last window_size labelled predictions."""
        current = self.current()
        if not current:
            return None
        return 1.0 - sum(o[0] for o in current) / len(current)

    def current(self) -> list[tuple[int, float, int]]:
        """The last window_size observations, oldest first."""
        return [
            (int(e), s, int(y))
            for e, s, y in zip(
                self.wrong.ordered(), self.scores.ordered(), self.positives.ordered(), strict=True
            )
        ]

    def _evidence(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        current = self.current()
        if not self.reference or not current:
            return None
        return _window(self.reference, self.cutoff), _window(current, self.cutoff)

    def __getstate__(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "rate": self.rate,
            "threshold": self.threshold,
            "quantile": self.quantile,
            "reference_size": self.reference_size,
            "window_size": self.window_size,
            "cutoff": self.cutoff,
            "building": list(self.building),
            "reference": [list(o) for o in self.reference],
            "current": [list(o) for o in self.current()],
            "labelled": self.labelled,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.fingerprint = state["fingerprint"]
        self.rate = state["rate"]
        self.threshold = state["threshold"]
        self.quantile = state["quantile"]
        self.reference_size = state["reference_size"]
        self.window_size = state["window_size"]
        self.cutoff = state["cutoff"]
        self.building = list(state["building"])
        self.reference = [(int(e), float(s), int(y)) for e, s, y in state["reference"]]
        self._empty_window()
        for e, s, y in state["current"]:
            self._keep(int(e), float(s), int(y))
        self.labelled = state["labelled"]

    def __reduce__(self) -> tuple[Any, ...]:
        from detector.core.trackers import _restore

        return (_restore, (PerformanceTracker, self.__getstate__()))


def _window(observed: list[tuple[int, float, int]], cutoff: float | None) -> dict[str, Any]:
    """Error rate and count of a window; accuracy and ROC AUC when scored."""
    errors = np.asarray([o[0] for o in observed], dtype=np.float64)
    rate = float(errors.mean())
    window: dict[str, Any] = {"error_rate": round(rate, 6), "count": len(observed)}
    scored = [o for o in observed if o[2] >= 0]
    if cutoff is not None:
        window["error_cutoff"] = round(cutoff, 6)
    else:
        window["accuracy"] = round(1.0 - rate, 6)
    if len(scored) == len(observed):
        scores = np.asarray([o[1] for o in scored], dtype=np.float64)
        labels = np.asarray([o[2] for o in scored], dtype=np.int64)
        auc = roc_auc(scores, labels)
        window["roc_auc"] = None if auc is None else round(auc, 6)
        window["positive_rate"] = round(float(labels.mean()), 6)
    return window


def legacy(tracker: RateTracker, fingerprint_now: str, settings: DetectionSettings) -> Any:
    """A format 4 error-rate tracker continued as the performance tracker: its detector and
    windows as they were (the next detection is where it would have been, reported as
    ``performance``, rising error rates only), the evidence windows empty."""
    perf = PerformanceTracker.__new__(PerformanceTracker)
    perf.fingerprint = fingerprint_now
    tracker.drift_type = PERFORMANCE
    tracker.rising = True
    perf.rate = tracker
    perf.threshold = settings.labels.threshold
    perf.quantile = settings.labels.error_quantile
    perf.reference_size = settings.reference_size
    perf.window_size = settings.window_size
    perf.cutoff = None
    perf.building = []
    perf.reference = []
    perf._empty_window()
    perf.labelled = 0
    return perf


__all__ = [
    "PERFORMANCE",
    "PerformanceTracker",
    "binary_label",
    "fingerprint",
    "roc_auc",
    "score_of",
]
