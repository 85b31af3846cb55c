"""Plain data shared by the router's stages: alerts as the router sees them, notifications,
and what a receiver answered. No I/O here.

The pipeline (Alertmanager's, in small stages)::

    alert topic -> RoutedAlert -> silences, age check, dedup -> route tree (routes.py)
      -> aggregation groups (groups.py: group_wait, group_interval, repeat_interval,
         resolve_timeout) -> Notification per integration
      -> delivery (delivery.py: rate limit, retries, Retry-After) -> Notifier (notify/)
      -> Outcome: accepted, or dead-lettered; then the notification log and the commit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

#: Alert fields a route can match on and group by (all strings).
LABEL_NAMES: tuple[str, ...] = (
    "model",
    "model_version",
    "feature",
    "drift_type",
    "severity",
    "detector",
)

#: Kinds of receiver integration, as named in the config (``<kind>_configs``).
IntegrationKind = Literal["slack", "pagerduty", "webhook", "alertmanager"]

#: ``acknowledged``: a person acknowledged every alert of the group (``detector review
#: ack``, docs/routing.md); only the integrations in :data:`ACKNOWLEDGING` are told.
Status = Literal["firing", "acknowledged", "resolved"]

#: Integrations told when a group is acknowledged: PagerDuty (``event_action``
#: ``acknowledge``) and Slack (a message naming who and why). A webhook's and
#: Alertmanager's formats have no such state.
ACKNOWLEDGING: frozenset[str] = frozenset({"slack", "pagerduty"})


class InvalidAlert(ValueError):
    """An alert record the router cannot read (it goes to the router's dead-letter topic)."""


@dataclass(frozen=True, slots=True)
class RoutedAlert:
    """One drift alert (schemas/drift-alert.v1.json) and where it was read from."""

    alert_id: str
    labels: Mapping[str, str]  # the LABEL_NAMES fields, as strings ("" when absent)
    emitted_at_ms: int
    body: Mapping[str, Any]  # the whole alert, as published
    partition: int = 0
    offset: int = 0

    @property
    def summary(self) -> str:
        return str(self.body.get("summary", ""))

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")

    @classmethod
    def from_json(cls, body: Any, partition: int = 0, offset: int = 0) -> RoutedAlert:
        """Raises InvalidAlert with a one-line reason."""
        if not isinstance(body, dict):
            raise InvalidAlert("not a JSON object")
        alert_id = body.get("alert_id")
        if not isinstance(alert_id, str) or not alert_id:
            raise InvalidAlert("alert_id missing or not a string")
        emitted = body.get("emitted_at")
        if not isinstance(emitted, str):
            raise InvalidAlert("emitted_at missing or not a string")
        # Here, not at the top: the settings import this module, and `detector --help`
        # must not load orjson (tests/unit/test_imports.py).
        from detector.core.events import InvalidEvent, timestamp_ms

        try:
            emitted_ms = timestamp_ms(emitted)  # the event parser's rule, for alerts too
        except InvalidEvent:
            raise InvalidAlert(f"emitted_at is not an RFC 3339 timestamp: {emitted!r}") from None
        labels: dict[str, str] = {}
        for name in LABEL_NAMES:
            value = body.get(name)
            if name == "detector" and isinstance(value, dict):
                value = value.get("name")
            labels[name] = "" if value is None else str(value)
        if not labels["model"]:
            raise InvalidAlert("model missing")
        return cls(alert_id, labels, emitted_ms, body, partition, offset)


@dataclass(frozen=True, slots=True)
class Review:
    """An alert's review state as people left it (the audit log's chain ``review``): the
    last decision that set it, with who and why."""

    state: str  # open, acknowledged, resolved
    by: str
    reason: str
    at: str


@dataclass(frozen=True, slots=True)
class Integration:
    """One entry of a receiver's ``<kind>_configs`` list, secrets resolved.

    ``id`` is ``"<receiver>/<kind>/<index>"``: stable across restarts as long as the
    config's order is, and safe to log (it names no secret).
    """

    id: str
    receiver: str
    kind: IntegrationKind
    url: str  # the endpoint; for Slack it is the secret webhook URL itself
    secrets: tuple[str, ...] = ()  # values to scrub from anything logged or dead-lettered
    options: Mapping[str, Any] = field(default_factory=dict)  # channel, routing_key, ...


def dedup_key(route_id: str, group_key: str) -> str:
    """PagerDuty's dedup_key: deterministic per route and group, 32 hex characters."""
    return hashlib.sha256(f"{route_id}\x00{group_key}".encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Notification:
    """What one integration is asked to send for one aggregation group.

    ``alerts`` are the group's alerts of the current incident, oldest first; ``new_ids``
    the ones no earlier accepted notification of this integration covered. A ``resolved``
    notification names every alert of the incident it closes.
    """

    integration: Integration
    route_id: str
    group_key: str
    group_labels: Mapping[str, str]
    status: Status
    alerts: tuple[RoutedAlert, ...]
    new_ids: frozenset[str]
    created_ms: int  # when the router decided to send it (wall clock, epoch ms)
    resolve_timeout_ms: int  # for Alertmanager's endsAt
    #: The reviews of the notification's alerts that people decided on (alert id ->
    #: review); an ``acknowledged`` notification says who and why from them.
    reviews: Mapping[str, Review] = field(default_factory=dict)

    @property
    def alert_ids(self) -> list[str]:
        return [alert.alert_id for alert in self.alerts]

    @property
    def dedup_key(self) -> str:
        return dedup_key(self.route_id, self.group_key)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """An HTTP request a notifier wants sent. ``body`` is the encoded payload."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one attempt (or of a whole delivery).

    ``accepted``: the receiver took it. Otherwise ``retryable`` says whether trying again
    may help (network errors, timeouts, 5xx, 429); ``retry_after_s`` is the receiver's own
    ``Retry-After``, honoured exactly. ``body`` is the response body, cut to 2 KiB and
    scrubbed of the integration's secrets; ``reason`` a short stable code for metrics
    (``accepted``, ``http_4xx``, ``http_5xx``, ``rate_limited``, ``network``, ``timeout``,
    ``invalid_response``, ``retries_exhausted``).
    """

    accepted: bool
    retryable: bool
    reason: str
    status: int | None = None
    body: str = ""
    retry_after_s: float | None = None


ACCEPTED = Outcome(accepted=True, retryable=False, reason="accepted")

#: Longest response body kept in an outcome (and so in a dead letter).
MAX_BODY_CHARS = 2048


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret value replaced by ``***``, cut to MAX_BODY_CHARS."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text[:MAX_BODY_CHARS]
