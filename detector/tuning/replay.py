"""Recorded or synthetic streams through the very same detection core as `detector run`.

:func:`process_records` is the one loop: records in, one :class:`PartitionDetectors` per
input topic and partition (as the sidecar keeps them), batches out. The backtest
(:mod:`detector.tuning.backtest`) and :func:`replay` (tests, the demo, the benchmark) both
run it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from detector.core.engine import PartitionDetectors
from detector.core.records import BatchResult, Detection, InputRecord
from detector.core.settings import DetectionSettings

#: Records handed to the core at a time (detections do not depend on it).
BATCH = 2000


def process_records(
    records: Iterable[InputRecord],
    settings: DetectionSettings,
    *,
    max_message_bytes: int | None = None,
    batch_size: int = BATCH,
) -> Iterator[tuple[int, BatchResult]]:
    """Feed ``records`` (each partition's in offset order) to per-partition cores; yield
    each batch's size and result, in input order."""
    cores: dict[tuple[str, int], PartitionDetectors] = {}
    batch: list[InputRecord] = []

    def flush() -> BatchResult:
        first = batch[0]
        key = (first.topic, first.partition)
        core = cores.get(key)
        if core is None:
            core = PartitionDetectors(settings, first.topic, first.partition)
            if max_message_bytes is not None:
                core.set_max_message_bytes(max_message_bytes)
            cores[key] = core
        result = core.process(batch)
        batch.clear()
        return result

    for record in records:
        if batch and (
            len(batch) >= batch_size
            or record.partition != batch[-1].partition
            or record.topic != batch[-1].topic
        ):
            size = len(batch)
            yield size, flush()
        batch.append(record)
    if batch:
        size = len(batch)
        yield size, flush()


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
    records = (
        InputRecord(topic, partition, offset, e if isinstance(e, bytes) else orjson.dumps(e))
        for offset, e in enumerate(events)
    )
    total = BatchResult()
    for _, result in process_records(
        records, settings or DetectionSettings(), batch_size=batch_size
    ):
        total.detections.extend(result.detections)
        total.rejections.extend(result.rejections)
        for model, n in result.processed.items():
            total.processed[model] = total.processed.get(model, 0) + n
        total.expired += result.expired
    return total.detections, total
