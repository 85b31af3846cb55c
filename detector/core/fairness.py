"""Fairness drift (``drift_type`` ``fairness``): disparities of a model's decisions across the
values of a protected segment attribute (``segment.sex``, ``segment.age_band``), which are
usually not model features at all.

Per model and protected key, each group (a value of the key; at most ``max_values``, later
ones counted, not tracked) keeps its last ``window`` decisions, and, when labels arrive, its
last ``window`` labelled decisions:

* a **decision** is positive when the score is at or above ``detection.labels.threshold``
  (two-class probabilities: the positive class's), or the predicted class is one of
  :data:`detector.core.performance.POSITIVE`; a regression output is not a decision;
* a group counts once it has ``min_group_size`` decisions in its window;
* its **selection rate** is its share of positive decisions, with a Wilson 95 % interval;
* across the counted groups: the **demographic parity difference** (highest selection rate
  minus lowest), the **disparate impact ratio** (lowest over highest), and where labels
  exist the true and false positive rates per group, the **equal opportunity difference**
  (spread of the true positive rates) and the **equalized odds difference** (the larger of
  the spreads of the true and of the false positive rates).

Every ``EVALUATE_EVERY`` decisions of the model the disparity is evaluated; it is
*significantly outside* the four-fifths band when even the most favourable ratio the two
groups' intervals allow is below 0.8 (``upper(lowest) / lower(highest) < 0.8``). One alert
per such change: the key is then *outside* until the point estimate is back in the band
(then a new change can alert again). The evidence lists every metric per group, now
(``current``) and at an evaluation inside the band one to two lags earlier
(``reference``; a lag is the decisions that renew every group's window), and says it in
words.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from detector.core.hits import Hit
from detector.core.performance import POSITIVE, score_of
from detector.core.values import categorical

FAIRNESS = "fairness"
#: The disparity is evaluated every this many decisions of a model (per protected key).
EVALUATE_EVERY = 256
#: The four-fifths band of the disparate impact ratio.
BAND = (0.8, 1.25)
_Z = 1.96


def decision(prediction: Any, threshold: float) -> int | None:
    """1 for a positive decision, 0 for a negative one, None for no decision."""
    score = score_of(prediction)
    if score is not None:
        return int(score >= threshold)
    if type(prediction) in (str, bool):
        return int(categorical(prediction) in POSITIVE)
    if type(prediction) is dict:
        best = max(prediction.items(), key=_by_probability)[0]
        return int(best in POSITIVE)
    return None


def _by_probability(item: tuple[str, float]) -> tuple[float, str]:
    return item[1], item[0]


def wilson(positives: int, n: int) -> tuple[float, float]:
    """Wilson score 95 % interval of a proportion."""
    if n == 0:
        return 0.0, 1.0
    p = positives / n
    denominator = 1.0 + _Z * _Z / n
    centre = (p + _Z * _Z / (2 * n)) / denominator
    half = _Z * math.sqrt(p * (1 - p) / n + _Z * _Z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


class Group:
    """One group's windows: its last decisions, and its last labelled decisions."""

    __slots__ = ("decisions", "fp", "labelled", "neg_labels", "pos_labels", "positives", "tp")

    def __init__(self, window: int) -> None:
        self.decisions: deque[int] = deque(maxlen=window)
        self.labelled: deque[tuple[int, int]] = deque(maxlen=window)
        self.positives = 0
        self.tp = 0  # positive decisions on positive labels
        self.fp = 0  # positive decisions on negative labels
        self.pos_labels = 0
        self.neg_labels = 0

    def decide(self, d: int) -> None:
        window = self.decisions
        if len(window) == window.maxlen:
            self.positives -= window[0]
        window.append(d)
        self.positives += d

    def label(self, d: int, y: int) -> None:
        window = self.labelled
        if len(window) == window.maxlen:
            old_d, old_y = window[0]
            self._count(old_d, old_y, -1)
        window.append((d, y))
        self._count(d, y, 1)

    def _count(self, d: int, y: int, sign: int) -> None:
        if y:
            self.pos_labels += sign
            self.tp += sign * d
        else:
            self.neg_labels += sign
            self.fp += sign * d

    def metrics(self) -> dict[str, Any]:
        n = len(self.decisions)
        low, high = wilson(self.positives, n)
        out: dict[str, Any] = {
            "decisions": n,
            "selection_rate": round(self.positives / n, 6) if n else None,
            "selection_rate_ci": [round(low, 6), round(high, 6)],
            "labelled": len(self.labelled),
            "true_positive_rate": round(self.tp / self.pos_labels, 6) if self.pos_labels else None,
            "false_positive_rate": round(self.fp / self.neg_labels, 6) if self.neg_labels else None,
        }
        return out

    def state(self) -> list[Any]:
        return [list(self.decisions), [list(pair) for pair in self.labelled]]


