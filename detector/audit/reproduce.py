"""Re-deriving an alert from the audit log, the state archive and the input topic
(``detector reproduce``; docs/audit.md, "Re-deriving an alert").

Pure: :func:`plan` reads audit records and says where a replay starts and under which
config; :func:`replay` restores the archived state, feeds it the records and compares the
alert that comes out with the one recorded. The Kafka reads are in
:mod:`detector.kafka.archive`.

The chain ``sidecar/P`` of the alert's input partition gives, in order: the config in
force (``partition_assigned`` and ``config`` records), the archived snapshots
(``state_archived``) and the alert. A snapshot is a starting point when it was taken under
the config in force at the alert, with no config change between, and at an input offset at
or before the trigger; the newest such one is used. A partition assigned with no committed
offset started from an empty state at the beginning of the input partition, which is a
starting point too (while the partition still begins at offset 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from detector.audit.chain import digest
from detector.audit.content import state_digest


class ReproduceError(Exception):
    """The alert cannot be re-derived; the message says what is missing."""


@dataclass(frozen=True)
class Origin:
    """Where a replay starts: an archived snapshot, or (``snapshot`` None) the empty state
    of a partition consumed from its beginning."""

    input_offset: int
    labels_offset: int | None = None
    snapshot: str | None = None
    entries: int = 0
    digest: str | None = None
    at_ms: int = 0

    def describe(self) -> str:
        if self.snapshot is None:
            return "the empty state of a partition consumed from its beginning (offset 0)"
        return (
            f"snapshot {self.snapshot} archived at input offset {self.input_offset} "
            f"({self.entries} entries)"
        )


@dataclass(frozen=True)
class Plan:
    """What a reproduction of ``alert`` needs."""

    alert: dict[str, Any]
    partition: int
    config: dict[str, Any]
    config_hash: str
    river: str | None
    origin: Origin

    @property
    def trigger_offset(self) -> int:
        return int(self.alert["trigger"]["offset"])

    @property
    def label_offset(self) -> int | None:
        label = self.alert["trigger"].get("label")
        return None if label is None else int(label["offset"])

    @property
    def input_stop(self) -> int | None:
        """The last input offset to replay: the trigger's; None (as far as the labels need)
        for an alert completed by a label event."""
        return self.trigger_offset if self.label_offset is None else None


@dataclass
class _Chain:
    """What one sidecar chain said so far."""

    config: dict[str, Any] | None = None
    config_hash: str | None = None
    river: str | None = None
    origins: list[Origin] = field(default_factory=list)
    archived: int = 0  # snapshots seen, under any config

    def take(self, record: dict[str, Any]) -> None:
        kind, body = record.get("kind"), record.get("body") or {}
        if kind in ("partition_assigned", "config"):
            changed = body.get("config_hash") != self.config_hash
            if changed:
                self.origins = []  # state from before was restored or reset under another
            self.config, self.config_hash = body.get("config"), body.get("config_hash")
            if "river" in body:
                self.river = body["river"]
            if kind == "partition_assigned" and body.get("committed_offset") is None:
                self.origins = [Origin(0)]  # consumed from the beginning, from nothing
        elif kind == "state_archived":
            self.archived += 1
            self.origins.append(
                Origin(
                    int(body["input_offset"]),
                    body.get("labels_offset"),
                    body["snapshot"],
                    int(body["entries"]),
                    body["digest"],
                    _ms(record.get("at")),
                )
            )


def _ms(text: Any) -> int:
    """An audit record's ``at`` in epoch milliseconds (0 when it is not a time)."""
    try:
        stamp = datetime.fromisoformat(str(text))
    except ValueError:
        return 0
    return round(stamp.timestamp() * 1000) if stamp.tzinfo is not None else 0


def plan(records: Iterable[dict[str, Any]], alert_id: str) -> Plan:
    """The reproduction of ``alert_id`` from the audit records (in each partition's order;
    other chains' records are passed over). ReproduceError when the alert is not there or
    no starting point precedes it."""
    chains: dict[str, _Chain] = {}
    for record in records:
        name = record.get("chain")
        if not isinstance(name, str) or not name.startswith("sidecar/"):
            continue
        chain = chains.setdefault(name, _Chain())
        body = record.get("body") or {}
        if record.get("kind") == "alert" and body.get("alert_id") == alert_id:
            return _plan_of(body, int(name.removeprefix("sidecar/")), chain)
        chain.take(record)
    raise ReproduceError(
        f"alert {alert_id} is not in the audit log (an alert id of `detector review list`; "
        f"records older than audit.retention_days are gone)"
    )


