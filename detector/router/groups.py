"""Aggregation groups: Alertmanager's dispatcher and notification log, pure.

Every alert is routed (:mod:`detector.router.routes`) into one group per matching route,
keyed by the route's ``group_by`` labels. A group is evaluated ("flushed") first
``group_wait`` after it was created, then every ``group_interval``. At a flush, each
integration of the route's receiver is sent a notification when the group holds alerts it
has not been told about, or when ``repeat_interval`` has passed since it was last told.
A group whose newest alert is older than ``resolve_timeout`` (by ``emitted_at``), and whose
alerts every integration has been told about, is resolved: each integration gets one
``resolved`` notification, and the incident is closed. Its alert ids are remembered (until
they are older than ``max_alert_age``) so that a redelivered alert is never announced as
firing again; a new alert in the same group opens a new incident.

People's decisions (``detector review``, read from the audit log: :meth:`Dispatcher.review`)
act on the groups holding the alerts: a group whose alerts are all acknowledged (or
resolved) is *acknowledged*: it is not repeated, and each integration in
:data:`~detector.router.model.ACKNOWLEDGING` is sent one ``acknowledged`` notification
(PagerDuty ``acknowledge``). A group whose alerts are all resolved by people is resolved at
its next flush, as after ``resolve_timeout``. A new alert in an acknowledged group is
announced as usual and makes the group open again; so does a ``reopen``.

One notification per group and integration is in flight at a time. A notification that was
accepted, or dead-lettered after its retries, counts as sent (the notification log, per
integration: the ids it covered and when); an abandoned one (the router stopped) does not,
and is sent again.

Time is passed in (``now_ms``, wall-clock epoch milliseconds), so tests drive the clock.
Groups are persisted as JSON records (:meth:`Dispatcher.snapshot`,
:meth:`Dispatcher.restore`) on the router's compacted state topic: no pickles.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from detector.router.model import (
    ACKNOWLEDGING,
    Integration,
    Notification,
    Review,
    RoutedAlert,
    Status,
)
from detector.router.routes import Route

STATE_VERSION = 1


class StateRecordError(ValueError):
    """A state record that cannot be read (unknown version, or not the expected shape)."""


@dataclass(slots=True)
class IntegrationLog:
    """What one integration was told about the current incident of a group."""

    notified: set[str] = field(default_factory=set)  # alert ids covered by a sent notification
    last_sent_ms: int | None = None  # last firing notification sent (for repeat_interval)
    resolved_sent: bool = False
    acknowledged_sent: bool = False  # told the group is acknowledged, since its last firing


@dataclass(slots=True)
class Group:
    """One aggregation group: a route and the values of its ``group_by`` labels."""

    route: Route
    key: str
    labels: dict[str, str]
    home: int  # the alert partition whose state partition holds this group
    incident: int = 1
    created_ms: int = 0
    next_flush_ms: int = 0
    alerts: dict[str, RoutedAlert] = field(default_factory=dict)  # current incident
    waiting: dict[str, RoutedAlert] = field(default_factory=dict)  # arrived while resolving
    logs: dict[str, IntegrationLog] = field(default_factory=dict)
    resolved: bool = False
    earlier: dict[str, int] = field(default_factory=dict)  # closed incidents: id -> emitted_ms
    in_flight: dict[str, int] = field(default_factory=dict)  # integration id -> ticket

    @property
    def slot(self) -> tuple[str, str]:
        return (self.route.key, self.key)

    @property
    def open(self) -> bool:
        return bool(self.alerts)

    @property
    def last_alert_ms(self) -> int:
        return max(alert.emitted_at_ms for alert in self.alerts.values())

    def knows(self, alert_id: str) -> bool:
        return alert_id in self.alerts or alert_id in self.waiting or alert_id in self.earlier

    def log(self, integration_id: str) -> IntegrationLog:
        entry = self.logs.get(integration_id)
        if entry is None:
            entry = self.logs[integration_id] = IntegrationLog()
        return entry


@dataclass(frozen=True, slots=True)
class Dispatch:
    """A notification to send; report its fate with :meth:`Dispatcher.completed`."""

    ticket: int
    notification: Notification
    home: int = 0  # the group's home alert partition (its audit chain: router/<home>)


@dataclass(frozen=True, slots=True)
class _Ticket:
    group: Group
    integration_id: str
    status: Status
    alert_ids: frozenset[str]


class Dispatcher:
    """The open groups of the alert partitions one router instance holds."""

    def __init__(
        self,
        route: Route,
        integrations: Mapping[str, Sequence[Integration]],
        *,
        resolve_timeout_ms: int,
        max_alert_age_ms: int,
    ) -> None:
        self.route = route
        self.integrations = integrations
        self.resolve_timeout_ms = resolve_timeout_ms
        self.max_alert_age_ms = max_alert_age_ms
        self.groups: dict[tuple[str, str], Group] = {}
        self._routes = {r.key: r for r in route.walk()}
        self._tickets: dict[int, _Ticket] = {}
        self._next_ticket = 1
        self._dirty: set[tuple[str, str]] = set()
        self._removed: dict[tuple[str, str], int] = {}  # slot -> home, for tombstones
        #: People's decisions (alert id -> its review), from the audit log.
        self.reviews: dict[str, Review] = {}

    # -- intake ---------------------------------------------------------------------------

    def add(self, alert: RoutedAlert, now_ms: int) -> bool:
        """Route ``alert`` into its groups. False if every group already knew it (a duplicate)."""
        added = False
        for route in self.route.match(alert.labels):
            key, labels = route.group_key(alert.labels)
            group = self.groups.get((route.key, key))
            if group is None:
                group = Group(route, key, labels, home=alert.partition)
                self.groups[group.slot] = group
                self._removed.pop(group.slot, None)
            if group.knows(alert.alert_id):
                continue
            added = True
            self._dirty.add(group.slot)
            if group.resolved:
                group.waiting[alert.alert_id] = alert
                continue
            if not group.alerts:
                self._open(group, now_ms)
            group.alerts[alert.alert_id] = alert
        return added

    def review(self, alert_id: str, review: Review, now_ms: int) -> None:
        """A person decided on ``alert_id``: the groups holding it are evaluated at once
        (not before their ``group_wait``)."""
        self.reviews[alert_id] = review
        for group in self.groups.values():
            if alert_id in group.alerts:
                first = group.created_ms + group.route.group_wait_ms
                group.next_flush_ms = max(min(group.next_flush_ms, now_ms), first)

    def reviewed(self, group: Group) -> str:
        """``resolved`` when people resolved every alert of the group's incident,
        ``acknowledged`` when none is left open, else ``open``."""
        states = {self._state(alert_id) for alert_id in group.alerts}
        if states == {"resolved"}:
            return "resolved"
        return "open" if "open" in states or not states else "acknowledged"

    def _state(self, alert_id: str) -> str:
        review = self.reviews.get(alert_id)
        return "open" if review is None else review.state

    def _open(self, group: Group, now_ms: int) -> None:
        group.created_ms = now_ms
        group.next_flush_ms = now_ms + group.route.group_wait_ms

    # -- timers ---------------------------------------------------------------------------

    def next_flush_ms(self) -> int | None:
        """When :meth:`flush` next has something to do (None: nothing is open)."""
        times = [g.next_flush_ms for g in self.groups.values() if g.open]
        return min(times) if times else None

    def flush(self, now_ms: int) -> list[Dispatch]:
        """Evaluate every group whose time has come; the notifications to send now."""
        out: list[Dispatch] = []
        for group in list(self.groups.values()):
            if group.open and group.next_flush_ms <= now_ms:
                out.extend(self._flush(group, now_ms))
        return out

    def _flush(self, group: Group, now_ms: int) -> list[Dispatch]:
        integrations = self.integrations.get(group.route.receiver, ())
        resolve_at = group.last_alert_ms + self.resolve_timeout_ms
        reviewed = self.reviewed(group)
        timed_out = now_ms >= resolve_at and all(
            group.alerts.keys() <= group.log(i.id).notified for i in integrations
        )
        if not group.resolved and not group.in_flight and (reviewed == "resolved" or timed_out):
            group.resolved = True
            self._dirty.add(group.slot)
        out: list[Dispatch] = []
        for integration in integrations:
            if integration.id in group.in_flight:
                continue
            log = group.log(integration.id)
            if group.resolved:
                if not log.resolved_sent:
                    out.append(self._dispatch(group, integration, "resolved", frozenset(), now_ms))
                continue
            new = frozenset(group.alerts.keys() - log.notified)
            repeat = (
                log.last_sent_ms is not None
                and now_ms >= log.last_sent_ms + group.route.repeat_interval_ms
            )
            if new:
                out.append(self._dispatch(group, integration, "firing", new, now_ms))
            elif reviewed == "acknowledged":  # never repeated
                if integration.kind in ACKNOWLEDGING and not log.acknowledged_sent:
                    out.append(
                        self._dispatch(group, integration, "acknowledged", frozenset(), now_ms)
                    )
            elif repeat:
                out.append(self._dispatch(group, integration, "firing", new, now_ms))
        group.next_flush_ms = now_ms + group.route.group_interval_ms
        if not group.resolved and resolve_at > now_ms:
            group.next_flush_ms = min(group.next_flush_ms, resolve_at)
        self._close_if_done(group, now_ms)
        return out

    def _dispatch(
        self,
        group: Group,
        integration: Integration,
        status: Status,
        new: frozenset[str],
        now_ms: int,
    ) -> Dispatch:
        alerts = tuple(sorted(group.alerts.values(), key=lambda a: (a.emitted_at_ms, a.alert_id)))
        notification = Notification(
            integration=integration,
            route_id=group.route.key,
            group_key=group.key,
            group_labels=dict(group.labels),
            status=status,
            alerts=alerts,
            new_ids=new,
            created_ms=now_ms,
            resolve_timeout_ms=self.resolve_timeout_ms,
            reviews={
                a.alert_id: self.reviews[a.alert_id] for a in alerts if a.alert_id in self.reviews
            },
        )
        ticket = self._next_ticket
        self._next_ticket += 1
        ids = frozenset(group.alerts)
        self._tickets[ticket] = _Ticket(group, integration.id, status, ids)
        group.in_flight[integration.id] = ticket
        return Dispatch(ticket, notification, group.home)

    # -- results --------------------------------------------------------------------------

    def completed(self, ticket: int, sent: bool, now_ms: int) -> None:
        """A notification was accepted or dead-lettered (``sent``), or abandoned."""
        entry = self._tickets.pop(ticket, None)
        if entry is None:
            return
        group = entry.group
        if group.in_flight.get(entry.integration_id) == ticket:
            del group.in_flight[entry.integration_id]
        if not sent:
            return
        if self.groups.get(group.slot) is not group:
            return  # the group was dropped (its partition was revoked) meanwhile
        log = group.log(entry.integration_id)
        if entry.status == "resolved":
            log.resolved_sent = True
        elif entry.status == "acknowledged":
            log.acknowledged_sent = True
        else:
            log.acknowledged_sent = False
            log.notified |= entry.alert_ids
            log.last_sent_ms = now_ms
            if now_ms >= group.last_alert_ms + self.resolve_timeout_ms:
                group.next_flush_ms = min(group.next_flush_ms, now_ms)  # resolve promptly
        self._dirty.add(group.slot)
        self._close_if_done(group, now_ms)

    def _close_if_done(self, group: Group, now_ms: int) -> None:
        if not group.resolved or group.in_flight:
            return
        integrations = self.integrations.get(group.route.receiver, ())
        if not all(group.log(i.id).resolved_sent for i in integrations):
            return
        for alert in group.alerts.values():
            group.earlier[alert.alert_id] = alert.emitted_at_ms
        group.alerts = {}
        group.logs = {}
        group.resolved = False
        self._dirty.add(group.slot)
        if group.waiting:
            group.incident += 1
            group.alerts, group.waiting = group.waiting, {}
            self._open(group, now_ms)

    # -- housekeeping ---------------------------------------------------------------------

    def prune(self, now_ms: int) -> None:
        """Forget ids of closed incidents older than ``max_alert_age``, and empty groups."""
        horizon = now_ms - self.max_alert_age_ms
        for slot, group in list(self.groups.items()):
            old = [i for i, emitted in group.earlier.items() if emitted < horizon]
            for alert_id in old:
                del group.earlier[alert_id]
            if old:
                self._dirty.add(slot)
            if not group.alerts and not group.waiting and not group.earlier:
                del self.groups[slot]
                self._removed[slot] = group.home
                self._dirty.discard(slot)

    def pending_offsets(self) -> dict[int, int]:
        """Per alert partition, the lowest offset of an alert some integration still owes."""
        low: dict[int, int] = {}
        for group in self.groups.values():
            integrations = self.integrations.get(group.route.receiver, ())
            for alert in [*group.alerts.values(), *group.waiting.values()]:
                if alert.offset < 0:
                    continue  # not read from the alert topic (a suspension's page)
                owed = alert.alert_id in group.waiting or any(
                    alert.alert_id not in group.log(i.id).notified for i in integrations
                )
                if owed and alert.offset < low.get(alert.partition, alert.offset + 1):
                    low[alert.partition] = alert.offset
        return low

    def mark_all_dirty(self) -> None:
        """Write every group at the next snapshot (after a checkpoint that failed)."""
        self._dirty.update(self.groups)

    def in_flight(self) -> int:
        return len(self._tickets)

    def open_groups(self) -> int:
        return sum(1 for g in self.groups.values() if g.open)

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        """Forget the groups homed on revoked partitions (their new owner restores them)."""
        gone = set(partitions)
        for slot, group in list(self.groups.items()):
            if group.home in gone:
                del self.groups[slot]
                self._dirty.discard(slot)
        for slot in [s for s, home in self._removed.items() if home in gone]:
            del self._removed[slot]

    # -- persistence ----------------------------------------------------------------------

    def snapshot(self) -> list[tuple[int, bytes, bytes | None]]:
        """Changed groups since the last call: (home partition, key, JSON or None)."""
        out: list[tuple[int, bytes, bytes | None]] = []
        for slot in sorted(self._dirty):
            group = self.groups.get(slot)
            if group is not None:
                out.append((group.home, _slot_key(slot), encode_group(group)))
        for slot, home in sorted(self._removed.items()):
            out.append((home, _slot_key(slot), None))
        self._dirty.clear()
        self._removed.clear()
        return out

    def restore(self, values: Iterable[bytes], now_ms: int) -> int:
        """Load groups from state records; groups of routes no longer configured are skipped.

        A group that had been flushed and still owes a notification (the router stopped
        with it queued or in flight) is flushed at once, not a group_interval later.
        Returns how many groups were skipped. Raises StateRecordError for a bad record.
        """
        skipped = 0
        for value in values:
            group = decode_group(value, self._routes)
            if group is None:
                skipped += 1
                continue
            self.groups[group.slot] = group
            waited = group.created_ms + group.route.group_wait_ms <= now_ms
            if group.open and waited and group.next_flush_ms > now_ms and self._owes(group):
                group.next_flush_ms = now_ms
        return skipped

    def _owes(self, group: Group) -> bool:
        for integration in self.integrations.get(group.route.receiver, ()):
            log = group.log(integration.id)
            if group.resolved and not log.resolved_sent:
                return True
            if not group.resolved and not group.alerts.keys() <= log.notified:
                return True
        return False


def _slot_key(slot: tuple[str, str]) -> bytes:
    return slot[1].encode()  # the group key starts with the route id already


def _alert_json(alert: RoutedAlert) -> dict[str, Any]:
    return {"alert": alert.body, "partition": alert.partition, "offset": alert.offset}


def encode_group(group: Group) -> bytes:
    """A group as a versioned JSON state record (in-flight notifications are not kept)."""
    record = {
        "version": STATE_VERSION,
        "route": group.route.key,
        "key": group.key,
        "labels": group.labels,
        "home": group.home,
        "incident": group.incident,
        "created_ms": group.created_ms,
        "next_flush_ms": group.next_flush_ms,
        "resolved": group.resolved,
        "alerts": [_alert_json(a) for a in group.alerts.values()],
        "waiting": [_alert_json(a) for a in group.waiting.values()],
        "logs": {
            integration_id: {
                "notified": sorted(log.notified),
                "last_sent_ms": log.last_sent_ms,
                "resolved_sent": log.resolved_sent,
                "acknowledged_sent": log.acknowledged_sent,
            }
            for integration_id, log in sorted(group.logs.items())
        },
        "earlier": group.earlier,
    }
    return orjson.dumps(record)


def decode_group(value: bytes, routes: Mapping[str, Route]) -> Group | None:
    """The group in a state record; None if its route is no longer in the config."""
    try:
        record = orjson.loads(value)
        if not isinstance(record, dict) or record.get("version") != STATE_VERSION:
            version = record.get("version") if isinstance(record, dict) else None
            raise StateRecordError(f"unknown state record version {version!r}")
        route = routes.get(record["route"])
        if route is None:
            return None
        group = Group(
            route=route,
            key=str(record["key"]),
            labels={str(k): str(v) for k, v in record["labels"].items()},
            home=int(record["home"]),
            incident=int(record["incident"]),
            created_ms=int(record["created_ms"]),
            next_flush_ms=int(record["next_flush_ms"]),
            resolved=bool(record["resolved"]),
            earlier={str(k): int(v) for k, v in record["earlier"].items()},
        )
        for name in ("alerts", "waiting"):
            target = group.alerts if name == "alerts" else group.waiting
            for item in record[name]:
                alert = RoutedAlert.from_json(item["alert"], item["partition"], item["offset"])
                target[alert.alert_id] = alert
        for integration_id, entry in record["logs"].items():
            last = entry["last_sent_ms"]
            group.logs[str(integration_id)] = IntegrationLog(
                notified={str(i) for i in entry["notified"]},
                last_sent_ms=None if last is None else int(last),
                resolved_sent=bool(entry["resolved_sent"]),
                acknowledged_sent=bool(entry.get("acknowledged_sent", False)),
            )
    except StateRecordError:
        raise
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StateRecordError(f"state record not readable: {type(exc).__name__}") from None
    return group
