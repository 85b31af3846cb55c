"""Type stub for the compiled hot path, detector/core/_kernel.pyx."""

from collections.abc import Iterable
from typing import Any

from detector.core.hits import Hit, Rearm
from detector.core.records import BatchResult
from detector.core.settings import DetectionSettings, DetectorSpec

class Detector:
    def step(self, x: float) -> bool: ...
    def describe(self) -> dict[str, Any]: ...

class AdwinFast(Detector):
    def __init__(
        self, adwin: Any, detected: bool = ..., pending: int = ..., zeros_only: bool | None = ...
    ) -> None: ...

class RiverDetector(Detector):
    def __init__(self, name: str, det: Any) -> None: ...

class Tracker:
    def update(self, values: Iterable[Any]) -> list[Hit]:
        """Feed values in order; hits are indexed into ``values``."""

class RateTracker(Tracker):
    k: int
    scale: float
    drift_type: str
    detector: Detector
    ref_blocks: int
    rearm: Rearm
    seen: int
    def __init__(
        self, spec: DetectorSpec, settings: DetectionSettings, drift_type: str
    ) -> None: ...
    def update(self, values: Iterable[bool]) -> list[Hit]: ...
    def rates(self) -> tuple[float | None, float | None]: ...

class NumericTracker(Tracker):
    k: int
    scale: float
    spec: DetectorSpec
    ref_size: int
    drift_type: str | None
    window: int
    building: list[float]
    reference: Any  # numpy array of the sorted reference sample, or None
    mean_det: Detector
    spread_det: Detector
    seen: int
    rearm: Rearm
    def __init__(
        self, spec: DetectorSpec, settings: DetectionSettings, drift_type: str | None
    ) -> None: ...
    def update(self, values: Iterable[float]) -> list[Hit]: ...

class CategoricalTracker(Tracker):
    k: int
    scale: float
    spec: DetectorSpec
    settings: DetectionSettings
    ref_size: int
    drift_type: str
    building: list[str]
    ref_counts: Any
    codes: dict[str, int]
    detectors: list[Detector]
    seen: int
    rearm: Rearm
    def __init__(
        self, spec: DetectorSpec, settings: DetectionSettings, drift_type: str | None
    ) -> None: ...
    def update(self, values: Iterable[str]) -> list[Hit]: ...

class Layout:
    def __init__(
        self, model: str, state: Any, features: dict[str, Any], settings: DetectionSettings
    ) -> None: ...

def run(
    engine: Any,
    offsets: list[int],
    values: list[bytes | None],
    timestamps: list[int | None] | None,
    result: BatchResult,
) -> None:
    """Process one partition's messages in order; see PartitionDetectors.process_batch.
    Events whose shape the loop does not take go to ``engine._process_one``."""
