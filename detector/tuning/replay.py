"""Replay recorded or synthetic streams through the very same detection core as `run`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from detector.config import DetectionSettings
from detector.core.engine import PartitionDetectors
from detector.core.records import BatchResult, Detection, InputRecord


def replay(
    events: Iterable[dict[str, Any] | bytes],
    settings: DetectionSettings | None = None,
    *,
    topic: str = "replay",
    partition: int = 0,
    batch_size: int = 1000,
) -> tuple[list[Detection], BatchResult]:
    """Feed ``events`` (dicts or raw JSON bytes) as one partition; offsets count from 0.

    Returns the detections and a BatchResult totalling rejections and processed counts.
    """
    core = PartitionDetectors(settings or DetectionSettings(), topic, partition)
    total = BatchResult()
    batch: list[InputRecord] = []

    def flush() -> None:
        result = core.process(batch)
        total.detections.extend(result.detections)
        total.rejections.extend(result.rejections)
        for model, n in result.processed.items():
            total.processed[model] = total.processed.get(model, 0) + n
        batch.clear()

    for offset, event in enumerate(events):
        value = event if isinstance(event, bytes) else orjson.dumps(event)
        batch.append(InputRecord(topic, partition, offset, value))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return total.detections, total
