"""The audit log folded into what a page about it shows (pure: no Kafka).

:func:`history_of` reads the log's values (in log order, as
:func:`detector.kafka.audit.read_log` yields them: partition by partition) into a
:class:`History`: every alert with its review state and decisions (the fold of
:class:`detector.audit.review.Reviews`) and the notifications that named it; the silences,
the config records, each chain's starts and stops (``partition_assigned`` and
``partition_released``), the suspensions, and the records of kinds this module does not
know, shown as they are rather than refused (a newer writer may add kinds).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from detector.audit.review import AlertReview, Decision, Reviews, parse

#: Kinds read into their own lists; any other kind but ``signature`` goes to ``other``.
_KNOWN = (
    "alert",
    "review",
    "notification",
    "silence",
    "config",
    "partition_assigned",
    "partition_released",
    "suspension",
    "signature",
)


def parse_time(text: Any) -> datetime | None:
    """An RFC 3339 time (None when it is not one)."""
    try:
        stamp = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return stamp if stamp.tzinfo is not None else None


@dataclass(frozen=True)
class Notification:
    """A notification the router finished (kind ``notification``)."""

    at: str
    chain: str
    receiver: str
    integration: str
    status: str
    accepted: bool
    reason: str
    attempts: int
    alert_ids: tuple[str, ...]
    new_alert_ids: tuple[str, ...]
    http_status: Any = None


@dataclass(frozen=True)
class ConfigRecord:
    """The config in force from ``at`` on a chain: a sidecar's ``partition_assigned`` or a
    ``config`` reload."""

    at: str
    chain: str
    kind: str
    reason: str
    config_hash: str
    config: dict[str, Any]


@dataclass(frozen=True)
class StartStop:
    """An instance taking (``partition_assigned``) or giving up (``partition_released``) a
    chain's partition. ``previous_at``: the ``at`` of the chain's record before it (where
    a previous owner that died without a release was last seen)."""

    at: str
    chain: str
    seq: int
    kind: str
    instance: str
    reason: str
    partition: int | None
    offset: int | None
    previous_at: str | None

    @property
    def started(self) -> bool:
        return self.kind == "partition_assigned"


@dataclass(frozen=True)
class Silence:
    """A silence created or expired (kind ``silence``); ``silence`` is its record."""

    at: str
    by: str
    action: str
    silence: dict[str, Any]


@dataclass(frozen=True)
class Suspension:
    """A model's monitoring suspended or resumed (kind ``suspension``, chain ``control``)."""

    at: str
    by: str
    action: str
    model: str
    reason: str


@dataclass(frozen=True)
class Snapshot:
    """A partition's state archived (kind ``state_archived``): what it said of each model
    (``events``, ``labelled``, ``accuracy``, ``estimated_accuracy``) and how far the
    partition's consumer was behind the input (``lag``, events; None: unknown)."""

    at: str
    chain: str
    partition: int | None
    input_offset: int | None
    lag: int | None
    models: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class OtherRecord:
    """A record of a kind this module does not read (later kinds)."""

    at: str
    by: str
    chain: str
    seq: Any
    kind: str
    body: dict[str, Any]


@dataclass
class AlertHistory:
    """One alert: its review (state, decisions), where it was recorded, who was told."""

    review: AlertReview
    at: str
    chain: str
    notifications: list[Notification] = field(default_factory=list)

    @property
    def alert(self) -> dict[str, Any]:
        return self.review.alert

    @property
    def alert_id(self) -> str:
        return self.review.alert_id

    @property
    def model(self) -> str:
        return str(self.alert.get("model"))

    @property
    def state(self) -> str:
        return self.review.state

    @property
    def decisions(self) -> list[Decision]:
        return self.review.decisions

    def first_ack(self) -> Decision | None:
        """The first ``ack`` (or, without one, the first ``resolve``): when someone took it
        on."""
        for action in ("ack", "resolve"):
            for decision in self.decisions:
                if decision.action == action:
                    return decision
        return None

    def time_to_ack(self) -> timedelta | None:
        """From the alert's publication (``emitted_at``, else its record's ``at``) to its
        first ack (None: not acknowledged)."""
        first = self.first_ack()
        if first is None:
            return None
        published = parse_time(self.alert.get("emitted_at")) or parse_time(self.at)
        acked = parse_time(first.at)
        if published is None or acked is None:
            return None
        return acked - published


@dataclass
class ChainSpan:
    """A chain's records as read: how many, the first and last ``at``."""

    name: str
    records: int = 0
    first_at: str = ""
    last_at: str = ""


