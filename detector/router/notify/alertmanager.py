"""An existing Prometheus Alertmanager: ``POST /api/v2/alerts``.

The body is a JSON list, one object per alert:

* ``labels``: ``alertname="DriftDetected"``, ``model``, ``feature``, ``drift_type``,
  ``severity`` and ``model_version`` (labels with an empty value are left out, as
  Alertmanager itself drops them);
* ``annotations``: ``summary``, ``alert_id``, ``evidence`` (compact JSON) and
  ``evidence_url`` when the option ``evidence_url`` (a template containing ``{alert_id}``)
  is set; that URL is also the alert's ``generatorURL`` (Alertmanager's "Source" link);
* ``startsAt``: ``detected_at``; ``endsAt``: firing, the notification time plus the
  resolve timeout (Alertmanager resolves the alert by itself if the router goes quiet);
  resolved, the notification time. ``startsAt`` is clamped to ``endsAt`` (an event time
  from a fast clock would otherwise make Alertmanager refuse the alert with
  "start time must be before end time").

Alertmanager identifies an alert by its labels (its *fingerprint*, :func:`fingerprint`):
two alerts of one notification with the same labels are one Alertmanager alert, the later
one's annotations winning.

Answers: 200 accepted; 429 and 5xx retryable; 400 (a validation error) and other 4xx
permanent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from detector.alerts import rfc3339
from detector.router.model import Integration, Notification, RoutedAlert
from detector.router.notify.base import JsonNotifier
from detector.router.notify.evidence import compact_evidence, detected_ms

ALERTNAME = "DriftDetected"

#: Alert fields copied into Alertmanager labels, in this order after ``alertname``.
LABELS: tuple[str, ...] = ("model", "feature", "drift_type", "severity", "model_version")

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_SEPARATOR = b"\xff"


def alert_labels(alert: RoutedAlert) -> dict[str, str]:
    """The Alertmanager labels of one drift alert (empty values left out)."""
    labels = {"alertname": ALERTNAME}
    for name in LABELS:
        value = alert.labels.get(name, "")
        if value:
            labels[name] = value
    return labels


def alert_annotations(alert: RoutedAlert, evidence_url: str | None = None) -> dict[str, str]:
    """``summary``, ``alert_id``, ``evidence`` (compact JSON) and, with a template,
    ``evidence_url`` (``{alert_id}`` replaced by the URL-quoted id)."""
    annotations = {
        "summary": alert.summary,
        "alert_id": alert.alert_id,
        "evidence": compact_evidence(alert),
    }
    if evidence_url:
        annotations["evidence_url"] = evidence_url.replace(
            "{alert_id}", quote(alert.alert_id, safe="")
        )
    return annotations


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's fingerprint of a label set (Prometheus' ``LabelSet.Fingerprint``:
    FNV-1a 64 over the sorted names and values, each followed by ``0xff``), as 16 hex
    digits."""
    value = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name.encode(), _SEPARATOR, labels[name].encode(), _SEPARATOR):
            for byte in part:
                value = ((value ^ byte) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{value:016x}"


def evidence_url_template(integration: Integration) -> str | None:
    """The ``evidence_url`` option, checked: a string containing ``{alert_id}``."""
    template = integration.options.get("evidence_url")
    if template is None or template == "":
        return None
    if not isinstance(template, str) or "{alert_id}" not in template:
        raise ValueError(f"{integration.id}: evidence_url must be a string containing {{alert_id}}")
    return template


class AlertmanagerNotifier(JsonNotifier):
    """POST ``integration.url`` (ending in ``/api/v2/alerts``); option ``evidence_url``."""

    def __init__(self, integration: Integration) -> None:
        super().__init__(integration)
        self.evidence_url = evidence_url_template(integration)

    def payload(self, notification: Notification) -> list[dict[str, Any]]:
        if notification.status == "firing":
            ends_ms = notification.created_ms + notification.resolve_timeout_ms
        else:
            ends_ms = notification.created_ms
        ends_at = rfc3339(ends_ms)
        alerts: list[dict[str, Any]] = []
        for alert in notification.alerts:
            annotations = alert_annotations(alert, self.evidence_url)
            posted: dict[str, Any] = {
                "labels": alert_labels(alert),
                "annotations": annotations,
                "startsAt": rfc3339(min(detected_ms(alert), ends_ms)),
                "endsAt": ends_at,
            }
            if "evidence_url" in annotations:
                posted["generatorURL"] = annotations["evidence_url"]
            alerts.append(posted)
        return alerts

    def accepts(self, status: int, body: bytes) -> bool:
        return status == 200


__all__ = [
    "ALERTNAME",
    "LABELS",
    "AlertmanagerNotifier",
    "alert_annotations",
    "alert_labels",
    "evidence_url_template",
    "fingerprint",
]
