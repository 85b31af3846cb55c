"""Per-partition detection state: raw records in, detections and rejections out. No I/O.

One :class:`PartitionDetectors` holds every detector fed by one input partition, grouped by
model and feature. Its changelog form is one entry per model (see :mod:`detector.core.state`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from detector.config import DetectionSettings
from detector.core.events import (
    InvalidEvent,
    PredictionEvent,
    check_feature_types,
    parse_event,
)
from detector.core.records import BatchResult, Detection, InputRecord, Rejection
from detector.core.state import StateFormatError, decode_model, encode_model
from detector.core.trackers import CategoricalTracker, Hit, NumericTracker, RateTracker

PREDICTION = "__prediction__"
ERROR = "__error__"

_NUMERIC = (int, float)
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


_STR_ONLY = frozenset((str,))


def _columns(feats: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Transpose feature dicts into columns in C when every event has the same keys in the
    same order (the usual case); otherwise return {} and let the caller look values up."""
    keys = tuple(feats[0])
    for f in feats:
        if len(f) != len(keys):
            return {}
    if any(tuple(f) != keys for f in feats):
        return {}
    return dict(zip(keys, map(list, zip(*(f.values() for f in feats), strict=True)), strict=True))


def _kind_of(value: object) -> str:
    return "numeric" if type(value) in _NUMERIC else "categorical"


def _categorical(value: object) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return value if isinstance(value, str) else repr(value)


def _prediction_value(prediction: Any) -> float | int | str:
    if isinstance(prediction, dict):
        return max(prediction.items(), key=lambda item: (item[1], item[0]))[0]  # type: ignore[no-any-return]
    return prediction  # type: ignore[no-any-return]


