"""Prometheus metrics of the sidecar, in a registry of their own.

All names carry the ``drift_detector_`` prefix. Label values are bounded: topics and
partitions come from the assignment, reasons, drift types and limits from the code; model
names come from the data, so at most ``max_models`` distinct values are kept and the rest are
counted under ``"__other__"`` (the same folding guards every label, with smaller caps).
Never pass event ids or free text as a label value.

Metrics (one observation of ``processing_latency_seconds`` per :meth:`Metrics.observe_batch`
call, that is per batch of one partition):

- ``drift_detector_events_consumed_total{topic,partition}``: records polled, before parsing
- ``drift_detector_events_processed_total{model}``: events fed to a model's detectors
- ``drift_detector_consumer_lag{topic,partition}``: high watermark minus position, in messages
- ``drift_detector_processing_latency_seconds``: wall time of one partition batch in the core
- ``drift_detector_active_detectors``: detectors held, over all partitions
- ``drift_detector_alerts_emitted_total{model,drift_type}``: alerts written (committed)
- ``drift_detector_dead_letters_total{reason}``: records sent to the dead-letter topic
- ``drift_detector_checkpoint_duration_seconds``: one checkpoint (snapshot, produce, commit)
- ``drift_detector_restore_duration_seconds``: one state restore (all partitions of an assignment)
- ``drift_detector_limit_rejections_total{limit}``: refusals by ``max_models``/``max_features``
- ``drift_detector_expired_detectors_total``: detectors dropped after ``feature_ttl_s``
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import gc_collector as _gc
from prometheus_client import platform_collector as _platform
from prometheus_client import process_collector as _process

__all__ = ["CONTENT_TYPE_LATEST", "OTHER", "LabelCap", "Metrics"]

#: The label value every value past a cap is folded into.
OTHER = "__other__"

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
#: Label delays: a minute to a year.
_LABEL_DELAY_BUCKETS = (
    60.0,
    600.0,
    3600.0,
    6 * 3600.0,
    86400.0,
    7 * 86400.0,
    30 * 86400.0,
    90 * 86400.0,
    365 * 86400.0,
)


class LabelCap:
    """Admits the first ``limit`` distinct values of a label; later new ones become OTHER."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._seen:  # fast path; set membership is safe without the lock
            return value
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) >= self.limit:
                return OTHER
            self._seen.add(value)
            return value

    def __len__(self) -> int:
        return len(self._seen)


