"""Notifiers: one per receiver kind, each a pure payload builder and response classifier
(:class:`~detector.router.notify.base.Notifier`).

``build_notifier(integration)`` picks the notifier for ``integration.kind``.
"""

from __future__ import annotations

from detector.router.model import Integration
from detector.router.notify.alertmanager import AlertmanagerNotifier
from detector.router.notify.base import Notifier
from detector.router.notify.evidence import classify_http, retry_after_seconds
from detector.router.notify.pagerduty import PagerDutyNotifier
from detector.router.notify.slack import SlackNotifier
from detector.router.notify.webhook import WebhookNotifier


def build_notifier(integration: Integration) -> Notifier:
    """The notifier for ``integration.kind``. Raises ValueError for an unknown kind or
    invalid options (a PagerDuty integration without ``routing_key``, an ``evidence_url``
    without ``{alert_id}``)."""
    kind = integration.kind
    if kind == "slack":
        return SlackNotifier(integration)
    if kind == "pagerduty":
        return PagerDutyNotifier(integration)
    if kind == "webhook":
        return WebhookNotifier(integration)
    if kind == "alertmanager":
        return AlertmanagerNotifier(integration)
    raise ValueError(f"{integration.id}: unknown integration kind {kind!r}")


__all__ = [
    "AlertmanagerNotifier",
    "Notifier",
    "PagerDutyNotifier",
    "SlackNotifier",
    "WebhookNotifier",
    "build_notifier",
    "classify_http",
    "retry_after_seconds",
]