class PartitionDetectors:
    """All detectors fed by one input partition."""

    def __init__(self, settings: DetectionSettings, topic: str, partition: int) -> None:
        self.settings = settings
        self.topic = topic
        self.partition = partition
        self.models: dict[str, ModelState] = {}
        self._dirty: set[str] = set()
        self._max_bytes = 1 << 62

    def set_max_message_bytes(self, limit: int) -> None:
        self._max_bytes = limit

    # -- processing ---------------------------------------------------------------------

    def process(self, records: Sequence[InputRecord]) -> BatchResult:
        """Process records of this partition in offset order.

        Events are admitted one by one and fed to the detectors per model in runs. A run
        ends at the end of the batch, and also at the exact events where stale features are
        swept: every SWEEP_EVERY admitted events of a model, and when a new feature would
        exceed max_features_per_model. So forgetting happens at the same events however the
        stream is batched.
        """
        result = BatchResult()
        pending: dict[str, list[tuple[InputRecord, PredictionEvent]]] = {}
        for record in records:
            try:
                event = parse_event(record.value, self._max_bytes, check_features=False)
                state = self._admit(event, pending, result)
            except InvalidEvent as exc:
                result.rejections.append(Rejection(record, exc.reason, exc.detail))
                continue
            items = pending.get(event.model)
            if items is None:
                items = pending[event.model] = []
            items.append((record, event))
            state.events += 1
            if state.events % SWEEP_EVERY == 0:
                self._flush(event.model, pending, result)
                result.expired += self._expire(state, state.latest_ms)
        for model in list(pending):
            self._flush(model, pending, result)
        result.detections.sort(key=lambda d: d.offset)
        return result

    def _flush(
        self,
        model: str,
        pending: dict[str, list[tuple[InputRecord, PredictionEvent]]],
        result: BatchResult,
    ) -> None:
        """Feed the model's admitted events to its detectors."""
        items = pending.pop(model, None)
        if not items:
            return
        result.detections.extend(self._process_model(model, items))
        result.processed[model] = result.processed.get(model, 0) + len(items)
        self._dirty.add(model)

    def _admit(
        self,
        event: PredictionEvent,
        pending: dict[str, list[tuple[InputRecord, PredictionEvent]]],
        result: BatchResult,
    ) -> ModelState:
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
        kind = "categorical" if isinstance(prediction, dict) else _kind_of(prediction)
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
            value_kind = _kind_of(value)
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
            # every refusal: a sweep ends the model's run, and hostile input could otherwise
            # make every event a run of its own.)
            state.refused += 1
            if state.refused % REFUSED_SWEEP_EVERY == 1:
                self._flush(event.model, pending, result)
                expired = self._expire(state, max(state.latest_ms, event.timestamp_ms))
                if expired:
                    result.expired += expired
                    return self._admit(event, pending, result)
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

    def _process_model(
        self, model: str, items: list[tuple[InputRecord, PredictionEvent]]
    ) -> list[Detection]:
        settings = self.settings
        state = self.models[model]
        events = [event for _, event in items]
        feats = [event.features for event in events]
        times = [event.timestamp_ms for event in events]
        hits: list[tuple[str, int, Hit]] = []
        columns = _columns(feats)
        for name, monitor in state.features.items():
            column = columns.get(name)
            if column is None:
                column = [f.get(name) for f in feats]
            hits.extend(self._feed(model, name, monitor, column, times))
        predictions = [_prediction_value(event.prediction) for event in events]
        if state.prediction is None:
            state.prediction = FeatureMonitor(settings, model, PREDICTION, state.prediction_kind)
        hits.extend(self._feed(model, PREDICTION, state.prediction, predictions, times))
        hits.extend(self._errors(model, state, events, predictions))
        # process() sorts the detections of all models by offset.
        return [self._detection(model, name, items[index], hit) for name, index, hit in hits]

    def _feed(
        self,
        model: str,
        name: str,
        monitor: FeatureMonitor,
        column: list[Any],
        times: list[int],
    ) -> list[tuple[str, int, Hit]]:
        out: list[tuple[str, int, Hit]] = []
        positions: Any = None
        if monitor.kind == "numeric":
            # None becomes NaN here; events never carry NaN (the parser rejects it).
            present: Any = np.array(column, dtype=np.float64)
            flags: Any = np.isnan(present)
            if flags.any():
                positions = np.flatnonzero(~flags)
                present = present[positions]
        elif None in column:
            flags = [v is None for v in column]
            positions = [i for i, v in enumerate(column) if v is not None]
            present = [column[i] for i in positions]
        else:
            flags = np.zeros(len(column), dtype=np.int64)
            present = column
        for hit in monitor.missing.update(flags):
            out.append((name, hit.index, hit))
        if not len(present):
            return out
        monitor.last_seen_ms = times[-1] if positions is None else times[int(positions[-1])]
        monitor.ensure_values(self.settings, model, name)
        values = monitor.values
        if values is None:
            return out
        if isinstance(values, NumericTracker):
            found = values.update(np.asarray(present, dtype=np.float64))
        elif _STR_ONLY.issuperset(map(type, present)):
            found = values.update(present)
        else:
            found = values.update([_categorical(v) for v in present])
        if found:
            ref_missing, cur_missing = monitor.missing.rates()
            for hit in found:
                hit.evidence["reference"]["missing_rate"] = _rate(ref_missing)
                hit.evidence["current"]["missing_rate"] = _rate(cur_missing)
                index = hit.index if positions is None else int(positions[hit.index])
                out.append((name, index, hit))
        return out

    def _errors(
        self,
        model: str,
        state: ModelState,
        events: list[PredictionEvent],
        predictions: list[float | int | str],
    ) -> list[tuple[str, int, Hit]]:
        labelled = [i for i, event in enumerate(events) if event.label is not None]
        if not labelled:
            return []
        if state.error is None:
            spec = self.settings.feature_detector(model, ERROR)
            state.error = RateTracker(spec, self.settings, "error_rate")
        flags = [_is_error(predictions[i], events[i].label) for i in labelled]
        return [(ERROR, labelled[hit.index], hit) for hit in state.error.update(flags)]

    def _expire(self, state: ModelState, now_ms: int) -> int:
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
        return len(stale)

    def _detection(
        self, model: str, feature: str, item: tuple[InputRecord, PredictionEvent], hit: Hit
    ) -> Detection:
        record, event = item
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
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
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


def _rate(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _is_error(prediction: object, label: object) -> bool:
    """Whether a labelled prediction is wrong.

    - A score in [0, 1] against a 0/1 or boolean label: wrong when ``score >= 0.5`` disagrees.
    - A number against a number otherwise (regression): wrong when it misses by more than
      10 % of the label's magnitude.
    - Anything else (classes): wrong when the two differ.
    """
    if type(prediction) in _NUMERIC and (type(label) is bool or label in (0, 1)):
        score = float(prediction)  # type: ignore[arg-type]
        if 0.0 <= score <= 1.0:
            return (score >= 0.5) != bool(label)
    if type(prediction) in _NUMERIC and type(label) in _NUMERIC:
        p, y = float(prediction), float(label)  # type: ignore[arg-type]
        return abs(p - y) > 0.1 * max(abs(y), 1e-12)
    return _categorical(prediction) != _categorical(label)


__all__ = ["PartitionDetectors", "StateFormatError"]
