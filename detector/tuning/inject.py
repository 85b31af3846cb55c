"""Drift injected into a copy of a recorded stream: ``--inject 'model=fraud,feature=amount,...'``.

One :class:`Injection` is one change to one feature (or the prediction) of one model, from a
position counted in that model's events (``at``: a fraction of them, or a position), abrupt
or gradual over ``ramp`` events. Kinds and their units:

========== ========================= ===================================================
kind       parameter                 what changes from ``at``
========== ========================= ===================================================
mean       ``shift=0.5sd``           the value moves by that many standard deviations
scale      ``factor=2``              the value's distance from the mean is multiplied
categorical ``shift=20``             that many percentage points of share move to
           (``category=``)           ``category`` (default: the rarest category seen)
missing    ``to=0.25``               the missing rate becomes ``to``
prediction ``shift=0.5sd``           a numeric prediction moves by that many deviations
========== ========================= ===================================================

The statistics a change is expressed in (mean, standard deviation, category shares, the
missing rate) are those of the model's events *before* ``at``. Random choices (which events
turn missing or change category) are drawn from a generator seeded by ``seed`` and the
event's position, so the same flags on the same stream give the same copy. Injected events
keep their ``event_id``s, timestamps and every other field.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from detector.core.settings import PREDICTION
from detector.core.values import categorical, kind_of

KINDS = ("mean", "scale", "categorical", "missing", "prediction")

#: The drift types (alert ``drift_type``) that count as finding each kind of change.
FOUND_BY: dict[str, tuple[str, ...]] = {
    "mean": ("mean",),
    "scale": ("variance", "mean"),
    "categorical": ("categorical",),
    "missing": ("missing_rate",),
    "prediction": ("prediction",),
}

_ALLOWED_KEYS: dict[str, set[str]] = {
    "mean": {"shift"},
    "scale": {"factor"},
    "categorical": {"shift", "category"},
    "missing": {"to"},
    "prediction": {"shift"},
}
_COMMON_KEYS = {"model", "feature", "kind", "at", "ramp"}


class InjectionError(ValueError):
    """A bad ``--inject`` spec, or one that does not fit the stream; the message says which."""


@dataclass(frozen=True)
class Injection:
    """One injected change, as parsed from its spec (``at``: fraction in (0, 1) or position)."""

    spec: str
    model: str
    feature: str  # the feature, or PREDICTION for kind=prediction
    kind: str
    at: float | int
    ramp: int = 0
    shift: float = 0.0  # mean/prediction: standard deviations; categorical: points
    factor: float = 1.0
    category: str | None = None
    to: float = 0.0

    @property
    def shown_feature(self) -> str:
        return "prediction" if self.feature == PREDICTION else self.feature

    def start(self, model_events: int) -> int:
        """The position (in this model's events, from 0) where the change starts."""
        if isinstance(self.at, float):
            return int(self.at * model_events)
        return self.at

    def weight(self, position: int, start: int) -> float:
        if position < start:
            return 0.0
        if self.ramp <= 0:
            return 1.0
        return min(1.0, (position - start + 1) / self.ramp)


def _number(spec: str, key: str, text: str, *, suffix: str = "") -> float:
    raw = text.removesuffix(suffix) if suffix else text
    try:
        value = float(raw)
    except ValueError:
        unit = f" followed by {suffix!r}" if suffix else ""
        raise InjectionError(f"--inject {spec!r}: {key}: expected a number{unit}") from None
    if not math.isfinite(value):
        raise InjectionError(f"--inject {spec!r}: {key}: expected a finite number")
    return value


def parse_injection(spec: str) -> Injection:
    """Parse ``key=value,...``; raises InjectionError naming the spec and the key."""
    fields: dict[str, str] = {}
    for part in spec.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or not key or not value:
            raise InjectionError(f"--inject {spec!r}: expected key=value pairs, got {part!r}")
        if key in fields:
            raise InjectionError(f"--inject {spec!r}: {key}: given twice")
        fields[key] = value.strip()
    kind = fields.get("kind")
    if kind not in KINDS:
        raise InjectionError(f"--inject {spec!r}: kind: expected one of {', '.join(KINDS)}")
    unknown = set(fields) - _COMMON_KEYS - _ALLOWED_KEYS[kind]
    if unknown:
        raise InjectionError(
            f"--inject {spec!r}: {sorted(unknown)[0]}: unknown key for kind={kind} "
            f"(allowed: {', '.join(sorted(_COMMON_KEYS | _ALLOWED_KEYS[kind]))})"
        )
    if "model" not in fields:
        raise InjectionError(f"--inject {spec!r}: model: required")
    if kind == "prediction":
        if "feature" in fields:
            raise InjectionError(f"--inject {spec!r}: feature: not used with kind=prediction")
        feature = PREDICTION
    elif "feature" not in fields:
        raise InjectionError(f"--inject {spec!r}: feature: required for kind={kind}")
    else:
        feature = fields["feature"]
    if "at" not in fields:
        raise InjectionError(f"--inject {spec!r}: at: required (a fraction or an event position)")
    at_text = fields["at"]
    at: float | int
    if at_text.isdigit():
        at = int(at_text)
    else:
        at = _number(spec, "at", at_text)
        if not 0.0 < at < 1.0:
            raise InjectionError(
                f"--inject {spec!r}: at: expected a fraction in (0, 1) or an event position"
            )
    ramp = 0
    if "ramp" in fields:
        if not fields["ramp"].isdigit():
            raise InjectionError(f"--inject {spec!r}: ramp: expected a number of events")
        ramp = int(fields["ramp"])
    shift, factor, to = 0.0, 1.0, 0.0
    if kind in ("mean", "prediction"):
        if "shift" not in fields or not fields["shift"].endswith("sd"):
            raise InjectionError(
                f"--inject {spec!r}: shift: expected standard deviations, such as 0.5sd"
            )
        shift = _number(spec, "shift", fields["shift"], suffix="sd")
    elif kind == "scale":
        if "factor" not in fields:
            raise InjectionError(f"--inject {spec!r}: factor: required for kind=scale")
        factor = _number(spec, "factor", fields["factor"])
        if factor <= 0:
            raise InjectionError(f"--inject {spec!r}: factor: expected a positive number")
    elif kind == "categorical":
        if "shift" not in fields:
            raise InjectionError(
                f"--inject {spec!r}: shift: required for kind=categorical (percentage points)"
            )
        shift = _number(spec, "shift", fields["shift"].removesuffix("pp"))
        if not 0.0 < shift <= 100.0:
            raise InjectionError(
                f"--inject {spec!r}: shift: expected percentage points in (0, 100]"
            )
    else:
        if "to" not in fields:
            raise InjectionError(f"--inject {spec!r}: to: required for kind=missing (a rate)")
        to = _number(spec, "to", fields["to"])
        if not 0.0 <= to <= 1.0:
            raise InjectionError(f"--inject {spec!r}: to: expected a rate in [0, 1]")
    return Injection(
        spec=spec,
        model=fields["model"],
        feature=feature,
        kind=kind,
        at=at,
        ramp=ramp,
        shift=shift,
        factor=factor,
        category=fields.get("category"),
        to=to,
    )


@dataclass(frozen=True)
class Plan:
    """An injection resolved against the stream: where it starts and the statistics of the
    model's events before it."""

    injection: Injection
    start: int
    mean: float = 0.0
    sd: float = 0.0
    category: str | None = None
    move: float = 0.0  # categorical: probability that another category becomes `category`
    missing: float = 0.0  # missing: probability that a present value becomes null


def _value(event: dict[str, Any], feature: str) -> Any:
    if feature == PREDICTION:
        return event.get("prediction")
    features = event.get("features")
    return features.get(feature) if isinstance(features, dict) else None


def plan(injection: Injection, model_events: Sequence[dict[str, Any]]) -> Plan:
    """Resolve ``injection`` against this model's events (in order); InjectionError if it
    does not fit (no such model or feature, values of the wrong kind, ``at`` past the end)."""
    spec, n = injection.spec, len(model_events)
    if n == 0:
        raise InjectionError(f"--inject {spec!r}: model: no events of model {injection.model!r}")
    start = injection.start(n)
    if not 0 < start < n:
        raise InjectionError(
            f"--inject {spec!r}: at: position {start} is outside the model's {n} events"
        )
    before = [_value(e, injection.feature) for e in model_events[:start]]
    present = [v for v in before if v is not None]
    if not present and injection.kind != "missing":
        raise InjectionError(
            f"--inject {spec!r}: feature: {injection.shown_feature!r} has no values "
            f"in model {injection.model!r}'s events before position {start}"
        )
    kind = injection.kind
    if kind in ("mean", "scale", "prediction"):
        if any(kind_of(v) != "numeric" for v in present):
            raise InjectionError(
                f"--inject {spec!r}: kind: {injection.shown_feature!r} is not numeric"
            )
        mean = math.fsum(present) / len(present)
        sd = math.sqrt(math.fsum((v - mean) ** 2 for v in present) / len(present))
        return Plan(injection, start, mean=mean, sd=sd)
    if kind == "categorical":
        counts = Counter(categorical(v) for v in present if kind_of(v) == "categorical")
        if not counts:
            raise InjectionError(
                f"--inject {spec!r}: kind: {injection.shown_feature!r} is not categorical"
            )
        target = injection.category
        if target is None:
            target = min(counts, key=lambda name: (counts[name], name))
        share = counts[target] / len(present)
        points = injection.shift / 100.0
        if share + points > 1.0 + 1e-12:
            raise InjectionError(
                f"--inject {spec!r}: shift: {target!r} has a {share:.1%} share; "
                f"it cannot grow by {injection.shift:g} points"
            )
        move = points / (1.0 - share) if share < 1.0 else 0.0
        return Plan(injection, start, category=target, move=move)
    rate = 1.0 - len(present) / len(before)
    if injection.to < rate:
        raise InjectionError(
            f"--inject {spec!r}: to: the missing rate before the change is already {rate:.1%}"
        )
    missing = (injection.to - rate) / (1.0 - rate) if rate < 1.0 else 0.0
    return Plan(injection, start, missing=missing)


def _changed(plan: Plan, value: Any, w: float, rng: random.Random | None) -> Any:
    kind = plan.injection.kind
    if kind in ("mean", "prediction", "scale") and (value is None or kind_of(value) != "numeric"):
        return value
    if kind in ("mean", "prediction"):
        return value + w * plan.injection.shift * plan.sd
    if kind == "scale":
        return plan.mean + (value - plan.mean) * (1.0 + w * (plan.injection.factor - 1.0))
    if kind == "categorical":
        if value is None or categorical(value) == plan.category:
            return value
        assert rng is not None
        return plan.category if rng.random() < w * plan.move else value
    if value is None:
        return value
    assert rng is not None
    return None if rng.random() < w * plan.missing else value


def inject(
    events: list[dict[str, Any]], injections: Sequence[Injection], *, seed: int = 0
) -> list[Plan]:
    """Apply ``injections`` to ``events`` (a copy the caller owns; changed in place).

    Positions count each model's events in stream order. Returns the resolved plans, in
    the order given. Raises InjectionError for a change that does not fit the stream.
    """
    by_model: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        model = event.get("model")
        if isinstance(model, str):
            by_model.setdefault(model, []).append(event)
    plans = [plan(i, by_model.get(i.model, [])) for i in injections]
    for index, resolved in enumerate(plans):
        injection = resolved.injection
        for position, event in enumerate(by_model[injection.model]):
            w = injection.weight(position, resolved.start)
            if w == 0.0:
                continue
            # Only these kinds draw (seeding a generator per event is most of the cost).
            rng = (
                random.Random(f"{seed}/{index}/{position}")
                if injection.kind in ("categorical", "missing")
                else None
            )
            if injection.feature == PREDICTION:
                prediction = event.get("prediction")
                if kind_of(prediction) != "numeric" or isinstance(prediction, bool):
                    continue
                event["prediction"] = _changed(resolved, prediction, w, rng)
                continue
            features = event.get("features")
            if not isinstance(features, dict):
                continue
            value = features.get(injection.feature)
            features = dict(features)  # events may share feature dicts; copy on write
            features[injection.feature] = _changed(resolved, value, w, rng)
            event["features"] = features
    return plans


__all__ = [
    "FOUND_BY",
    "KINDS",
    "Injection",
    "InjectionError",
    "Plan",
    "inject",
    "parse_injection",
    "plan",
]
