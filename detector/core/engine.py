"""Per-partition detection state: raw records in, detections and rejections out. No I/O.

One :class:`PartitionDetectors` holds every detector fed by one input partition, grouped by
model and feature. Its changelog form is one entry per model (see :mod:`detector.core.state`).

Events are processed one at a time, in offset order. The compiled loop
(:func:`detector.core._kernel.run`) takes every event whose shape it recognises (only the
model's known features, with the kinds they had before, in any order) and hands any other
event to :meth:`PartitionDetectors._process_one`, the readable reference path, which does
the full validation, admission and registration of new features.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from detector.core import _kernel
from detector.core._kernel import CategoricalTracker, NumericTracker, RateTracker
from detector.core.events import (
    InvalidEvent,
    PredictionEvent,
    check_feature_types,
    parse_event,
)
from detector.core.hits import Hit
from detector.core.records import BatchResult, Detection, InputRecord, Rejection
from detector.core.settings import DetectionSettings
from detector.core.state import StateFormatError, decode_model, encode_model
from detector.core.values import categorical, is_error, kind_of, prediction_value

PREDICTION = "__prediction__"
ERROR = "__error__"

_MAX_SIGNATURES = 256
#: Stale features are swept every this many admitted events of a model, and every this
#: many events refused for lack of room for a new feature.
SWEEP_EVERY = 1024
REFUSED_SWEEP_EVERY = 256


class FeatureMonitor:
    """Missing rate plus value drift of one feature of one model."""

    __slots__ = ("fingerprint", "kind", "last_seen_ms", "missing", "values")

    def __init__(
        self, settings: DetectionSettings, model: str, name: str, kind: str | None
    ) -> None:
        spec = settings.feature_detector(model, name)
        self.fingerprint = _fingerprint(settings, model, name)
        self.kind = kind
        self.last_seen_ms = 0
        self.missing = RateTracker(spec, settings, "missing_rate")
        self.values: NumericTracker | CategoricalTracker | None = None

    def ensure_values(self, settings: DetectionSettings, model: str, name: str) -> None:
        if self.values is None and self.kind is not None:
            spec = settings.feature_detector(model, name)
            drift_type = "prediction" if name == PREDICTION else None
            tracker = NumericTracker if self.kind == "numeric" else CategoricalTracker
            self.values = tracker(spec, settings, drift_type)

    @property
    def detector_count(self) -> int:
        values = self.values
        if values is None:
            return 1
        if isinstance(values, NumericTracker):
            return 3
        return 1 + max(1, len(values.detectors))


class ModelState:
    """All monitors of one model on one partition."""

    def __init__(self) -> None:
        self.features: dict[str, FeatureMonitor] = {}
        self.signatures: set[tuple[tuple[str, ...], tuple[type, ...]]] = set()
        self.prediction_kind: str | None = None
        self.prediction: FeatureMonitor | None = None
        self.error: RateTracker | None = None
        self.latest_ms = 0
        self.events = 0
        self.refused = 0


def _fingerprint(settings: DetectionSettings, model: str, name: str) -> str:
    spec = settings.feature_detector(model, name)
    return (
        f"{spec.name}{sorted(spec.params.items())}/{settings.block_size}/{settings.reference_size}"
        f"/{settings.window_size}/{settings.rearm_after}/{settings.max_categories}"
        f"/{settings.min_category_share}/{settings.feature_kind(model, name)}"
    )


class PartitionDetectors:
    """All detectors fed by one input partition."""

    def __init__(
        self, settings: DetectionSettings, topic: str, partition: int, *, reference: bool = False
    ) -> None:
        """``reference=True`` takes the readable per-event path for every event, never the
        compiled loop: the same results, slower (tests compare the two)."""
        self.settings = settings
        self.reference = reference
        self.topic = topic
        self.partition = partition
        self.models: dict[str, ModelState] = {}
        #: The compiled loop's view of each model's usual event shape (not state: rebuilt
        #: from the next event the reference path admits).
        self._layouts: dict[str, _kernel.Layout] = {}
        self._dirty: set[str] = set()
        self._max_bytes = 1 << 62

    def set_max_message_bytes(self, limit: int) -> None:
        self._max_bytes = limit

    # -- processing ---------------------------------------------------------------------

    def process(self, records: Sequence[InputRecord]) -> BatchResult:
        """Process records of this partition in offset order."""
        return self.process_batch(
            [r.offset for r in records],
            [r.value for r in records],
            [r.timestamp_ms for r in records],
        )

    def process_batch(
        self,
        offsets: Sequence[int],
        values: Sequence[bytes | None],
        timestamps: Sequence[int | None] | None = None,
    ) -> BatchResult:
        """Process the messages of this partition at ``offsets``, in offset order.
        ``timestamps`` (Kafka record times) are only carried into rejections.

        Every event is fed to its model's trackers before the next one is looked at, so the
        result does not depend on how the stream is cut into batches. Stale features are
        swept at exact events: every SWEEP_EVERY processed events of a model, and when a new
        feature would exceed max_features_per_model.
        """
        result = BatchResult()
        stamps = None if timestamps is None else list(timestamps)
        if self.reference:
            for i, (offset, value) in enumerate(zip(offsets, values, strict=True)):
                self._process_one(offset, value, None if stamps is None else stamps[i], result)
        else:
            _kernel.run(self, _as_list(offsets), _as_list(values), stamps, result)
        return result

    def _process_one(
        self, offset: int, value: bytes | None, timestamp: int | None, result: BatchResult
    ) -> None:
        """The reference path for one event: parse, admit, feed. Called by the compiled
        loop for every event it does not take itself."""
        try:
            event = parse_event(value, self._max_bytes, check_features=False)
            self._layouts.pop(event.model, None)
            state = self._admit(event, result)
        except InvalidEvent as exc:
            record = InputRecord(self.topic, self.partition, offset, value, timestamp)
            result.rejections.append(Rejection(record, exc.reason, exc.detail))
            return
        model = event.model
        hits: list[tuple[str, Hit]] = []
        features = event.features
        ts = event.timestamp_ms
        for name, monitor in state.features.items():
            self._feed(model, name, monitor, features.get(name), ts, hits)
        prediction = prediction_value(event.prediction)
        if state.prediction is None:
            state.prediction = FeatureMonitor(
                self.settings, model, PREDICTION, state.prediction_kind
            )
        self._feed(model, PREDICTION, state.prediction, prediction, ts, hits)
        if event.label is not None:
            if state.error is None:
                spec = self.settings.feature_detector(model, ERROR)
                state.error = RateTracker(spec, self.settings, "error_rate")
            for hit in state.error.update((is_error(prediction, event.label),)):
                hits.append((ERROR, hit))
        for name, hit in hits:
            result.detections.append(self._detection(model, name, offset, event, hit))
        result.processed[model] = result.processed.get(model, 0) + 1
        self._dirty.add(model)
        state.events += 1
        if state.events % SWEEP_EVERY == 0:
            result.expired += self._expire(model, state, state.latest_ms)
        if model in self.models:
            self._layouts[model] = _kernel.Layout(model, state, features, self.settings)

    def _feed(
        self,
        model: str,
        name: str,
        monitor: FeatureMonitor,
        value: Any,
        timestamp_ms: int,
        hits: list[tuple[str, Hit]],
    ) -> None:
        missing = value is None
        for hit in monitor.missing.update((missing,)):
            hits.append((name, hit))
        if missing:
            return
        monitor.last_seen_ms = timestamp_ms
        monitor.ensure_values(self.settings, model, name)
        values = monitor.values
        if values is None:
            return
        if isinstance(values, NumericTracker):
            found = values.update((float(value),))
        else:
            found = values.update((categorical(value),))
        if found:
            hits.extend((name, with_missing_rates(hit, monitor)) for hit in found)

    def _admit(self, event: PredictionEvent, result: BatchResult) -> ModelState:
        """Check limits and feature kinds; register new features. Raises InvalidEvent."""
        settings = self.settings
        state = self.models.get(event.model)
        if state is None:
            if len(self.models) >= settings.max_models:
                raise InvalidEvent(
                    "too_many_models",
                    f"partition already tracks the maximum of {settings.max_models} models",
                )
            state = ModelState()  # registered only once the event is admitted
        prediction = event.prediction
        # Class probabilities are watched through their argmax: a class name.
        kind = "categorical" if isinstance(prediction, dict) else kind_of(prediction)
        if state.prediction_kind is not None and kind != state.prediction_kind:
            raise InvalidEvent(
                "feature_type_changed",
                f"prediction was {state.prediction_kind}, this event has a {kind} value",
            )
        features = event.features
        signature = (tuple(features), tuple(map(type, features.values())))
        if signature in state.signatures:
            state.latest_ms = max(state.latest_ms, event.timestamp_ms)
            return state
        check_feature_types(features)
        ignored = settings.ignored(event.model)
        known = state.features
        new: dict[str, str | None] = {}
        changes: dict[str, str] = {}
        value_kind: str | None
        for name, value in features.items():
            if name in ignored:
                continue
            monitor = known.get(name)
            if value is None:
                if monitor is None:
                    new[name] = None
                continue
            value_kind = kind_of(value)
            configured = settings.feature_kind(event.model, name)
            if configured == "categorical":
                value_kind = "categorical"
            elif configured == "numeric" and value_kind != "numeric":
                raise InvalidEvent(
                    "wrong_type", f"feature {name[:64]!r} is configured numeric, got a string"
                )
            current = monitor.kind if monitor is not None else new.get(name)
            if current is None:
                if monitor is None:
                    new[name] = value_kind
                else:
                    changes[name] = value_kind
            elif current != value_kind:
                raise InvalidEvent(
                    "feature_type_changed",
                    f"feature {name[:64]!r} was {current}, this event has a {value_kind} value",
                )
        if new and len(known) + len(new) > settings.max_features_per_model:
            # Make room: at the first refused event and every REFUSED_SWEEP_EVERY-th after
            # it, features not seen for the TTL are forgotten, here, at this event. (Not at
            # every refusal, which would make hostile input cost a sweep per event.)
            state.refused += 1
            if event.model in self.models:
                self._dirty.add(event.model)  # the refusal count is state: checkpoint it
            if state.refused % REFUSED_SWEEP_EVERY == 1:
                now_ms = max(state.latest_ms, event.timestamp_ms)
                expired = self._expire(event.model, state, now_ms)
                if expired:
                    result.expired += expired
                    return self._admit(event, result)
            raise InvalidEvent(
                "too_many_features",
                f"model already tracks the maximum of {settings.max_features_per_model} features",
            )
        if state.prediction_kind is None:
            state.prediction_kind = kind
        for name, value_kind in new.items():
            known[name] = FeatureMonitor(settings, event.model, name, value_kind)
        for name, value_kind in changes.items():
            known[name].kind = value_kind
        if len(state.signatures) >= _MAX_SIGNATURES:
            state.signatures.clear()
        state.signatures.add(signature)
        state.latest_ms = max(state.latest_ms, event.timestamp_ms)
        self.models.setdefault(event.model, state)
        return state

    def _expire(self, model: str, state: ModelState, now_ms: int) -> int:
        """Forget features whose last non-null value is older than the TTL at ``now_ms``."""
        horizon = now_ms - int(self.settings.feature_ttl_s * 1000)
        stale = [
            name
            for name, monitor in state.features.items()
            if monitor.last_seen_ms and monitor.last_seen_ms < horizon
        ]
        for name in stale:
            del state.features[name]
        if stale:
            state.signatures.clear()
            self._layouts.pop(model, None)
            self._dirty.add(model)  # even when the event that swept is refused
        return len(stale)

    def _detection(
        self, model: str, feature: str, offset: int, event: PredictionEvent, hit: Hit
    ) -> Detection:
        settings = self.settings
        effect = hit.effect
        severity = "critical" if effect is None or effect >= settings.critical_effect else "warning"
        evidence = dict(hit.evidence)
        evidence["statistic"] = hit.statistic
        evidence["effect_size"] = effect
        detector = {**hit.detector, "block_size": settings.block_size}
        shown = "n/a" if effect is None else f"{effect:.2f}"
        summary = (
            f"{hit.drift_type} drift on {model}/{feature}: {hit.description} "
            f"(effect {shown}, {hit.detector['name']})"
        )
        return Detection(
            model=model,
            model_version=event.model_version,
            feature=feature,
            drift_type=hit.drift_type,
            detector=detector,
            severity=severity,
            detected_at_ms=event.timestamp_ms,
            topic=self.topic,
            partition=self.partition,
            offset=offset,
            event_id=event.event_id,
            evidence=evidence,
            summary=summary,
        )

    # -- state ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, bytes]:
        """Changelog entries (key -> value) for every model changed since the last snapshot."""
        entries = {model: encode_model(self.models[model]) for model in sorted(self._dirty)}
        self._dirty.clear()
        return entries

    @classmethod
    def restore(
        cls,
        settings: DetectionSettings,
        topic: str,
        partition: int,
        entries: Mapping[str, bytes],
    ) -> PartitionDetectors:
        """Rebuild from the latest changelog entry per key; raises StateFormatError."""
        restored = cls(settings, topic, partition)
        for model, blob in entries.items():
            state = decode_model(blob, model)
            if not isinstance(state, ModelState):
                raise StateFormatError(f"changelog entry for model {model!r} is not model state")
            restored.models[model] = state
        restored.reconfigure(settings)
        return restored

    def reconfigure(self, settings: DetectionSettings) -> int:
        """Adopt new settings, keeping every feature whose detection settings are unchanged.

        Returns how many feature monitors were reset.
        """
        self.settings = settings
        self._layouts.clear()
        reset = 0
        for model, state in self.models.items():
            state.signatures.clear()
            ignored = settings.ignored(model)
            for name in list(state.features):
                monitor = state.features[name]
                if name in ignored:
                    del state.features[name]
                    reset += 1
                elif monitor.fingerprint != _fingerprint(settings, model, name):
                    state.features[name] = FeatureMonitor(settings, model, name, monitor.kind)
                    reset += 1
            prediction = state.prediction
            if prediction is not None and prediction.fingerprint != _fingerprint(
                settings, model, PREDICTION
            ):
                state.prediction = FeatureMonitor(settings, model, PREDICTION, prediction.kind)
                reset += 1
        return reset

    @property
    def active_detectors(self) -> int:
        total = 0
        for state in self.models.values():
            total += sum(monitor.detector_count for monitor in state.features.values())
            total += state.prediction.detector_count if state.prediction is not None else 0
            total += 1 if state.error is not None else 0
        return total


def with_missing_rates(hit: Hit, monitor: FeatureMonitor) -> Hit:
    """Add the feature's missing rates (reference and recent) to a value hit's evidence."""
    ref_missing, cur_missing = monitor.missing.rates()
    hit.evidence["reference"]["missing_rate"] = _rate(ref_missing)
    hit.evidence["current"]["missing_rate"] = _rate(cur_missing)
    return hit


def _as_list(items: Sequence[Any]) -> list[Any]:
    return items if type(items) is list else list(items)


def _rate(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


__all__ = ["PartitionDetectors", "StateFormatError"]
