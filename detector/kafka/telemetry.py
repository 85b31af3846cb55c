"""What the runner tells the metrics and health endpoints.

Alerts and dead letters are counted when their checkpoint commits (exactly what consumers
of the topics will see), not when produced; work dropped by a rewind is not counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from detector.core.records import BatchResult
from detector.ops.health import Health
from detector.ops.metrics import Metrics

_LIMITS = {"too_many_models": "max_models", "too_many_features": "max_features"}


class Telemetry:
    def __init__(self, topic: str, metrics: Metrics, health: Health) -> None:
        self.topic = topic
        self.metrics = metrics
        self.health = health
        self._alerts: Counter[tuple[str, str]] = Counter()
        self._letters: Counter[str] = Counter()
        self._outcomes: Counter[tuple[str, str]] = Counter()
        self._untracked: Counter[tuple[str, str]] = Counter()
        self._delays: list[float] = []

    def beat(self) -> None:
        self.health.beat()

    def assigned(self, partitions: Iterable[int]) -> None:
        self.health.assigned((self.topic, p) for p in partitions)

    def restored(self, partitions: Iterable[int], seconds: float) -> None:
        for partition in partitions:
            self.health.restored(self.topic, partition)
        self.metrics.restore(seconds)

    def revoked(self, partitions: Iterable[int]) -> None:
        partitions = list(partitions)
        self.health.revoked((self.topic, p) for p in partitions)
        for partition in partitions:
            self.metrics.forget_partition(self.topic, partition)

    def batch(
        self, partition: int, consumed: int, result: BatchResult, seconds: float, lag: int | None
    ) -> None:
        self.metrics.observe_batch(
            self.topic, partition, consumed=consumed, processed=result.processed, seconds=seconds
        )
        self.metrics.expired(result.expired)
        self._outcomes.update(result.label_outcomes)
        self._untracked.update(result.untracked)
        for detection in result.detections:
            self._alerts[(detection.model, detection.drift_type)] += 1
        for rejection in result.rejections:
            self._letters[rejection.reason] += 1
            limit = _LIMITS.get(rejection.reason)
            if limit is not None:
                self.metrics.limit_rejection(limit)
        if lag is not None:
            self.metrics.set_lag(self.topic, partition, lag)
        self.health.progress(self.topic, partition, lag)

    def labels(self, partition: int, result: BatchResult, pending: int) -> None:
        """A batch of the labels topic (its outcomes count when their checkpoint commits)."""
        self._outcomes.update(result.label_outcomes)
        self._delays += result.label_delays
        for detection in result.detections:
            self._alerts[(detection.model, detection.drift_type)] += 1
        for rejection in result.rejections:
            self._letters[rejection.reason] += 1
        self.metrics.set_pending_labels(partition, pending)

    def committed(self, seconds: float, active_detectors: int) -> None:
        self.metrics.checkpoint(seconds)
        self.metrics.set_active_detectors(active_detectors)
        for (model, drift_type), n in self._alerts.items():
            self.metrics.alert(model, drift_type, n)
        for reason, n in self._letters.items():
            self.metrics.dead_letter(reason, n)
        self.metrics.label_outcomes(self._outcomes)
        self.metrics.label_delays(self._delays)
        self.metrics.segments_untracked_events(self._untracked)
        self.discard()

    def discard(self) -> None:
        self._alerts.clear()
        self._letters.clear()
        self._outcomes.clear()
        self._untracked.clear()
        self._delays.clear()

    def failed(self, reason: str) -> None:
        self.health.fail(reason)
        self.health.set_joined(False)
