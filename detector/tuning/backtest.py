"""The backtest behind ``detector replay``: a source through the sidecar's own core.

Each input partition of the source gets its own :class:`PartitionDetectors`, as in
``detector run``, and its records are processed in offset order; alerts are built by
:func:`detector.alerts.build_alert`, so they are the alerts the sidecar would publish for
the same records (same ``alert_id``s where the topic, partition and offsets are the same).

With ``--inject``, the source is read into memory, the changes are applied to a copy
(:mod:`detector.tuning.inject`) and each change's outcome is measured: the first alert that
finds it (same model and feature, a matching drift type, at or after its start) and its
delay in the model's events, and the alerts of that model before it (false alarms).

With ``labels`` (a source of label events, ``detector replay --labels``), the label events
are merged into the predictions in time order (:func:`detector.tuning.sources.by_event_time`)
and joined by the core's own label join, as ``detector run --labels-topic`` joins them
(``detection.labels.join`` is switched on, as ``kafka.labels_topic`` switches it on).

With a ``trace`` (the HTML report's :class:`detector.tuning.trace.StreamTrace`), every event
is shown to it too, with its position among its model's events, and every label event.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from detector.alerts import alert_id, build_alert
from detector.config import Settings
from detector.core.records import Detection, InputRecord
from detector.core.settings import DetectionSettings
from detector.tuning.inject import FOUND_BY, Injection, Plan, inject
from detector.tuning.progress import Progress
from detector.tuning.replay import process_records
from detector.tuning.sources import Source, SourceError, by_event_time


class Trace(Protocol):
    """What the backtest shows each event to (the report's data collector)."""

    def observe(self, model: str, position: int, event: dict[str, Any]) -> None: ...

    def observe_label(self, event: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class InjectionOutcome:
    """How the backtest did on one injected change."""

    plan: Plan
    #: The trigger of the first alert that found the change, or None.
    found_by: dict[str, Any] | None
    #: Events of the model from the change's start to that alert's trigger.
    delay: int | None
    #: Alerts of the model triggered before the change's start that no injected change
    #: (of the same feature and a matching drift type, started earlier) explains.
    false_alarms_before: int

    def as_json(self) -> dict[str, Any]:
        injection = self.plan.injection
        return {
            "spec": injection.spec,
            "model": injection.model,
            "feature": injection.feature,
            "kind": injection.kind,
            "start": self.plan.start,
            "detected": self.found_by is not None,
            "alert_id": None if self.found_by is None else self.found_by["alert_id"],
            "delay_events": self.delay,
            "false_alarms_before": self.false_alarms_before,
        }


@dataclass
class Backtest:
    """What a backtest found. ``alerts`` in the order the sidecar would publish them."""

    source: str
    settings: Settings
    alerts: list[dict[str, Any]] = field(default_factory=list)
    #: alert_id -> position of the trigger among its model's events (when known: the
    #: events were parsed, for --inject or a trace).
    positions: dict[str, int] = field(default_factory=dict)
    processed: dict[str, int] = field(default_factory=dict)
    rejected: Counter[str] = field(default_factory=Counter)
    injections: list[InjectionOutcome] = field(default_factory=list)
    #: The labels source's name (``--labels``), the label events read and the label join's
    #: outcomes per model (joined, expired, duplicate, ...; detector.core.labels.OUTCOMES).
    labels: str | None = None
    label_events: int = 0
    label_outcomes: dict[str, Counter[str]] = field(default_factory=dict)
    records: int = 0
    elapsed_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        """The end-of-run summary (``--summary FILE`` writes it as JSON)."""
        models: dict[str, dict[str, Any]] = {}
        for model, n in sorted(self.processed.items()):
            models[model] = {"events": n, "alerts": 0, "by_drift_type": {}}
        for alert in self.alerts:
            entry = models.setdefault(
                alert["model"], {"events": 0, "alerts": 0, "by_drift_type": {}}
            )
            entry["alerts"] += 1
            kinds = entry["by_drift_type"]
            kinds[alert["drift_type"]] = kinds.get(alert["drift_type"], 0) + 1
        for model, outcomes in sorted(self.label_outcomes.items()):
            entry = models.setdefault(model, {"events": 0, "alerts": 0, "by_drift_type": {}})
            entry["labels"] = dict(sorted(outcomes.items()))
        return {
            "source": self.source,
            "labels": self.labels,
            "label_events": self.label_events,
            "records": self.records,
            "events": sum(self.processed.values()),
            "alerts": len(self.alerts),
            "rejected": sum(self.rejected.values()),
            "rejected_by_reason": dict(sorted(self.rejected.items())),
            "elapsed_s": round(self.elapsed_s, 3),
            "events_per_s": round(self.records / self.elapsed_s) if self.elapsed_s else None,
            "models": models,
            "injections": [outcome.as_json() for outcome in self.injections],
        }


def _model_of(event: Any) -> str | None:
    if isinstance(event, dict):
        model = event.get("model")
        if isinstance(model, str):
            return model
    return None


def _parsed(records: Iterable[InputRecord]) -> Iterator[tuple[InputRecord, Any]]:
    for record in records:
        try:
            event = orjson.loads(record.value) if record.value is not None else None
        except orjson.JSONDecodeError:
            event = None
        yield record, event


def joining(detection: DetectionSettings) -> DetectionSettings:
    """``detection`` with the label join on (predictions wait for label events)."""
    if detection.labels.join:
        return detection
    joined = detection.labels.model_copy(update={"join": True})
    return detection.model_copy(update={"labels": joined})


def run_backtest(
    source: Source,
    settings: Settings,
    *,
    injections: Sequence[Injection] = (),
    labels: Source | None = None,
    seed: int = 0,
    trace: Trace | None = None,
    progress: Progress | None = None,
    now_ms: Any = None,
) -> Backtest:
    """Replay ``source`` (with the label events of ``labels``, if given) through the core
    under ``settings`` (InjectionError, SourceError for a bad source or change). ``now_ms``
    (a function) stamps ``emitted_at``."""
    clock = now_ms or (lambda: int(time.time() * 1000))
    result = Backtest(source=source.name, settings=settings)
    core_settings = settings.detection
    labels_topic: str | None = None
    if labels is not None:
        labels_topic = labels.topic
        if labels_topic == source.topic:
            raise SourceError(
                f"{labels.name}: the labels and the predictions are both topic {labels_topic!r}"
            )
        result.labels = labels.name
        core_settings = joining(core_settings)
    started = time.perf_counter()
    parse = bool(injections) or trace is not None
    records: Iterable[InputRecord] = source.records()
    model_positions: dict[tuple[str, int, int], int] = {}  # (topic, partition, offset)
    plans: list[Plan] = []
    if injections:
        pairs = list(_parsed(records))
        events = [event for _, event in pairs if _model_of(event) is not None]
        plans = inject(events, injections, seed=seed)
        records = (
            InputRecord(r.topic, r.partition, r.offset, orjson.dumps(e), r.timestamp_ms)
            if _model_of(e) is not None
            else r
            for r, e in pairs
        )
    if labels is not None:
        records = by_event_time(records, labels.records())
    counts: Counter[str] = Counter()

    def observed(stream: Iterable[InputRecord]) -> Iterator[InputRecord]:
        for record, event in _parsed(stream):
            if record.topic == labels_topic:
                if trace is not None and isinstance(event, dict):
                    trace.observe_label(event)
                yield record
                continue
            model = _model_of(event)
            if model is not None:
                position = counts[model]
                counts[model] += 1
                model_positions[(record.topic, record.partition, record.offset)] = position
                if trace is not None:
                    trace.observe(model, position, event)
            yield record

    if parse:
        records = observed(records)
    detections: list[Detection] = []
    batches = process_records(
        records,
        core_settings,
        max_message_bytes=settings.kafka.max_message_bytes,
        labels_topic=labels_topic,
        input_topic=source.topic,
    )
    for size, out in batches:
        detections.extend(out.detections)
        for alert_detection in out.detections:
            result.alerts.append(build_alert(alert_detection, clock()))
        result.rejected.update(r.reason for r in out.rejections)
        for model, n in out.processed.items():
            result.processed[model] = result.processed.get(model, 0) + n
        result.records += size
        result.label_events += out.labels
        for (model, outcome), n in out.label_outcomes.items():
            result.label_outcomes.setdefault(model, Counter())[outcome] += n
        if progress is not None:
            fraction = source.done / source.size_hint if source.size_hint else None
            progress.update(result.records, fraction=fraction, note=f"{len(result.alerts)} alerts")
    for detection in detections:
        where = (detection.topic, detection.partition, detection.offset)
        if where in model_positions:
            result.positions[alert_id(detection)] = model_positions[where]
    result.injections = [_outcome(p, plans, result) for p in plans]
    result.elapsed_s = time.perf_counter() - started
    if progress is not None:
        progress.close(result.records, note=f"{len(result.alerts)} alerts")
    return result


def _explained(alert: dict[str, Any], position: int, plans: Sequence[Plan]) -> bool:
    """Whether an injected change (started at or before the alert) would explain it."""
    for plan in plans:
        injection = plan.injection
        if (
            injection.model == alert["model"]
            and injection.feature == alert["feature"]
            and alert["drift_type"] in FOUND_BY[injection.kind]
            and plan.start <= position
        ):
            return True
    return False


def _outcome(plan: Plan, plans: Sequence[Plan], result: Backtest) -> InjectionOutcome:
    """The first alert at or after the change that finds it, and the false alarms before
    it: alerts of the model before its start that no injected change explains."""
    injection = plan.injection
    found: dict[str, Any] | None = None
    delay: int | None = None
    before = 0
    for alert in result.alerts:
        if alert["model"] != injection.model:
            continue
        position = result.positions.get(alert["alert_id"])
        if position is None:
            continue
        if position < plan.start:
            before += 0 if _explained(alert, position, plans) else 1
        elif (
            found is None
            and alert["feature"] == injection.feature
            and alert["drift_type"] in FOUND_BY[injection.kind]
        ):
            found, delay = alert, position - plan.start
    return InjectionOutcome(plan, found, delay, before)


__all__ = ["Backtest", "InjectionOutcome", "Trace", "joining", "run_backtest"]
