"""Performance estimated before labels arrive (``drift_type`` ``estimated_performance``): the
idea of NannyML's confidence-based performance estimation (CBPE), streaming.

For a classifier whose output is a probability (a score in [0, 1], or two-class
probabilities; see :func:`detector.core.performance.score_of`):

1. **Calibrate** on the first ``reference_size`` labelled predictions of the model (their
   scores and labels, whichever way the labels came): an isotonic regression of the label
   on the score (pool-adjacent-violators), tabulated on ``TABLE`` score bins, gives each
   score its calibrated probability ``p`` of the positive class.
2. **Estimate**, for every prediction from then on, labelled or not: the decision is
   ``score >= threshold``; the probability that it is right is ``q = p`` for a positive
   decision and ``1 - p`` for a negative one. A window's estimated accuracy is the mean of
   its ``q``; its 95 % interval is ``+-1.96 sqrt(sum q (1 - q)) / n`` (each decision right
   or wrong independently with its ``q``). The estimated ROC AUC of a window is the share
   of (positive, negative) pairs ordered right, each pair weighted by ``p_i (1 - p_j)``.
3. **Detect** a drop: the expected errors ``1 - q`` feed a detector on block means (ADWIN by
   default, as the missing rate), which alerts only when the estimated accuracy falls.

Assumptions (docs/detection.md): the calibration map of the reference window stays right
(probabilities calibrated, or calibrated by the map, on data like the reference); changes
are covariate shift only (the scores move, ``P(label | score)`` does not). Under concept
shift (the same scores, other labels) the estimate stays where it was and is wrong: the
realized performance drift, once labels arrive, is what finds it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from detector.core.detectors import build_detector
from detector.core.hits import Hit, Rearm, block_scale
from detector.core.settings import DetectionSettings
from detector.core.trackers import Ring

ESTIMATED = "estimated_performance"
#: Score bins of the tabulated calibration map.
TABLE = 1024
_TABLE = TABLE  # compiled: a C constant (estimation.pxd)


def isotonic(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool-adjacent-violators fit of ``labels`` on ``scores``: the blocks' mean scores and
    their fitted (non-decreasing) means. The blocks are a stack in three arrays (compiled,
    C loops over typed buffers: a calibration of 5,000 labels is a one-off, but it runs
    in the middle of a stream)."""
    order = np.argsort(scores, kind="mergesort")
    xs = np.ascontiguousarray(scores[order], dtype=np.float64)
    ys = np.ascontiguousarray(labels[order], dtype=np.float64)
    n = xs.shape[0]
    means = np.empty(n, dtype=np.float64)
    weights = np.empty(n, dtype=np.float64)
    centers = np.empty(n, dtype=np.float64)
    top = 0  # blocks on the stack
    for i in range(n):
        means[top] = ys[i]
        weights[top] = 1.0
        centers[top] = xs[i]
        top += 1
        while top > 1 and means[top - 2] >= means[top - 1]:
            w = weights[top - 2] + weights[top - 1]
            means[top - 2] = (
                means[top - 2] * weights[top - 2] + means[top - 1] * weights[top - 1]
            ) / w
            centers[top - 2] = (
                centers[top - 2] * weights[top - 2] + centers[top - 1] * weights[top - 1]
            ) / w
            weights[top - 2] = w
            top -= 1
    return np.asarray(centers)[:top].copy(), np.asarray(means)[:top].copy()


