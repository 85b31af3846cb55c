"""Drift alert v1: the public contract on the alert topic (schemas/drift-alert.v1.json)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from detector.core.records import Detection

SCHEMA_VERSION = 1

#: Namespace of the deterministic alert ids (uuid5). Never change it: ids would change.
_ALERT_NAMESPACE = uuid.UUID("6f0f8f1e-3c1a-5b7e-9a43-2d1f0c7b9e11")


def alert_id(detection: Detection) -> str:
    """Same detection, same id: the trigger position and what drifted, nothing time-dependent
    (a slice's detection adds its segment, so that it differs from the model's own)."""
    name = (
        f"{detection.topic}/{detection.partition}/{detection.offset}/"
        f"{detection.model}/{detection.feature}/{detection.drift_type}"
    )
    if detection.segment is not None:
        name += "/" + ",".join(f"{k}={v}" for k, v in sorted(detection.segment.items()))
    return str(uuid.uuid5(_ALERT_NAMESPACE, name))


def rfc3339(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_alert(detection: Detection, emitted_at_ms: int) -> dict[str, Any]:
    trigger: dict[str, Any] = {
        "topic": detection.topic,
        "partition": detection.partition,
        "offset": detection.offset,
        "event_id": detection.event_id,
    }
    if detection.label is not None:  # a performance alert completed by a label event
        label = detection.label
        trigger["label"] = {
            "topic": label["topic"],
            "partition": label["partition"],
            "offset": label["offset"],
            "timestamp": rfc3339(label["timestamp_ms"]),
        }
    alert: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "alert_id": alert_id(detection),
        "model": detection.model,
        "model_version": detection.model_version,
        "feature": detection.feature,
        "drift_type": detection.drift_type,
        "detector": detection.detector,
        "severity": detection.severity,
        "detected_at": rfc3339(detection.detected_at_ms),
        "emitted_at": rfc3339(emitted_at_ms),
        "trigger": trigger,
        "evidence": detection.evidence,
        "summary": detection.summary,
    }
    if detection.segment is not None:
        alert["segment"] = detection.segment
    return alert


def encode_alert(alert: dict[str, Any]) -> bytes:
    return orjson.dumps(alert)


def alert_key(detection: Detection) -> bytes:
    """Alerts are keyed by model, so one model's alerts stay in order on one partition."""
    return detection.model.encode("utf-8")


def alert_line(alert: dict[str, Any]) -> str:
    """One readable line for a terminal (the demo, `detector tail`)."""
    trig = alert["trigger"]
    return (
        f"{alert['detected_at']}  {alert['severity'].upper():8} {alert['summary']} "
        f"[p{trig['partition']}@{trig['offset']}]"
    )
