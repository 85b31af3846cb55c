"""People's oversight as the router follows it (pure): review decisions and suspensions
read from the audit log's partition 0 (chains ``review`` and ``control``), turned into
what the aggregation groups act on.

* A review decision gives the alert's new :class:`~detector.router.model.Review`
  (:meth:`Dispatcher.review <detector.router.groups.Dispatcher.review>`): acknowledged
  groups are not repeated and PagerDuty is sent ``acknowledge``; groups whose alerts people
  resolved are resolved.
* A suspension becomes a page: an alert of ``drift_type`` ``suspension``, severity
  ``critical``, feature ``__model__``, routed like any alert of its model (its labels match
  the route tree), but never silenced and never too old while the model stays suspended.
  Its id is derived from the suspension record's hash. The resume resolves it, as a
  person's ``resolve`` would.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from detector.audit.control import Suspension, suspension_of
from detector.audit.review import decision_of, transition
from detector.router.model import Review, RoutedAlert

#: Namespace of the suspension pages' alert ids (uuid5 of the audit record's hash).
_SUSPENSION_NAMESPACE = uuid.UUID("3b0c6d64-55f1-5e0c-8f1b-6c1f1d7a2b90")

SUSPENSION_FEATURE = "__model__"


@dataclass(frozen=True, slots=True)
class Reviewed:
    """An alert's review changed (a suspension's page included, at the resume)."""

    alert_id: str
    review: Review


@dataclass(frozen=True, slots=True)
class Suspended:
    """A model was suspended: page with ``alert``."""

    alert: RoutedAlert


Change = Reviewed | Suspended


def suspension_alert(suspension: Suspension, audit_topic: str, offset: int) -> RoutedAlert:
    """The page of a suspension, as an alert the route tree routes (``offset`` -1: it holds
    back no alert partition's commit)."""
    alert_id = str(uuid.uuid5(_SUSPENSION_NAMESPACE, suspension.hash))
    body = {
        "schema_version": 1,
        "alert_id": alert_id,
        "model": suspension.model,
        "model_version": None,
        "feature": SUSPENSION_FEATURE,
        "drift_type": "suspension",
        "detector": {"name": "human", "params": {}, "block_size": 1},
        "severity": "critical",
        "detected_at": suspension.at,
        "emitted_at": suspension.at,
        "trigger": {
            "topic": audit_topic,
            "partition": 0,
            "offset": offset,
            "event_id": suspension.hash,
        },
        "evidence": {},
        "summary": f"model {suspension.model} suspended by {suspension.by}: {suspension.reason}",
    }
    return RoutedAlert.from_json(body, 0, -1)


class Oversight:
    """Follows the decision records; :meth:`apply` says what changed."""

    def __init__(self, audit_topic: str) -> None:
        self.audit_topic = audit_topic
        self.states: dict[str, str] = {}  # alert id -> review state
        #: The models suspended now, and their pages.
        self.suspensions: dict[str, RoutedAlert] = {}

    def apply(self, record: Any, offset: int) -> Change | None:
        """The change a parsed audit record makes (None: none the router acts on)."""
        decided = decision_of(record)
        if decided is not None:
            alert_id, decision = decided
            state = transition(self.states.get(alert_id, "open"), decision.action)
            self.states[alert_id] = state
            return Reviewed(alert_id, Review(state, decision.by, decision.reason, decision.at))
        suspension = suspension_of(record)
        if suspension is None:
            return None
        if suspension.action == "suspend":
            alert = suspension_alert(suspension, self.audit_topic, offset)
            self.suspensions[suspension.model] = alert
            return Suspended(alert)
        page = self.suspensions.pop(suspension.model, None)
        if page is None:
            return None
        review = Review("resolved", suspension.by, suspension.reason, suspension.at)
        self.states[page.alert_id] = "resolved"
        return Reviewed(page.alert_id, review)


__all__ = ["SUSPENSION_FEATURE", "Change", "Oversight", "Reviewed", "Suspended", "suspension_alert"]