@dataclass
class History:
    """What the audit log holds, by kind (see the module's docstring)."""

    alerts: dict[str, AlertHistory] = field(default_factory=dict)
    notifications: list[Notification] = field(default_factory=list)
    silences: list[Silence] = field(default_factory=list)
    configs: list[ConfigRecord] = field(default_factory=list)
    starts_stops: dict[str, list[StartStop]] = field(default_factory=dict)
    suspensions: list[Suspension] = field(default_factory=list)
    snapshots: list[Snapshot] = field(default_factory=list)
    other: list[OtherRecord] = field(default_factory=list)
    chains: dict[str, ChainSpan] = field(default_factory=dict)

    def models(self) -> list[str]:
        """Every model the log names (alerts, suspensions), sorted."""
        names = {a.model for a in self.alerts.values()}
        names.update(s.model for s in self.suspensions)
        return sorted(names)

    def alerts_of(self, model: str) -> list[AlertHistory]:
        """The model's alerts, in the order they were recorded (``at``)."""
        mine = [a for a in self.alerts.values() if a.model == model]
        return sorted(mine, key=lambda a: (a.at, a.alert_id))

    def open_alerts(self, model: str | None = None) -> list[AlertHistory]:
        """The alerts still open (of one model, or all), in recorded order."""
        alerts = (
            self.alerts_of(model)
            if model is not None
            else sorted(self.alerts.values(), key=lambda a: (a.at, a.alert_id))
        )
        return [a for a in alerts if a.state == "open"]

    def time_to_first_ack(self, alert_id: str) -> timedelta | None:
        """:meth:`AlertHistory.time_to_ack` of one alert (None: unknown or not acked)."""
        alert = self.alerts.get(alert_id)
        return alert.time_to_ack() if alert is not None else None

    def suspensions_of(self, model: str) -> list[Suspension]:
        return [s for s in self.suspensions if s.model == model]

    def snapshots_of(self, model: str) -> list[Snapshot]:
        """The archived snapshots whose state holds the model, in recorded order."""
        return [s for s in self.snapshots if model in s.models]


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


def history_of(values: Iterable[bytes | None]) -> History:
    """The :class:`History` of the log's values (malformed ones skipped: ``detector audit
    verify`` reports them)."""
    history = History()
    reviews = Reviews()
    for value in values:
        record = parse(value)
        if record is None:
            continue
        _add(history, reviews, record)
    by_id = history.alerts
    for notification in history.notifications:
        for alert_id in notification.alert_ids:
            if alert_id in by_id:
                by_id[alert_id].notifications.append(notification)
    return history


def _add(history: History, reviews: Reviews, record: dict[str, Any]) -> None:
    kind, body = str(record.get("kind")), record["body"]
    at, by, chain = str(record.get("at")), str(record.get("by")), str(record.get("chain"))
    span = history.chains.get(chain)
    previous_at = span.last_at if span is not None else None
    if span is None:
        span = history.chains[chain] = ChainSpan(chain, first_at=at)
    span.records += 1
    span.last_at = at
    if kind in ("alert", "review"):
        reviews.add(record)
        alert_id = body.get("alert_id")
        if kind == "alert" and isinstance(alert_id, str) and alert_id not in history.alerts:
            history.alerts[alert_id] = AlertHistory(reviews.reviews[alert_id], at, chain)
    elif kind == "notification":
        history.notifications.append(
            Notification(
                at=at,
                chain=chain,
                receiver=str(body.get("receiver")),
                integration=str(body.get("integration")),
                status=str(body.get("status")),
                accepted=bool(body.get("accepted")),
                reason=str(body.get("reason") or ""),
                attempts=int(body.get("attempts") or 0),
                alert_ids=tuple(str(i) for i in body.get("alert_ids") or ()),
                new_alert_ids=tuple(str(i) for i in body.get("new_alert_ids") or ()),
                http_status=body.get("http_status"),
            )
        )
    elif kind == "silence":
        silence = {k: v for k, v in body.items() if k != "action"}
        history.silences.append(Silence(at, by, str(body.get("action")), silence))
    elif kind == "suspension":
        history.suspensions.append(
            Suspension(
                at, by, str(body.get("action")), str(body.get("model")), str(body.get("reason"))
            )
        )
    elif kind == "state_archived":
        models = body.get("models")
        history.snapshots.append(
            Snapshot(
                at,
                chain,
                _int(body.get("partition")),
                _int(body.get("input_offset")),
                _int(body.get("lag")),
                {str(k): v for k, v in models.items() if isinstance(v, dict)}
                if isinstance(models, dict)
                else {},
            )
        )
    elif kind not in _KNOWN:
        history.other.append(OtherRecord(at, by, chain, record.get("seq"), kind, body))
    if kind in ("partition_assigned", "config") and isinstance(body.get("config_hash"), str):
        history.configs.append(
            ConfigRecord(
                at,
                chain,
                kind,
                str(body.get("reason")),
                body["config_hash"],
                body.get("config") if isinstance(body.get("config"), dict) else {},
            )
        )
    if kind in ("partition_assigned", "partition_released"):
        offset = body.get("committed_offset" if kind == "partition_assigned" else "next_offset")
        partition = body.get("partition")
        history.starts_stops.setdefault(chain, []).append(
            StartStop(
                at=at,
                chain=chain,
                seq=int(record.get("seq") or 0),
                kind=kind,
                instance=str(body.get("instance") or by),
                reason=str(body.get("reason")),
                partition=partition if type(partition) is int else None,
                offset=offset if type(offset) is int else None,
                previous_at=previous_at,
            )
        )


__all__ = [
    "AlertHistory",
    "ChainSpan",
    "ConfigRecord",
    "History",
    "Notification",
    "OtherRecord",
    "Silence",
    "Snapshot",
    "StartStop",
    "Suspension",
    "history_of",
    "parse_time",
]