def calibration_table(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The calibrated probability at the centre of each of TABLE score bins."""
    centers, means = isotonic(scores, labels)
    grid = (np.arange(TABLE) + 0.5) / TABLE
    return np.asarray(np.interp(grid, centers, means), dtype=np.float64)


def expected_auc(scores: np.ndarray, probs: np.ndarray) -> float | None:
    """ROC AUC expected under calibrated probabilities: pairs (i positive, j negative)
    weighted ``p_i (1 - p_j)``, right when ``s_i > s_j`` (ties count a half)."""
    order = np.argsort(scores, kind="mergesort")
    s, p = scores[order], probs[order]
    neg = 1.0 - p
    # For each i, the negative weight of the scores below it, and of its ties.
    _, first, counts = np.unique(s, return_index=True, return_counts=True)
    cum_neg = np.concatenate(([0.0], np.cumsum(neg)))
    below = np.repeat(cum_neg[first], counts)
    tied = np.repeat(cum_neg[first + counts] - cum_neg[first], counts)
    right = float(np.sum(p * (below + 0.5 * (tied - neg))))
    total = float(p.sum() * neg.sum() - np.sum(p * neg))
    return None if total <= 0.0 else right / total


def score_bin(score: float) -> int:
    """The calibration table's bin of ``score``: ``floor(TABLE * score)``, and for a score
    outside [0, 1] (class probabilities are not range-checked) the nearest bin."""
    x = score * _TABLE
    if x >= _TABLE - 1:
        return _TABLE - 1
    if x <= 0.0:
        return 0
    return int(x)


def summary(scores: list[float], table: np.ndarray, threshold: float) -> dict[str, Any]:
    """Estimated accuracy (with its 95 % interval) and ROC AUC of a window of scores."""
    s = np.asarray(scores, dtype=np.float64)
    p = table[np.array([score_bin(score) for score in scores], dtype=np.int64)]
    q = np.where(s >= threshold, p, 1.0 - p)
    n = s.shape[0]
    accuracy = float(q.mean())
    half = 1.96 * math.sqrt(float(np.sum(q * (1.0 - q)))) / n
    auc = expected_auc(s, p)
    return {
        "count": n,
        "estimated_accuracy": round(accuracy, 6),
        "estimated_accuracy_ci": [
            round(max(0.0, accuracy - half), 6),
            round(min(1.0, accuracy + half), 6),
        ],
        "estimated_roc_auc": None if auc is None else round(auc, 6),
    }


class EstimatedPerformance:
    """The estimated accuracy of one model's scored predictions on one partition."""

    def __init__(self, settings: DetectionSettings) -> None:
        estimation = settings.estimated_performance
        self.fingerprint = fingerprint(settings)
        self.reference_size = estimation.reference_size
        self.ref_size = settings.reference_size
        self.window_size = settings.window_size
        self.threshold = settings.labels.threshold
        self.k = settings.block_size
        self.scale = block_scale(self.k)
        self.detector = build_detector(estimation.detector)
        self.rearm = Rearm(settings.rearm_after)
        self.calibrating_scores: list[float] = []
        self.calibrating_labels: list[int] = []
        self.table: np.ndarray | None = None
        #: The table, for the per-event lookups (compiled: a C array of its bins; not a
        #: list of Python floats, whose objects would each be a cache miss away).
        self._bins: Any = None
        self.realized_reference: float | None = None  # the calibration window's accuracy
        self.reference: list[float] = []  # the first ref_size scores since the last detection
        self.current = Ring(self.window_size)  # the last window_size scores
        self.acc = 0.0
        self.cnt = 0
        self.seen = 0

    def learn(self, score: float, positive: int) -> None:
        """A labelled scored prediction: calibration material until the map is fitted."""
        if self.table is not None:
            return
        self.calibrating_scores.append(score)
        self.calibrating_labels.append(positive)
        if len(self.calibrating_scores) >= self.reference_size:
            s = np.asarray(self.calibrating_scores)
            y = np.asarray(self.calibrating_labels)
            self.table = calibration_table(s, y)
            self._bins = self.table
            self.realized_reference = float(np.mean((s >= self.threshold) == (y == 1)))
            self.calibrating_scores = []
            self.calibrating_labels = []

    def observe(self, score: float, index: int) -> Hit | None:
        """A scored prediction (labelled or not); a hit when the estimated accuracy fell."""
        if self.table is None:
            return None
        q = self.right(score)
        self.seen += 1
        if len(self.reference) < self.ref_size:
            self.reference.append(score)
        self.current.add(score)
        self.acc += 1.0 - q
        self.cnt += 1
        if self.cnt < self.k:
            return None
        block = self.acc
        self.acc = 0.0
        self.cnt = 0
        if not self.detector.step(block * self.scale):
            return None
        return self._hit(index)

    def right(self, score: float) -> float:
        """The calibrated probability that the decision on ``score`` is right (``q``);
        only once the map is fitted (``table`` is not None)."""
        p = float(self._bins[score_bin(score)])
        return p if score >= self.threshold else 1.0 - p

    def _hit(self, index: int) -> Hit | None:
        table = self.table
        assert table is not None
        reference = summary(self.reference, table, self.threshold)
        current = summary(self.current.ordered(), table, self.threshold)
        self.reference = []
        self.current.clear()
        ref_acc = reference["estimated_accuracy"]
        cur_acc = current["estimated_accuracy"]
        if cur_acc >= ref_acc or not self.rearm.fresh(ESTIMATED, self.seen):
            return None
        # The windows' own labels are not known yet (the gauges and the backtest show the
        # realized accuracy once they are); the calibration window's are.
        reference["realized_accuracy"] = None
        current["realized_accuracy"] = None
        calibration = {
            "count": self.reference_size,
            "realized_accuracy": _round(self.realized_reference),
        }
        return Hit(
            index=index,
            drift_type=ESTIMATED,
            statistic="estimated_accuracy",
            detector=self.detector.describe(),
            effect=round((ref_acc - cur_acc) / 0.2, 6),
            evidence={"reference": reference, "current": current, "calibration": calibration},
            description=f"estimated accuracy {ref_acc:.1%} -> {cur_acc:.1%}",
        )

    def estimate(self) -> float | None:
        """The estimated accuracy of the last window_size scored predictions."""
        if self.table is None or len(self.current) == 0:
            return None
        return float(
            summary(self.current.ordered(), self.table, self.threshold)["estimated_accuracy"]
        )

    def __getstate__(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "reference_size": self.reference_size,
            "ref_size": self.ref_size,
            "window_size": self.window_size,
            "threshold": self.threshold,
            "k": self.k,
            "detector": self.detector,
            "rearm": self.rearm,
            "calibrating_scores": list(self.calibrating_scores),
            "calibrating_labels": list(self.calibrating_labels),
            "table": None if self.table is None else self.table.copy(),
            "realized_reference": self.realized_reference,
            "reference": list(self.reference),
            "current": self.current.ordered(),
            "acc": self.acc,
            "cnt": self.cnt,
            "seen": self.seen,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.fingerprint = state["fingerprint"]
        self.reference_size = state["reference_size"]
        self.ref_size = state["ref_size"]
        self.window_size = state["window_size"]
        self.threshold = state["threshold"]
        self.k = state["k"]
        self.scale = block_scale(self.k)
        self.detector = state["detector"]
        self.rearm = state["rearm"]
        self.calibrating_scores = list(state["calibrating_scores"])
        self.calibrating_labels = list(state["calibrating_labels"])
        self.table = state["table"]
        self._bins = self.table
        self.realized_reference = state["realized_reference"]
        self.reference = list(state["reference"])
        self.current = Ring(self.window_size, state["current"])
        self.acc = state["acc"]
        self.cnt = state["cnt"]
        self.seen = state["seen"]

    def __reduce__(self) -> tuple[Any, ...]:
        from detector.core.trackers import _restore

        return (_restore, (EstimatedPerformance, self.__getstate__()))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def fingerprint(settings: DetectionSettings) -> str:
    estimation = settings.estimated_performance
    spec = estimation.detector
    return (
        f"{spec.name}{sorted(spec.params.items())}/{estimation.reference_size}/"
        f"{settings.block_size}/{settings.window_size}/{settings.rearm_after}/"
        f"{settings.labels.threshold}"
    )


__all__ = ["ESTIMATED", "EstimatedPerformance", "calibration_table", "expected_auc", "isotonic"]
