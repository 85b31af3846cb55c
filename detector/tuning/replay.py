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
    labels_topic: str | None = None,
    input_topic: str | None = None,
) -> Iterator[tuple[int, BatchResult]]:
    """Feed ``records`` (each partition's in offset order) to per-partition cores; yield
    each batch's size and result, in input order.

    Records of ``labels_topic`` (with ``settings.labels.join``) are label events: they go
    to the core of the input partition with their partition's number, as in ``detector
    run`` (one is made for ``input_topic`` if that partition had no prediction yet)."""
    cores: dict[tuple[str, int], PartitionDetectors] = {}
    by_partition: dict[int, PartitionDetectors] = {}
    batch: list[InputRecord] = []

    def core_for(topic: str, partition: int) -> PartitionDetectors:
        core = cores.get((topic, partition))
        if core is None:
            core = PartitionDetectors(settings, topic, partition)
            if max_message_bytes is not None:
                core.set_max_message_bytes(max_message_bytes)
            if labels_topic is not None:
                core.labels_topic = labels_topic
            cores[(topic, partition)] = core
            by_partition.setdefault(partition, core)
        return core

    def flush() -> BatchResult:
        first = batch[0]
        if labels_topic is not None and first.topic == labels_topic:
            core = by_partition.get(first.partition)
            if core is None:
                if input_topic is None:
                    raise ValueError("label events before any prediction: input_topic needed")
                core = core_for(input_topic, first.partition)
            result = core.process_labels(
                [r.offset for r in batch], [r.value for r in batch], [r.timestamp_ms for r in batch]
            )
        else:
            result = core_for(first.topic, first.partition).process(batch)
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
