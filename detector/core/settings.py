"""The detection settings: everything the pure core needs, as validated, frozen data.

These types belong to the core (:mod:`detector.config` re-exports them and only loads and
validates files): the core must not depend on the file loader. Validation here is of the
values only; that a detector's parameters are accepted by River is checked when the config
is loaded (:func:`detector.config.load_settings` builds every configured detector once).

Changelog entries pickle these objects (trackers keep their spec and settings), so their
import path is part of the state format: entries written before the move name
``detector.config.DetectorSpec`` and the like, which still resolve (re-exported there).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

FeatureKind = Literal["numeric", "categorical"]

#: The feature names under which the engine tracks a model's prediction and its error
#: rate (alerts' ``feature``; config keys ``models.M.features.__prediction__``).
PREDICTION = "__prediction__"
ERROR = "__error__"

#: The River drift detectors (``river.drift``) that accept real-valued input, by the name
#: used in config files. :func:`detector.core.detectors.river_class` maps each to its
#: class; kept here as names so that validating a config does not import River.
DETECTOR_NAMES: tuple[str, ...] = ("ADWIN", "PageHinkley", "KSWIN")
#: River's binary detectors (``river.drift.binary``), for the 0/1 error stream of
#: performance drift only (config names as in the issue tracker and River's docs).
BINARY_DETECTOR_NAMES: tuple[str, ...] = ("DDM", "EDDM", "HDDM_A", "HDDM_W", "FHDDM")


class _Strict(BaseModel):
    # The same as detector.config's: unknown keys refused, frozen, and no input value in
    # str(ValidationError).
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class DetectorSpec(_Strict):
    """A River drift detector class from ``river.drift`` and its constructor arguments."""

    name: str = "ADWIN"
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known_detector(cls, name: str) -> str:
        if name not in DETECTOR_NAMES:
            raise ValueError(f"one of {sorted(DETECTOR_NAMES)}")
        return name


class PerformanceDetectorSpec(DetectorSpec):
    """The detector on a model's 0/1 error stream: a real-valued detector (on block error
    rates, as the missing rate) or one of River's binary detectors (on every labelled
    prediction)."""

    @field_validator("name")
    @classmethod
    def _known_detector(cls, name: str) -> str:
        names = DETECTOR_NAMES + BINARY_DETECTOR_NAMES
        if name not in names:
            raise ValueError(f"one of {sorted(names)}")
        return name

    @property
    def binary(self) -> bool:
        return self.name in BINARY_DETECTOR_NAMES


class LabelSettings(_Strict):
    """How labels are joined to predictions (``detection.labels``)."""

    #: How long a prediction waits for its label (event time; ``90d`` or seconds).
    horizon_s: float = Field(90 * 86400.0, gt=0.0, alias="horizon")
    #: Pending predictions and early labels per input partition; the oldest expire beyond.
    max_pending: int = Field(1_000_000, ge=1)
    #: A probability at or above it is the positive class.
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    #: Regression: an absolute error above this quantile of the reference errors is an error.
    error_quantile: float = Field(0.9, gt=0.0, lt=1.0)
    #: Whether predictions wait for labels from a labels topic (set by the config loader
    #: when ``kafka.labels_topic`` is set; a prediction with its own label never waits).
    join: bool = False

    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True, populate_by_name=True
    )

    @field_validator("horizon_s", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str):
            from detector.core.durations import parse_duration

            return parse_duration(value) / 1000.0
        return value


class PerformanceSettings(_Strict):
    """Performance drift (``detection.performance``): the detector on the error stream."""

    detector: PerformanceDetectorSpec = PerformanceDetectorSpec(
        name="ADWIN", params={"delta": 1e-5, "clock": 4}
    )


class EstimationSettings(_Strict):
    """Performance estimated before labels arrive (``detection.estimated_performance``)."""

    #: On for models whose predictions are scores (or two-class probabilities) once labels
    #: arrive; off: no estimate.
    enabled: bool = True
    #: Labelled predictions the calibration map is fitted on.
    reference_size: int = Field(5000, ge=100, le=1_000_000)
    #: The detector on the expected errors (block means), as for the missing rate.
    detector: DetectorSpec = DetectorSpec(name="ADWIN", params={"delta": 1e-5, "clock": 4})


class SegmentSettings(_Strict):
    """Slices and fairness (``detection.segments``): which ``segment`` attributes to slice
    the model's drift detection on, and across which to measure group disparities."""

    #: Per value of each of these keys: the same feature, prediction and performance drift
    #: as the model's, on the events of that value only.
    keys: list[str] = Field(default_factory=list)
    #: Across the values of each of these keys: selection rates and error rates per group,
    #: and an alert when the disparate impact ratio leaves the four-fifths band.
    protected: list[str] = Field(default_factory=list)
    #: Values tracked per model and key (slices and fairness groups); later values are
    #: counted (``drift_detector_segments_untracked_total``), not tracked.
    max_values: int = Field(20, ge=1, le=1000)
    #: A fairness group counts once it has this many decisions in its window.
    min_group_size: int = Field(200, ge=10)
    #: Decisions (and labelled decisions) per fairness group's window.
    window: int = Field(5000, ge=100, le=1_000_000)

    @field_validator("keys", "protected")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not name or not name.strip():
                raise ValueError("segment keys must be non-empty strings")
        if len(set(names)) != len(names):
            raise ValueError("each segment key once")
        return names

    @property
    def enabled(self) -> bool:
        return bool(self.keys or self.protected)

    def sliced(self, segment: dict[str, str] | None) -> dict[str, str] | None:
        """The configured keys of an event's segment (what the label join keeps)."""
        if not segment:
            return None
        out = {
            key: segment[key]
            for key in (*self.keys, *self.protected)
            if key in segment and segment[key] is not None
        }
        return out or None