class Metrics:
    """The sidecar's metrics; thread-safe (the loop updates, the HTTP thread renders)."""

    def __init__(
        self,
        *,
        max_models: int = 1000,
        namespace: str = "drift_detector",
        process_metrics: bool = True,
    ) -> None:
        """``max_models``: distinct model label values kept (use ``detection.max_models``).

        ``process_metrics`` adds the standard process, platform and GC collectors.
        """
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        ns = namespace
        self._model = LabelCap(max_models)
        self._drift_type = LabelCap(32)
        self._reason = LabelCap(64)
        self._limit = LabelCap(8)
        self._topic = LabelCap(16)

        self.events_consumed = Counter(
            "events_consumed",
            "Records polled from the input topic, counted before parsing.",
            ["topic", "partition"],
            namespace=ns,
            registry=reg,
        )
        self.events_processed = Counter(
            "events_processed",
            "Prediction events fed to the detectors of a model.",
            ["model"],
            namespace=ns,
            registry=reg,
        )
        self.consumer_lag = Gauge(
            "consumer_lag",
            "Messages between the consumer position and the high watermark.",
            ["topic", "partition"],
            namespace=ns,
            registry=reg,
        )
        self.processing_latency = Histogram(
            "processing_latency_seconds",
            "Wall time to process one batch of one partition through the detection core.",
            namespace=ns,
            registry=reg,
            buckets=_LATENCY_BUCKETS,
        )
        self.active_detectors = Gauge(
            "active_detectors",
            "Drift detectors currently held, over all assigned partitions.",
            namespace=ns,
            registry=reg,
        )
        self.alerts_emitted = Counter(
            "alerts_emitted",
            "Drift alerts written to the alert topic.",
            ["model", "drift_type"],
            namespace=ns,
            registry=reg,
        )
        self.dead_letters = Counter(
            "dead_letters",
            "Input records sent to the dead-letter topic.",
            ["reason"],
            namespace=ns,
            registry=reg,
        )
        self.checkpoint_duration = Histogram(
            "checkpoint_duration_seconds",
            "Time of one checkpoint: snapshot, changelog writes and commit.",
            namespace=ns,
            registry=reg,
            buckets=_DURATION_BUCKETS,
        )
        self.restore_duration = Histogram(
            "restore_duration_seconds",
            "Time to restore the detector state of one assignment's partitions from the changelog.",
            namespace=ns,
            registry=reg,
            buckets=_DURATION_BUCKETS,
        )
        self.limit_rejections = Counter(
            "limit_rejections",
            "Events or features refused because a limit (max_models, max_features) was hit.",
            ["limit"],
            namespace=ns,
            registry=reg,
        )
        self.expired_detectors = Counter(
            "expired_detectors",
            "Detectors dropped because their feature was not seen for feature_ttl_s.",
            namespace=ns,
            registry=reg,
        )
        self._outcome = LabelCap(16)
        self._segment_key = LabelCap(64)
        self.segments_untracked = Counter(
            "segments_untracked",
            "Events whose segment value was beyond detection.segments.max_values for the "
            "model and key (not sliced, not in a fairness group), per model and segment key.",
            ["model", "key"],
            namespace=ns,
            registry=reg,
        )
        self.labels = Counter(
            "labels",
            "Label join outcomes per model (detector.core.labels.OUTCOMES): joined, inline, "
            "duplicate, duplicate_prediction, expired_labelled, expired_unlabelled, unknown, "
            "evicted. Label coverage = expired_labelled / (expired_labelled + "
            "expired_unlabelled).",
            ["model", "outcome"],
            namespace=ns,
            registry=reg,
        )
        self.label_delay = Histogram(
            "label_delay_seconds",
            "Event time from a prediction to its label, per label joined from the labels topic.",
            namespace=ns,
            registry=reg,
            buckets=_LABEL_DELAY_BUCKETS,
        )
        self.pending_labels = Gauge(
            "label_join_pending",
            "Predictions waiting for a label, labelled predictions kept until the horizon, "
            "and labels waiting for their prediction, per input partition.",
            ["partition"],
            namespace=ns,
            registry=reg,
        )
        self.estimated_accuracy = Gauge(
            "estimated_accuracy",
            "Estimated accuracy (CBPE) of the last window_size scored predictions of a model "
            "(the latest of its partitions).",
            ["model", "partition"],
            namespace=ns,
            registry=reg,
        )
        self.realized_accuracy = Gauge(
            "realized_accuracy",
            "Realized accuracy of the last window_size labelled predictions of a model.",
            ["model", "partition"],
            namespace=ns,
            registry=reg,
        )
        if process_metrics:
            _process.ProcessCollector(registry=reg)
            _platform.PlatformCollector(registry=reg)
            _gc.GCCollector(registry=reg)

    # --- what the runner calls ------------------------------------------------------------

    def consumed(self, topic: str, partition: int, n: int = 1) -> None:
        """``n`` records polled from ``topic``/``partition`` (before any parsing)."""
        if n:
            self.events_consumed.labels(self._topic(topic), str(partition)).inc(n)

    def processed(self, processed: Mapping[str, int]) -> None:
        """Events processed per model, as in ``BatchResult.processed``."""
        for model, n in processed.items():
            if n:
                self.events_processed.labels(self._model(model)).inc(n)

    def observe_batch(
        self,
        topic: str,
        partition: int,
        *,
        consumed: int,
        processed: Mapping[str, int],
        seconds: float,
    ) -> None:
        """One batch of one partition done: ``consumed`` records polled, ``processed`` events
        per model (``BatchResult.processed``), ``seconds`` spent in the detection core."""
        self.consumed(topic, partition, consumed)
        self.processed(processed)
        self.processing_latency.observe(max(seconds, 0.0))

    def alert(self, model: str, drift_type: str, n: int = 1) -> None:
        self.alerts_emitted.labels(self._model(model), self._drift_type(drift_type)).inc(n)

    def dead_letter(self, reason: str, n: int = 1) -> None:
        """``reason`` is a stable short code (``Rejection.reason``), never free text."""
        self.dead_letters.labels(self._reason(reason)).inc(n)

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        self.consumer_lag.labels(self._topic(topic), str(partition)).set(max(lag, 0))

    def forget_partition(self, topic: str, partition: int) -> None:
        """Drop the lag series of a revoked partition (so a stale lag is not reported)."""
        with contextlib.suppress(KeyError):
            self.consumer_lag.remove(self._topic(topic), str(partition))

    def set_active_detectors(self, n: int) -> None:
        self.active_detectors.set(n)

    def checkpoint(self, seconds: float) -> None:
        self.checkpoint_duration.observe(max(seconds, 0.0))

    def restore(self, seconds: float) -> None:
        self.restore_duration.observe(max(seconds, 0.0))

    def limit_rejection(self, limit: str, n: int = 1) -> None:
        """``limit`` is ``"max_models"`` or ``"max_features"``."""
        self.limit_rejections.labels(self._limit(limit)).inc(n)

    def label_outcomes(self, outcomes: Mapping[tuple[str, str], int]) -> None:
        for (model, outcome), n in outcomes.items():
            self.labels.labels(model=self._model(model), outcome=self._outcome(outcome)).inc(n)

    def segments_untracked_events(self, counts: Mapping[tuple[str, str], int]) -> None:
        for (model, key), n in counts.items():
            self.segments_untracked.labels(self._model(model), self._segment_key(key)).inc(n)

    def label_delays(self, delays: list[float]) -> None:
        for seconds in delays:
            self.label_delay.observe(seconds)

    def set_accuracy(
        self, partition: int, accuracy: Mapping[str, tuple[float | None, float | None]]
    ) -> None:
        for model, (estimated, realized) in accuracy.items():
            labels = {"model": self._model(model), "partition": str(partition)}
            if estimated is not None:
                self.estimated_accuracy.labels(**labels).set(estimated)
            if realized is not None:
                self.realized_accuracy.labels(**labels).set(realized)

    def set_pending_labels(self, partition: int, n: int) -> None:
        self.pending_labels.labels(partition=str(partition)).set(n)

    def expired(self, n: int = 1) -> None:
        if n:
            self.expired_detectors.inc(n)

    def render(self) -> bytes:
        """The Prometheus text exposition (content type :data:`CONTENT_TYPE_LATEST`)."""
        return generate_latest(self.registry)
