"""What the sidecar's audit records say about it: the config in force (secrets redacted)
and its hash, and the instance's versions."""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Mapping
from typing import Any

from detector.audit.chain import digest
from detector.config import Settings
from detector.ops.secrets import redact_config


def config_content(settings: Settings) -> dict[str, Any]:
    """The settings as recorded: every section, ``kafka.librdkafka`` with its secret
    values replaced by ``***`` (file: and env: references are kept)."""
    content = settings.model_dump(mode="json")
    content["kafka"]["librdkafka"] = redact_config(settings.kafka.librdkafka)
    return content


def config_body(settings: Settings) -> dict[str, Any]:
    """``config_hash`` (SHA-256 of the canonical content) and ``config`` (the content)."""
    content = config_content(settings)
    return {"config_hash": digest(content), "config": content}


def state_digest(entries: Mapping[str, bytes]) -> str:
    """The SHA-256 of an archived state: of the canonical JSON of each key's value's
    SHA-256, so that the audit record names exactly what the archive holds."""
    return digest({key: hashlib.sha256(value).hexdigest() for key, value in entries.items()})


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def model_counts(models: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per model of a partition's state (``PartitionDetectors.models``; not its slices):
    its events and labelled predictions so far, the realized accuracy of its last window
    of labelled predictions and the estimated one of its scores (None when there is none)."""
    from detector.core.engine import SLICE_PREFIX

    out: dict[str, dict[str, Any]] = {}
    for name, state in sorted(models.items()):
        if name.startswith(SLICE_PREFIX):
            continue
        performance, estimation = state.performance, state.estimation
        estimated = None
        if estimation is not None and estimation.table is not None:
            estimated = estimation.estimate()
        out[name] = {
            "events": state.events,
            "labelled": 0 if performance is None else performance.labelled,
            "accuracy": None if performance is None else _rounded(performance.realized_accuracy()),
            "estimated_accuracy": _rounded(estimated),
        }
    return out


def archive_body(
    partition: int,
    snapshot: str,
    input_offset: int,
    labels_offset: int | None,
    entries: Mapping[str, bytes],
    models: Mapping[str, Any] | None = None,
    lag: int | None = None,
) -> dict[str, Any]:
    """A ``state_archived`` record: which snapshot, the offsets it covers, its digest, and
    what the state says of each model (:func:`model_counts`) and how far the partition's
    consumer was behind (``lag``: events between the snapshot and the input's end)."""
    return {
        "partition": partition,
        "snapshot": snapshot,
        "input_offset": input_offset,
        "labels_offset": labels_offset,
        "entries": len(entries),
        "bytes": sum(len(value) for value in entries.values()),
        "digest": state_digest(entries),
        "lag": lag,
        "models": model_counts(models or {}),
    }


def versions() -> dict[str, str]:
    """The detector's, River's and Python's versions."""
    from detector import __version__
    from detector.core.state import river_version

    return {"version": __version__, "river": river_version(), "python": platform.python_version()}


__all__ = [
    "archive_body",
    "config_body",
    "config_content",
    "model_counts",
    "state_digest",
    "versions",
]
