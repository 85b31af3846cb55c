"""Human decisions on alerts (pure): what ``detector review`` records, and each alert's
review state as the audit log tells it.

A decision is an audit record of kind ``review`` on chain :data:`CHAIN` (audit partition
0), whose ``by`` is the reviewer and whose body is::

    {"action": "ack", "alert_id": "...", "reason": "...", "model": "fraud",
     "feature": "amount", "drift_type": "mean"}

An alert is ``open`` when published; ``ack`` makes it ``acknowledged`` (someone is on it),
``resolve`` makes it ``resolved`` (understood and acted on, or dismissed: the reason says
which), ``reopen`` makes an acknowledged or resolved alert ``open`` again, and ``comment``
adds a note without changing the state. A decision that would not change anything (a second
``ack``, ``resolve`` of a resolved alert, ``reopen`` of an open one) is refused, so the
record holds only decisions that meant something.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

#: The chain of human decisions, and the audit partition it is written to.
CHAIN = "review"
PARTITION = 0
ACTIONS = ("ack", "resolve", "comment", "reopen")
STATES = ("open", "acknowledged", "resolved")

_NEXT = {"ack": "acknowledged", "resolve": "resolved", "reopen": "open"}
_ALLOWED = {
    "ack": ("open",),
    "resolve": ("open", "acknowledged"),
    "reopen": ("acknowledged", "resolved"),
    "comment": STATES,
}


class ReviewError(ValueError):
    """A decision that cannot be recorded: unknown alert, or a transition that does not
    apply. The message says which."""


@dataclass
class Decision:
    action: str
    by: str
    reason: str
    at: str


@dataclass
class AlertReview:
    """One alert and what people decided about it, in order."""

    alert: dict[str, Any]
    state: str = "open"
    decisions: list[Decision] = field(default_factory=list)

    @property
    def alert_id(self) -> str:
        return str(self.alert["alert_id"])


def fold(records: Iterable[bytes | None]) -> dict[str, AlertReview]:
    """Every alert of the audit log (values in log order) with its review state. Records
    that are not well-formed are skipped here (``detector audit verify`` reports them)."""
    import orjson  # here: ``detector --help`` reads ACTIONS and STATES only

    reviews: dict[str, AlertReview] = {}
    for value in records:
        try:
            record = orjson.loads(value) if value is not None else None
        except orjson.JSONDecodeError:
            continue
        if not isinstance(record, dict) or not isinstance(record.get("body"), dict):
            continue
        body = record["body"]
        if record.get("kind") == "alert" and isinstance(body.get("alert_id"), str):
            reviews.setdefault(body["alert_id"], AlertReview(body))
        elif record.get("kind") == "review" and record.get("chain") == CHAIN:
            review = reviews.get(str(body.get("alert_id")))
            action = body.get("action")
            if review is None or action not in ACTIONS:
                continue
            review.decisions.append(
                Decision(
                    str(action),
                    str(record.get("by")),
                    str(body.get("reason")),
                    str(record.get("at")),
                )
            )
            review.state = _NEXT.get(str(action), review.state)
    return reviews


def decision_body(
    reviews: dict[str, AlertReview], action: str, alert_id: str, reason: str
) -> dict[str, Any]:
    """The body of a decision on ``alert_id``; ReviewError when it does not apply."""
    if action not in ACTIONS:
        raise ReviewError(f"unknown action {action!r} (one of {', '.join(ACTIONS)})")
    if not reason.strip():
        raise ReviewError("--reason: say why (it is what an auditor reads)")
    review = reviews.get(alert_id)
    if review is None:
        raise ReviewError(f"no alert {alert_id} in the audit log")
    if review.state not in _ALLOWED[action]:
        last = review.decisions[-1] if review.decisions else None
        since = f" (by {last.by} at {last.at})" if last is not None else ""
        raise ReviewError(f"alert {alert_id} is {review.state}{since}: cannot {action} it")
    alert = review.alert
    return {
        "action": action,
        "alert_id": alert_id,
        "reason": reason,
        "model": alert.get("model"),
        "feature": alert.get("feature"),
        "drift_type": alert.get("drift_type"),
    }


__all__ = [
    "ACTIONS",
    "CHAIN",
    "PARTITION",
    "STATES",
    "AlertReview",
    "Decision",
    "ReviewError",
    "decision_body",
    "fold",
]
