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


def transition(state: str, action: str) -> str:
    """The review state after ``action`` (``comment`` leaves it as it is)."""
    return _NEXT.get(action, state)


def decision_of(record: Any) -> tuple[str, Decision] | None:
    """(alert id, decision) of a parsed audit record of kind ``review`` on :data:`CHAIN`;
    None for any other record (or a malformed one)."""
    if not isinstance(record, dict) or record.get("kind") != "review":
        return None
    body = record.get("body")
    if record.get("chain") != CHAIN or not isinstance(body, dict):
        return None
    action = body.get("action")
    if action not in ACTIONS or not isinstance(body.get("alert_id"), str):
        return None
    decision = Decision(
        str(action), str(record.get("by")), str(body.get("reason")), str(record.get("at"))
    )
    return body["alert_id"], decision


def parse(value: bytes | None) -> dict[str, Any] | None:
    """An audit log value as a record with a dict ``body``; None when it is not one (not
    JSON, not an object: ``detector audit verify`` reports those)."""
    import orjson  # here: ``detector --help`` reads ACTIONS and STATES only

    try:
        record = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("body"), dict):
        return None
    return record


class Reviews:
    """The review states, built record by record (what :func:`fold` does, for a reader
    that looks at other kinds of record too: :mod:`detector.audit.history`).

    The log is read partition by partition, and the review chain is on partition 0: a
    decision on an alert of another partition comes before its alert. It waits for the
    alert, and is applied, in the review chain's order, when the alert comes."""

    def __init__(self) -> None:
        self.reviews: dict[str, AlertReview] = {}
        self._waiting: dict[str, list[Decision]] = {}

    def add(self, record: dict[str, Any]) -> bool:
        """Take one parsed record (:func:`parse`); True if it was an alert or a decision."""
        body = record["body"]
        if record.get("kind") == "alert" and isinstance(body.get("alert_id"), str):
            alert_id = body["alert_id"]
            if alert_id not in self.reviews:
                self.reviews[alert_id] = AlertReview(body)
                for decision in self._waiting.pop(alert_id, []):
                    self._apply(self.reviews[alert_id], decision)
            return True
        decided = decision_of(record)
        if decided is None:
            return False
        alert_id, decision = decided
        review = self.reviews.get(alert_id)
        if review is None:
            self._waiting.setdefault(alert_id, []).append(decision)
        else:
            self._apply(review, decision)
        return True

    @staticmethod
    def _apply(review: AlertReview, decision: Decision) -> None:
        review.decisions.append(decision)
        review.state = transition(review.state, decision.action)


def fold(records: Iterable[bytes | None]) -> dict[str, AlertReview]:
    """Every alert of the audit log (values in log order) with its review state. Records
    that are not well-formed are skipped here (``detector audit verify`` reports them), and
    so are decisions on alerts the log does not hold."""
    folded = Reviews()
    for value in records:
        record = parse(value)
        if record is not None:
            folded.add(record)
    return folded.reviews


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
    "Reviews",
    "decision_body",
    "decision_of",
    "fold",
]
