"""Suspending a model (pure): the "stop button" of ``detector review suspend|resume``.

A decision to stop (or resume) serving a model is two records written in one Kafka
transaction: an audit record of kind ``suspension`` on chain :data:`CHAIN` (audit partition
0; ``by`` is the person) whose body is ``{"action": "suspend", "model": "credit",
"reason": "...", "control_topic": "..."}``, and a **control event** on the control topic
(compacted, keyed by model: its newest record is the model's state), which a model server
watches to stop serving (schemas/control-event.v1.json)::

    {"schema_version": 1, "model": "credit", "action": "suspend", "suspended": true,
     "by": "ana", "reason": "...", "at": "2026-12-07T09:12:03.114Z",
     "audit": {"topic": "drift-alerts.audit", "partition": 0, "chain": "control",
               "seq": 4, "hash": "..."}}

A model is suspended from a ``suspend`` to the next ``resume``; a ``suspend`` of a
suspended model, or a ``resume`` of one that is not, is refused, so the record holds only
decisions that changed something. The router pages for each suspension (severity
critical) and resolves the page at the resume: :mod:`detector.router.oversight`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: The chain of suspensions, and the audit partition it is written to.
CHAIN = "control"
PARTITION = 0
ACTIONS = ("suspend", "resume")
CONTROL_VERSION = 1


class ControlError(ValueError):
    """A suspension or resume that does not apply; the message says why."""


@dataclass(frozen=True)
class Suspension:
    """One ``suspension`` audit record."""

    action: str
    model: str
    by: str
    reason: str
    at: str
    seq: int
    hash: str


def suspension_of(record: Any) -> Suspension | None:
    """The suspension in a parsed audit record; None for any other record."""
    if not isinstance(record, dict) or record.get("kind") != "suspension":
        return None
    body = record.get("body")
    if record.get("chain") != CHAIN or not isinstance(body, dict):
        return None
    action, model = body.get("action"), body.get("model")
    if action not in ACTIONS or not isinstance(model, str) or not model:
        return None
    return Suspension(
        str(action),
        model,
        str(record.get("by")),
        str(body.get("reason")),
        str(record.get("at")),
        int(record.get("seq") or 0),
        str(record.get("hash")),
    )


def suspended(records: Iterable[bytes | None]) -> dict[str, Suspension]:
    """The models suspended now (model -> the ``suspend`` record), from the audit log's
    values in log order."""
    import orjson

    current: dict[str, Suspension] = {}
    for value in records:
        try:
            record = orjson.loads(value) if value is not None else None
        except orjson.JSONDecodeError:
            continue
        suspension = suspension_of(record)
        if suspension is None:
            continue
        if suspension.action == "suspend":
            current[suspension.model] = suspension
        else:
            current.pop(suspension.model, None)
    return current


def control_body(
    current: dict[str, Suspension], action: str, model: str, reason: str, control_topic: str
) -> dict[str, Any]:
    """The audit body of a suspend or resume; ControlError when it does not apply."""
    if action not in ACTIONS:
        raise ControlError(f"unknown action {action!r} (one of {', '.join(ACTIONS)})")
    if not model.strip():
        raise ControlError("MODEL: name the model")
    if not reason.strip():
        raise ControlError("--reason: say why (it is what an auditor reads)")
    now = current.get(model)
    if action == "suspend" and now is not None:
        raise ControlError(f"model {model} is already suspended (by {now.by} at {now.at})")
    if action == "resume" and now is None:
        raise ControlError(f"model {model} is not suspended")
    return {"action": action, "model": model, "reason": reason, "control_topic": control_topic}


def control_event(record: dict[str, Any], audit_topic: str, partition: int) -> dict[str, Any]:
    """The control topic's event for a ``suspension`` audit record (its hash links them)."""
    body = record["body"]
    return {
        "schema_version": CONTROL_VERSION,
        "model": body["model"],
        "action": body["action"],
        "suspended": body["action"] == "suspend",
        "by": record["by"],
        "reason": body["reason"],
        "at": record["at"],
        "audit": {
            "topic": audit_topic,
            "partition": partition,
            "chain": record["chain"],
            "seq": record["seq"],
            "hash": record["hash"],
        },
    }


__all__ = [
    "ACTIONS",
    "CHAIN",
    "CONTROL_VERSION",
    "PARTITION",
    "ControlError",
    "Suspension",
    "control_body",
    "control_event",
    "suspended",
    "suspension_of",
]
