"""What the console's pages show, from the audit log's records (pure).

The review state of every alert is :func:`detector.audit.review.fold`'s (an alert's page:
:func:`detector.audit.history.history_of`'s, which adds the notifications that named it),
and the actions a page offers are those :func:`detector.audit.review.decision_body` accepts,
so the page and ``detector review`` can never disagree about what a decision may do.
Records of other kinds (``suspension``, ``state_snapshot``, kinds not known yet) are passed
over here: they are not about one alert's review.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from detector.audit.history import Notification, history_of
from detector.audit.review import ACTIONS, AlertReview, ReviewError, decision_body, fold

#: Records as read: (partition, offset, value).
Records = Sequence[tuple[int, int, bytes | None]]

#: What the front page lists by default: the alerts someone still has to act on.
UNRESOLVED = ("open", "acknowledged")
#: The buttons of the decision forms.
LABELS = {"ack": "Acknowledge", "resolve": "Resolve", "comment": "Comment", "reopen": "Reopen"}
#: The state filters of the front page (``?state=``).
FILTERS = {"unresolved": UNRESOLVED, "open": ("open",), "acknowledged": ("acknowledged",)}
FILTERS |= {"resolved": ("resolved",), "all": ("open", "acknowledged", "resolved")}


@dataclass(frozen=True)
class Row:
    """One alert of the front page."""

    alert_id: str
    state: str
    feature: str
    drift_type: str
    detected_at: str
    severity: str
    last: str  # the last decision, "" if none


@dataclass
class Overview:
    """The front page: the alerts in the chosen states, per model (models sorted, each
    model's alerts newest first)."""

    state: str
    models: dict[str, list[Row]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # every alert of the log, by state


def _part(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """``doc[name]`` if it is an object, else {} (a record is read, not trusted)."""
    value = doc.get(name)
    return value if isinstance(value, dict) else {}


def _values(records: Records) -> Iterable[bytes | None]:
    return (value for _, _, value in records)


def overview(records: Records, state: str = "unresolved") -> Overview:
    """The front page for ``state`` (a key of :data:`FILTERS`; ValueError otherwise)."""
    if state not in FILTERS:
        raise ValueError(f"state: one of {', '.join(FILTERS)}")
    wanted = FILTERS[state]
    page = Overview(state, counts={s: 0 for s in FILTERS["all"]})
    for review in fold(_values(records)).values():
        page.counts[review.state] = page.counts.get(review.state, 0) + 1
        if review.state not in wanted:
            continue
        alert = review.alert
        last = review.decisions[-1] if review.decisions else None
        row = Row(
            review.alert_id,
            review.state,
            str(alert.get("feature")),
            str(alert.get("drift_type")),
            str(alert.get("detected_at")),
            str(alert.get("severity")),
            "" if last is None else f"{last.action} by {last.by}: {last.reason}",
        )
        page.models.setdefault(str(alert.get("model")), []).append(row)
    for rows in page.models.values():
        rows.sort(key=lambda r: r.detected_at, reverse=True)
    page.models = dict(sorted(page.models.items()))
    return page


def actions(reviews: dict[str, AlertReview], alert_id: str) -> tuple[str, ...]:
    """The decisions ``alert_id`` can take now: those :func:`decision_body` accepts."""
    allowed = []
    for action in ACTIONS:
        try:
            decision_body(reviews, action, alert_id, "?")
        except ReviewError:
            continue
        allowed.append(action)
    return tuple(allowed)


def _number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def show(value: Any) -> str:
    """A value of the evidence, short: numbers to 4 significant digits, a mapping as
    ``key value`` pairs, a list as its items."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {show(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return _number(value)


def evidence_rows(alert: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(what, reference, current) for each summary of the alert's two windows, in the
    order the alert has them."""
    evidence = _part(alert, "evidence")
    reference, current = _part(evidence, "reference"), _part(evidence, "current")
    names = list(dict.fromkeys([*reference, *current]))
    return [(name, show(reference.get(name, "")), show(current.get(name, ""))) for name in names]


@dataclass
class AlertPage:
    """One alert: its fields, its evidence, its decisions, the actions open to it."""

    review: AlertReview
    actions: tuple[str, ...]
    evidence: list[tuple[str, str, str]]
    facts: list[tuple[str, str]]  # (label, value) of the alert's other fields
    notifications: list[Notification] = field(default_factory=list)  # in log order


def alert_page(records: Records, alert_id: str) -> AlertPage | None:
    """The page of ``alert_id`` (None if the audit log holds no such alert)."""
    history = history_of(_values(records))
    found = history.alerts.get(alert_id)
    if found is None:
        return None
    reviews = {key: each.review for key, each in history.alerts.items()}
    review, alert = found.review, found.alert
    detector, trigger = _part(alert, "detector"), _part(alert, "trigger")
    evidence = _part(alert, "evidence")
    facts = [
        ("model", show(alert.get("model"))),
        ("model version", show(alert.get("model_version"))),
        ("feature", show(alert.get("feature"))),
        ("drift type", show(alert.get("drift_type"))),
        ("severity", show(alert.get("severity"))),
        ("detected at", show(alert.get("detected_at"))),
        ("emitted at", show(alert.get("emitted_at"))),
        ("detector", f"{show(detector.get('name'))} {show(detector.get('params', {}))}"),
        (
            "trigger",
            f"{show(trigger.get('topic'))}[{show(trigger.get('partition'))}] offset "
            f"{show(trigger.get('offset'))}, event {show(trigger.get('event_id'))}",
        ),
        ("statistic", show(evidence.get("statistic"))),
        ("effect size", show(evidence.get("effect_size"))),
    ]
    if isinstance(alert.get("segment"), dict):
        facts.insert(3, ("segment", show(alert["segment"])))
    page = AlertPage(review, actions(reviews, alert_id), evidence_rows(alert), facts)
    page.notifications = list(found.notifications)
    return page


__all__ = [
    "FILTERS",
    "LABELS",
    "UNRESOLVED",
    "AlertPage",
    "Overview",
    "Records",
    "Row",
    "actions",
    "alert_page",
    "evidence_rows",
    "overview",
    "show",
]