class FeatureSettings(_Strict):
    """Per-feature override. Unset fields inherit from the model, then the defaults."""

    kind: FeatureKind | None = None
    ignore: bool = False
    detector: DetectorSpec | None = None


class ModelSettings(_Strict):
    ignore_features: list[str] = Field(default_factory=list)
    detector: DetectorSpec | None = None
    performance: PerformanceSettings | None = None
    features: dict[str, FeatureSettings] = Field(default_factory=dict)


class DetectionSettings(_Strict):
    """Everything the pure detection core needs. Changing any of it changes detections."""

    # The default detector: ADWIN on 16-event block means of rank-transformed values.
    # delta calibrated on the stationary battery (docs/detection.md).
    detector: DetectorSpec = DetectorSpec(name="ADWIN", params={"delta": 1e-5, "clock": 4})
    reference_size: int = Field(512, ge=32, le=100_000)
    window_size: int = Field(512, ge=32, le=100_000)
    block_size: int = Field(16, ge=1, le=1024)
    rearm_after: int = Field(25_000, ge=0)
    max_categories: int = Field(16, ge=1, le=1000)
    min_category_share: float = Field(0.01, gt=0.0, lt=1.0)
    critical_effect: float = Field(1.0, gt=0.0)
    max_models: int = Field(1000, ge=1)
    max_features_per_model: int = Field(500, ge=1)
    # A feature not seen (non-null) for this long in event time is forgotten.
    feature_ttl_s: float = Field(24 * 3600.0, gt=0.0)
    labels: LabelSettings = LabelSettings()
    performance: PerformanceSettings = PerformanceSettings()
    estimated_performance: EstimationSettings = EstimationSettings()
    segments: SegmentSettings = SegmentSettings()
    models: dict[str, ModelSettings] = Field(default_factory=dict)

    def performance_detector(self, model: str) -> DetectorSpec:
        """The detector of a model's error stream: ``models.M.performance.detector``, else
        ``models.M.features.__error__.detector`` (the key of earlier releases), else
        ``performance.detector``."""
        model_settings = self.models.get(model)
        if model_settings is not None:
            if model_settings.performance is not None:
                return model_settings.performance.detector
            feature_settings = model_settings.features.get(ERROR)
            if feature_settings is not None and feature_settings.detector is not None:
                return feature_settings.detector
        return self.performance.detector

    def model(self, name: str) -> ModelSettings | None:
        return self.models.get(name)

    def feature_detector(self, model: str, feature: str) -> DetectorSpec:
        """The detector for a feature: feature override, else model override, else default."""
        model_settings = self.models.get(model)
        if model_settings is None:
            return self.detector
        feature_settings = model_settings.features.get(feature)
        if feature_settings is not None and feature_settings.detector is not None:
            return feature_settings.detector
        return model_settings.detector or self.detector

    def feature_kind(self, model: str, feature: str) -> FeatureKind | None:
        model_settings = self.models.get(model)
        if model_settings is None:
            return None
        feature_settings = model_settings.features.get(feature)
        return None if feature_settings is None else feature_settings.kind

    def ignored(self, model: str) -> frozenset[str]:
        model_settings = self.models.get(model)
        if model_settings is None:
            return frozenset()
        names = set(model_settings.ignore_features)
        names.update(n for n, f in model_settings.features.items() if f.ignore)
        return frozenset(names)

    def detector_specs(self) -> list[tuple[str, DetectorSpec]]:
        """Every configured detector and its key path below this section (``detector``,
        ``models.M.detector``, ``models.M.features.F.detector``)."""
        specs: list[tuple[str, DetectorSpec]] = [
            ("detector", self.detector),
            ("performance.detector", self.performance.detector),
            ("estimated_performance.detector", self.estimated_performance.detector),
        ]
        for model_name, model in self.models.items():
            if model.detector is not None:
                specs.append((f"models.{model_name}.detector", model.detector))
            if model.performance is not None:
                key = f"models.{model_name}.performance.detector"
                specs.append((key, model.performance.detector))
            for feature_name, feature in model.features.items():
                if feature.detector is not None:
                    key = f"models.{model_name}.features.{feature_name}.detector"
                    specs.append((key, feature.detector))
        return specs


__all__ = [
    "BINARY_DETECTOR_NAMES",
    "DETECTOR_NAMES",
    "ERROR",
    "PREDICTION",
    "DetectionSettings",
    "DetectorSpec",
    "EstimationSettings",
    "FeatureKind",
    "FeatureSettings",
    "LabelSettings",
    "ModelSettings",
    "PerformanceDetectorSpec",
    "PerformanceSettings",
    "SegmentSettings",
]
