"""PagerDuty Events API v2 (https://developer.pagerduty.com/docs/events-api-v2/trigger-events/).

One incident per route and group: ``dedup_key`` is :attr:`Notification.dedup_key`, so every
firing notification of a group updates the same incident and the resolved one closes it.

* trigger: ``routing_key``, ``event_action``, ``dedup_key``, ``client`` and a ``payload``
  with ``summary`` (at most 1024 characters), ``source`` (option ``source``, default
  ``drift-detector``), ``severity`` (``critical`` if any alert is, else ``warning``),
  ``timestamp`` (the earliest ``detected_at``), ``component`` (the model), ``group`` (the
  group labels), ``class`` (the drift types) and ``custom_details``: every ``alert_ids``
  and an ``evidence`` table, one row per alert. The whole body stays under 512 KB: rows
  that do not fit are dropped from the end and counted in ``evidence_rows_dropped``; the
  ids are always all there.
* resolve: ``routing_key``, ``event_action`` and ``dedup_key`` only (PagerDuty ignores
  anything else on a resolve; the trigger named the ids).
* acknowledge (a person acknowledged every alert of the group: ``detector review ack``):
  the same three fields, ``event_action`` ``acknowledge``.

Answers: 202 accepted; 429 retryable (``Retry-After`` when given); 5xx retryable; 400
(``invalid event``) and other 4xx permanent.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from detector.alerts import rfc3339
from detector.router.model import Integration, Notification
from detector.router.notify.base import JsonNotifier
from detector.router.notify.evidence import (
    detected_ms,
    dumps,
    evidence_row,
    headline,
)

#: PagerDuty refuses event bodies of 512 KB or more.
MAX_BODY_BYTES = 512 * 1024
MAX_SUMMARY_CHARS = 1024
CLIENT = "drift-detector"
_ACTIONS = {"resolved": "resolve", "acknowledged": "acknowledge"}
DEFAULT_SOURCE = "drift-detector"


class PagerDutyNotifier(JsonNotifier):
    """POST ``integration.url`` (``https://events.pagerduty.com/v2/enqueue``); options
    ``routing_key`` (required, 32 characters; a secret) and ``source``."""

    def __init__(self, integration: Integration, *, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        routing_key = integration.options.get("routing_key")
        if not isinstance(routing_key, str) or not routing_key:
            raise ValueError(f"{integration.id}: routing_key is required")
        source = integration.options.get("source", DEFAULT_SOURCE)
        if not isinstance(source, str) or not source:
            raise ValueError(f"{integration.id}: source must be a non-empty string")
        super().__init__(integration, extra_secrets=(routing_key,))
        self.routing_key = routing_key
        self.source = source
        self.max_body_bytes = max_body_bytes

    def payload(self, notification: Notification) -> dict[str, Any]:
        if notification.status != "firing":
            return {
                "routing_key": self.routing_key,
                "event_action": _ACTIONS[notification.status],
                "dedup_key": notification.dedup_key,
            }
        alerts = notification.alerts
        details: dict[str, Any] = {
            "alert_ids": notification.alert_ids,
            "evidence": [evidence_row(alert).as_dict() for alert in alerts],
        }
        event_payload: dict[str, Any] = {
            "summary": headline(notification, MAX_SUMMARY_CHARS),
            "source": self.source,
            "severity": (
                "critical" if any(a.severity == "critical" for a in alerts) else "warning"
            ),
        }
        if alerts:
            event_payload["timestamp"] = rfc3339(min(detected_ms(a) for a in alerts))
        models = _joined(a.labels.get("model", "") for a in alerts)
        if models:
            event_payload["component"] = models
        group = ",".join(f"{k}={v}" for k, v in sorted(notification.group_labels.items()))
        if group:
            event_payload["group"] = group
        classes = _joined(a.labels.get("drift_type", "") for a in alerts)
        if classes:
            event_payload["class"] = classes
        event_payload["custom_details"] = details
        body = {
            "routing_key": self.routing_key,
            "event_action": "trigger",
            "dedup_key": notification.dedup_key,
            "client": CLIENT,
            "payload": event_payload,
        }
        self._fit(body, details)
        return body

    def _fit(self, body: dict[str, Any], details: dict[str, Any]) -> None:
        """Drop evidence rows from the end until the encoded body is under the limit (the
        alert ids stay; if they alone are too many, PagerDuty refuses the event: 400)."""
        size = len(dumps(body))
        if size < self.max_body_bytes:
            return
        rows: list[dict[str, Any]] = details["evidence"]
        # Estimate from the rows' own sizes (each row and its comma), with 32 bytes for the
        # ``"evidence_rows_dropped":N`` entry; then check, dropping more if still too big.
        excess = size + 32 - self.max_body_bytes
        kept = len(rows)
        while kept > 0 and excess > 0:
            kept -= 1
            excess -= len(dumps(rows[kept])) + 1
        while True:
            details["evidence"] = rows[:kept]
            details["evidence_rows_dropped"] = len(rows) - kept
            if kept == 0 or len(dumps(body)) < self.max_body_bytes:
                return
            kept -= 1

    def accepts(self, status: int, body: bytes) -> bool:
        return status == 202


def _joined(values: Iterable[str]) -> str:
    return ",".join(dict.fromkeys(value for value in values if value))


__all__ = ["CLIENT", "DEFAULT_SOURCE", "MAX_BODY_BYTES", "MAX_SUMMARY_CHARS", "PagerDutyNotifier"]
