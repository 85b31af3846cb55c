"""Plain data that crosses the boundary between the Kafka shell and the pure core."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class InputRecord:
    """One message of the input topic, as the shell hands it to the core."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    timestamp_ms: int | None = None  # the Kafka record timestamp, if any


@dataclass(frozen=True, slots=True)
class Rejection:
    """An input record the core could not process; it goes to the dead-letter topic.

    ``reason`` is a short stable code (see ``detector.core.events.REASONS``), safe as a
    metric label; ``detail`` is a human sentence.
    """

    record: InputRecord
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Detection:
    """A drift detected at one event: everything an alert needs except emission time."""

    model: str
    model_version: str | None
    feature: str
    drift_type: str
    detector: dict[str, Any]
    severity: str
    detected_at_ms: int
    topic: str
    partition: int
    offset: int
    event_id: str
    evidence: dict[str, Any]
    summary: str
    #: A performance detection completed by a label event: that record's topic, partition,
    #: offset and timestamp_ms (the alert's ``trigger.label``). None otherwise.
    label: dict[str, Any] | None = None
    #: A slice's detection (``detection.segments.keys``): the segment key and value whose
    #: events alone drifted, e.g. ``{"region": "eu"}`` (the alert's ``segment``). None for
    #: the model's own detectors (fairness alerts name the protected key as ``feature``).
    segment: dict[str, str] | None = None


@dataclass(slots=True)
class BatchResult:
    """What processing a batch of records produced, in input order."""

    detections: list[Detection] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    processed: dict[str, int] = field(default_factory=dict)  # model -> events processed
    expired: int = 0  # feature monitors forgotten (not seen for feature_ttl_s)
    #: Label join outcomes, (model, outcome) -> count (detector.core.labels.OUTCOMES).
    label_outcomes: dict[tuple[str, str], int] = field(default_factory=dict)
    #: Seconds from prediction to label, per label joined from the labels topic.
    label_delays: list[float] = field(default_factory=list)
    labels: int = 0  # label events processed
    #: Segment values beyond ``detection.segments.max_values``, (model, key) -> events.
    untracked: dict[tuple[str, str], int] = field(default_factory=dict)