def _spread(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(max(known) - min(known), 6) if len(known) >= 2 else None


class FairnessMonitor:
    """The disparity of one model's decisions across the values of one protected key."""

    def __init__(self, key: str, window: int, min_group_size: int, max_values: int) -> None:
        self.key = key
        self.window = window
        self.min_group_size = min_group_size
        self.max_values = max_values
        self.groups: dict[str, Group] = {}
        self.decisions = 0
        self.outside = False
        #: Evaluations inside the band: ``reference`` is the one the evidence compares with
        #: ("was"), taken one to two lags (:meth:`lag`) before the newest, ``pending``, so
        #: that a change that builds up over a window is compared with how it was before.
        self.reference: dict[str, Any] | None = None
        self.pending: dict[str, Any] | None = None
        self.pending_at = 0

    def group(self, value: str) -> Group | None:
        """The group of a value; None beyond max_values (then the value is not tracked)."""
        group = self.groups.get(value)
        if group is None:
            if len(self.groups) >= self.max_values:
                return None
            group = self.groups[value] = Group(self.window)
        return group

    def decide(self, value: str, d: int, index: int) -> Hit | bool | None:
        """A decision of a group; a hit when the disparity left the band. False: the value
        is beyond max_values (counted by the caller)."""
        group = self.group(value)
        if group is None:
            return False
        group.decide(d)
        self.decisions += 1
        if self.decisions % EVALUATE_EVERY:
            return None
        return self.evaluate(index)

    def label(self, value: str, d: int, y: int) -> None:
        group = self.groups.get(value)
        if group is not None:
            group.label(d, y)

    def snapshot(self) -> dict[str, Any] | None:
        """The metrics now, or None with fewer than two counted groups."""
        counted = {
            value: group
            for value, group in sorted(self.groups.items())
            if len(group.decisions) >= self.min_group_size
        }
        if len(counted) < 2:
            return None
        metrics = {value: group.metrics() for value, group in counted.items()}
        rates = {value: m["selection_rate"] for value, m in metrics.items()}
        high = max(rates, key=lambda v: (rates[v], v))
        low = min(rates, key=lambda v: (rates[v], v))
        ratio = rates[low] / rates[high] if rates[high] else 1.0
        low_ci = metrics[low]["selection_rate_ci"]
        high_ci = metrics[high]["selection_rate_ci"]
        favourable = low_ci[1] / high_ci[0] if high_ci[0] > 0 else math.inf
        tprs = [m["true_positive_rate"] for m in metrics.values()]
        fprs = [m["false_positive_rate"] for m in metrics.values()]
        opportunity = _spread(tprs)
        fpr_spread = _spread(fprs)
        odds = None if opportunity is None or fpr_spread is None else max(opportunity, fpr_spread)
        return {
            "groups": metrics,
            "highest": high,
            "lowest": low,
            "disparate_impact": round(ratio, 6),
            "disparate_impact_upper": round(min(favourable, 1e9), 6),
            "demographic_parity_difference": round(rates[high] - rates[low], 6),
            "equal_opportunity_difference": opportunity,
            "equalized_odds_difference": odds,
        }

    def lag(self) -> int:
        """Decisions after which every group's window has been renewed (at equal shares)."""
        return self.window * max(2, len(self.groups))

    def evaluate(self, index: int) -> Hit | None:
        now = self.snapshot()
        if now is None:
            return None
        ratio = now["disparate_impact"]
        if BAND[0] <= ratio:  # inside (the lowest over the highest is at most 1)
            if self.outside or self.pending is None:  # (back) inside: start afresh
                self.outside = False
                self.reference = self.pending = now
                self.pending_at = self.decisions
            elif self.decisions - self.pending_at >= self.lag():
                self.reference, self.pending = self.pending, now
                self.pending_at = self.decisions
            return None
        if self.outside or now["disparate_impact_upper"] >= BAND[0]:
            return None  # already alerted, or not significant yet
        self.outside = True
        low, high = now["lowest"], now["highest"]
        groups = now["groups"]
        was = self.reference["disparate_impact"] if self.reference is not None else None
        shown_was = "n/a" if was is None else f"{was:.2f}"
        description = (
            f"positive-decision rate of {self.key}={low} is {ratio:.2f} of "
            f"{self.key}={high}'s, was {shown_was}; {groups[low]['decisions']:,} and "
            f"{groups[high]['decisions']:,} decisions"
        )
        reference = self.reference or {}
        return Hit(
            index=index,
            drift_type=FAIRNESS,
            statistic="disparate_impact",
            detector={
                "name": "four-fifths",
                "params": {
                    "band": list(BAND),
                    "confidence": 0.95,
                    "window": self.window,
                    "min_group_size": self.min_group_size,
                },
                "block_size": EVALUATE_EVERY,
            },
            effect=round((BAND[0] - ratio) / 0.2, 6),
            evidence={"reference": reference, "current": now},
            description=description,
        )

    def __getstate__(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "window": self.window,
            "min_group_size": self.min_group_size,
            "max_values": self.max_values,
            "groups": {value: group.state() for value, group in self.groups.items()},
            "decisions": self.decisions,
            "outside": self.outside,
            "reference": self.reference,
            "pending": self.pending,
            "pending_at": self.pending_at,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.key = state["key"]
        self.window = state["window"]
        self.min_group_size = state["min_group_size"]
        self.max_values = state["max_values"]
        self.groups = {}
        for value, (decisions, labelled) in state["groups"].items():
            group = self.groups[value] = Group(self.window)
            for d in decisions:
                group.decide(d)
            for d, y in labelled:
                group.label(d, y)
        self.decisions = state["decisions"]
        self.outside = state["outside"]
        self.reference = state["reference"]
        self.pending = state["pending"]
        self.pending_at = state["pending_at"]

    def __reduce__(self) -> tuple[Any, ...]:
        from detector.core.trackers import _restore

        return (_restore, (FairnessMonitor, self.__getstate__()))


__all__ = ["FAIRNESS", "FairnessMonitor", "decision", "wilson"]
