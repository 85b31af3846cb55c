"""Type stub for the compiled hot path, detector/core/_kernel.pyx."""

from collections.abc import Iterable
from typing import Any

from detector.config import DetectionSettings, DetectorSpec
from detector.core.hits import Hit, Rearm
from detector.core.records import BatchResult

class Detector:
    def step(self, x: float) -> bool: ...
    def describe(self) -> dict[str, Any]: ...

class AdwinFast(Detector):
    def __init__(self, adwin: Any, detected: bool = ...) -> None: ...

class RiverDetector(Detector):
    def __init__(self, name: str, det: Any) -> None: ...

class RateTracker:
    k: int
    drift_type: str
    detector: Detector
    seen: int
    rearm: Rearm
    def __init__(
        self, spec: DetectorSpec, settings: DetectionSettings, drift_type: str
    ) -> None: ...
    def update(self, flags: Iterable[bool]) -> list[Hit]: ...
    def rates(self) -> tuple[float | None, float | None]: ...

class NumericTracker:
    k: int
    seen: int
    reference: Any
    mean_det: Detector
    spread_det: Detector
    def __init__(
        self, spec: DetectorSpec, settings: DetectionSettings, drift_type: str | None
    ) -> None: ...
    def update(self, values: Iterable[float]) -> list[Hit]: ...

class CategoricalTracker:
    k: int
    seen: int
    codes: dict[str, int]
    detectors: list[Detector]
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
) -> None: ...