def _plan_of(alert: dict[str, Any], partition: int, chain: _Chain) -> Plan:
    if chain.config is None or chain.config_hash is None:
        raise ReproduceError(
            f"no config record precedes alert {alert['alert_id']} in chain sidecar/{partition}"
        )
    if digest(chain.config) != chain.config_hash:
        raise ReproduceError(
            f"the config recorded before alert {alert['alert_id']} does not match its hash "
            f"{chain.config_hash}: the audit log was edited (run detector audit verify)"
        )
    trigger = int(alert["trigger"]["offset"])
    label = alert["trigger"].get("label")
    label_offset = None if label is None else int(label["offset"])
    if label_offset is None:  # raised by an input event: the state before it
        usable = [origin for origin in chain.origins if origin.input_offset <= trigger]
    else:  # completed by a label: the state before that label (the prediction may be in it)
        usable = [o for o in chain.origins if (o.labels_offset or 0) <= label_offset]
    if not usable:
        raise ReproduceError(
            f"no archived state of input partition {partition} at or before offset "
            f"{trigger} under config {chain.config_hash[:12]} (the one in force at the alert): "
            f"{chain.archived} snapshots archived before it, none usable. The sidecar archives "
            f"at the first checkpoint after an assignment or a reload, then every "
            f"audit.archive_interval_s; an alert raised before the first archive under its "
            f"config (or written by a release without the state archive) cannot be re-derived"
        )
    origin = max(usable, key=lambda o: (o.labels_offset or 0, o.input_offset))
    return Plan(alert, partition, chain.config, chain.config_hash, chain.river, origin)


def check_snapshot(origin: Origin, entries: Mapping[str, bytes]) -> None:
    """ReproduceError unless ``entries`` are exactly what the audit record names."""
    if origin.digest is not None and state_digest(entries) != origin.digest:
        raise ReproduceError(
            f"snapshot {origin.snapshot} in the state archive does not match the digest "
            f"its audit record names: the archive was altered"
        )


@dataclass(frozen=True)
class Replayed:
    """One record to replay: of the input (``labels`` False) or of the labels topic."""

    timestamp_ms: int
    labels: bool
    offset: int
    value: bytes | None


@dataclass(frozen=True)
class Outcome:
    """What the replay gave: the alert re-derived (None: no alert with that id came out),
    and the fields in which it differs from the recorded one."""

    plan: Plan
    events: int
    labels: int
    replayed: dict[str, Any] | None
    differences: tuple[str, ...]

    @property
    def reproduced(self) -> bool:
        return self.replayed is not None and not self.differences


#: Fields of an alert compared; ``emitted_at`` (when it was published) is not.
COMPARED = (
    "alert_id",
    "model",
    "model_version",
    "feature",
    "drift_type",
    "detector",
    "severity",
    "detected_at",
    "trigger",
    "evidence",
    "summary",
    "segment",
)


def differences(recorded: Mapping[str, Any], replayed: Mapping[str, Any]) -> tuple[str, ...]:
    """The compared fields whose JSON values differ (as both were published)."""
    again = orjson.loads(orjson.dumps(replayed))
    return tuple(name for name in COMPARED if recorded.get(name) != again.get(name))


def replay(
    plan: Plan,
    entries: Mapping[str, bytes],
    records: Iterable[Replayed],
) -> Outcome:
    """Restore ``entries`` under the recorded config, feed ``records``
    (input and label records merged in the order the sidecar read them) up to the
    trigger, and compare the alert with the recorded one's id."""
    from detector.alerts import alert_id, build_alert
    from detector.config import DetectionSettings
    from detector.core.engine import PartitionDetectors

    check_snapshot(plan.origin, entries)
    kafka = plan.config.get("kafka") or {}
    settings = DetectionSettings.model_validate(plan.config.get("detection") or {}, by_name=True)
    topic = str(plan.alert["trigger"]["topic"])
    state = PartitionDetectors.restore(settings, topic, plan.partition, dict(entries))
    state.set_max_message_bytes(int(kafka.get("max_message_bytes") or 1_048_576))
    if kafka.get("labels_topic"):
        state.labels_topic = str(kafka["labels_topic"])
    wanted = plan.alert["alert_id"]
    found: dict[str, Any] | None = None
    events = labels = 0
    batch: list[Replayed] = []

    def flush() -> dict[str, Any] | None:
        if not batch:
            return None
        offsets = [r.offset for r in batch]
        values = [r.value for r in batch]
        if batch[0].labels:
            result = state.process_labels(offsets, values)
        else:
            result = state.process_batch(offsets, values)
        batch.clear()
        for detection in result.detections:
            if alert_id(detection) == wanted:
                return build_alert(detection, detection.detected_at_ms)
        return None

    for record in records:
        if batch and (batch[0].labels != record.labels or len(batch) >= 1000):
            found = flush()
            if found is not None:
                break
        batch.append(record)
        if record.labels:
            labels += 1
        else:
            events += 1
    else:
        found = flush()
    if found is None:
        return Outcome(plan, events, labels, None, ())
    return Outcome(plan, events, labels, found, differences(plan.alert, found))


__all__ = [
    "COMPARED",
    "Origin",
    "Outcome",
    "Plan",
    "Replayed",
    "ReproduceError",
    "check_snapshot",
    "differences",
    "plan",
    "replay",
]
