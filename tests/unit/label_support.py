"""Seeded streams of predictions and their delayed labels, and a driver that feeds both to
one PartitionDetectors in time order (as a sidecar reading both topics live would)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

import orjson

from detector.core.engine import PartitionDetectors
from detector.core.records import Detection
from detector.core.settings import DetectionSettings, LabelSettings


def join_settings(**labels: Any) -> DetectionSettings:
    return DetectionSettings(labels=LabelSettings(join=True, **labels))


@dataclass
class DelayedStream:
    """``n`` scored predictions one second apart whose error rate goes from ``before`` to
    ``after`` at ``change``; each label arrives after an exponential lag (mean
    ``mean_lag_s``), and ``missing`` of them never."""

    n: int = 12_000
    change: int = 6_000
    before: float = 0.1
    after: float = 0.4
    mean_lag_s: float = 60.0
    missing: float = 0.1
    seed: int = 11
    model: str = "credit"
    predictions: list[dict[str, Any]] = field(default_factory=list)
    labels: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        start = 1_767_225_600_000  # 2026-01-01
        for i in range(self.n):
            ts = start + i * 1000
            score = rng.random()
            wrong = rng.random() < (self.before if i < self.change else self.after)
            positive = (score >= 0.5) != wrong
            self.predictions.append(
                {
                    "event_id": f"p{i}",
                    "model": self.model,
                    "timestamp": ts,
                    "features": {"x": round(rng.gauss(0, 1), 6)},
                    "prediction": round(score, 6),
                }
            )
            lag = rng.expovariate(1.0 / self.mean_lag_s) if self.mean_lag_s else 0.0
            if rng.random() >= self.missing:
                self.labels.append(
                    {
                        "event_id": f"p{i}",
                        "model": self.model,
                        "label": int(positive),
                        "timestamp": ts + int(lag * 1000),
                    }
                )
        self.labels.sort(key=lambda label: (label["timestamp"], label["event_id"]))


@dataclass
class Fed:
    detections: list[Detection] = field(default_factory=list)
    outcomes: dict[tuple[str, str], int] = field(default_factory=dict)
    delays: list[float] = field(default_factory=list)
    rejections: list[Any] = field(default_factory=list)

    def add(self, result: Any) -> None:
        self.detections += result.detections
        self.rejections += result.rejections
        self.delays += result.label_delays
        for key, n in result.label_outcomes.items():
            self.outcomes[key] = self.outcomes.get(key, 0) + n


def merged(stream: DelayedStream) -> list[tuple[str, int, bytes]]:
    """Both topics in time order (a label after the predictions of its millisecond):
    (topic, offset in that topic, value)."""
    items: list[tuple[int, int, str, int, bytes]] = []
    for offset, event in enumerate(stream.predictions):
        items.append((event["timestamp"], 0, "predictions", offset, orjson.dumps(event)))
    for offset, label in enumerate(stream.labels):
        items.append((label["timestamp"], 1, "labels", offset, orjson.dumps(label)))
    items.sort(key=lambda item: (item[0], item[1], item[3]))
    return [(topic, offset, value) for _, _, topic, offset, value in items]


def feed(
    core: PartitionDetectors, records: list[tuple[str, int, bytes]], fed: Fed | None = None
) -> Fed:
    """Feed runs of records of the same topic as one batch each."""
    fed = fed or Fed()
    i = 0
    while i < len(records):
        topic = records[i][0]
        j = i
        while j < len(records) and records[j][0] == topic:
            j += 1
        offsets = [r[1] for r in records[i:j]]
        values = [r[2] for r in records[i:j]]
        if topic == "labels":
            fed.add(core.process_labels(offsets, values))
        else:
            fed.add(core.process_batch(offsets, values))
        i = j
    return fed


def positions(detections: list[Detection]) -> list[tuple[int, int | None, str]]:
    """(prediction offset, label offset, drift type) of each detection."""
    return [
        (d.offset, None if d.label is None else d.label["offset"], d.drift_type) for d in detections
    ]


def scored_stream(
    n: int = 30_000,
    change: int = 15_000,
    spread_before: float = 3.0,
    spread_after: float = 3.0,
    flip_after: float = 0.0,
    labelled: int = 6_000,
    seed: int = 21,
    model: str = "credit",
) -> tuple[list[dict[str, Any]], list[int]]:
    """Calibrated scores: ``score = sigmoid(z)`` with ``z ~ N(0, spread)`` and the label
    drawn with probability ``score``. From ``change`` on, ``spread_after`` (a covariate
    shift: less confident scores, a lower accuracy that the scores show) and labels flipped
    with probability ``flip_after`` (a concept shift: the same scores, other labels). The
    first ``labelled`` events carry their label; the others' labels are returned apart."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    truth: list[int] = []
    start = 1_767_225_600_000
    for i in range(n):
        z = rng.gauss(0.0, spread_before if i < change else spread_after)
        score = 1.0 / (1.0 + math.exp(-z))
        label = int(rng.random() < score)
        if i >= change and rng.random() < flip_after:
            label = 1 - label
        truth.append(label)
        event: dict[str, Any] = {
            "event_id": f"s{i}",
            "model": model,
            "timestamp": start + i * 1000,
            "features": {"x": round(z, 6)},
            "prediction": round(score, 6),
        }
        if i < labelled:
            event["label"] = label
        events.append(event)
    return events, truth
