"""Generic webhooks, with Alertmanager's webhook body
(https://prometheus.io/docs/alerting/latest/configuration/#webhook_config), so receivers
written for Alertmanager work unchanged::

    {"version": "4", "groupKey": ..., "truncatedAlerts": 0, "status": "firing",
     "receiver": ..., "groupLabels": {...}, "commonLabels": {...},
     "commonAnnotations": {...}, "externalURL": ..., "alerts": [...]}

Each alert has ``status``, the labels and annotations of
:mod:`~detector.router.notify.alertmanager`, ``startsAt`` (``detected_at``), ``endsAt``
(``0001-01-01T00:00:00Z`` while firing, the notification time when resolved),
``generatorURL`` (empty) and ``fingerprint`` (Alertmanager's, of the labels). Every alert
is sent (``truncatedAlerts`` is always 0). Option: ``external_url`` (default empty).

Answers: any 2xx accepted; 429 and 5xx retryable; anything else permanent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from detector.alerts import rfc3339
from detector.router.model import Integration, Notification
from detector.router.notify.alertmanager import (
    alert_annotations,
    alert_labels,
    fingerprint,
)
from detector.router.notify.base import JsonNotifier
from detector.router.notify.evidence import detected_ms

VERSION = "4"
#: Go's zero time, Alertmanager's ``endsAt`` of a firing alert.
ZERO_TIME = "0001-01-01T00:00:00Z"


def common(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """The pairs every map has (Alertmanager's commonLabels and commonAnnotations)."""
    if not maps:
        return {}
    first, *rest = maps
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in rest)}


class WebhookNotifier(JsonNotifier):
    """POST ``integration.url``; option ``external_url``."""

    def __init__(self, integration: Integration) -> None:
        super().__init__(integration)
        external_url = integration.options.get("external_url", "")
        if not isinstance(external_url, str):
            raise ValueError(f"{integration.id}: external_url must be a string")
        self.external_url = external_url

    def payload(self, notification: Notification) -> dict[str, Any]:
        status = notification.status
        ends_at = ZERO_TIME if status == "firing" else rfc3339(notification.created_ms)
        alerts: list[dict[str, Any]] = []
        for alert in notification.alerts:
            labels = alert_labels(alert)
            alerts.append(
                {
                    "status": status,
                    "labels": labels,
                    "annotations": alert_annotations(alert),
                    "startsAt": rfc3339(detected_ms(alert)),
                    "endsAt": ends_at,
                    "generatorURL": "",
                    "fingerprint": fingerprint(labels),
                }
            )
        return {
            "version": VERSION,
            "groupKey": notification.group_key,
            "truncatedAlerts": 0,
            "status": status,
            "receiver": self.integration.receiver,
            "groupLabels": dict(notification.group_labels),
            "commonLabels": common([a["labels"] for a in alerts]),
            "commonAnnotations": common([a["annotations"] for a in alerts]),
            "externalURL": self.external_url,
            "alerts": alerts,
        }

    def accepts(self, status: int, body: bytes) -> bool:
        return 200 <= status <= 299


__all__ = ["VERSION", "ZERO_TIME", "WebhookNotifier", "common"]
