"""River drift detectors by name, and the fast path for ADWIN.

River is the reference. ``AdwinFast`` (compiled, in :mod:`detector.core._kernel`) drives the
same Rust ``AdaptiveWindowing`` object that ``river.drift.ADWIN`` wraps, without the Python
method layer; tests prove that it reports drift at exactly the same positions as
``river.drift.ADWIN.update`` on the same stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from river import drift
from river.base import DriftDetector

from detector.core._kernel import AdwinFast, RiverDetector
from detector.core.settings import DETECTOR_NAMES

if TYPE_CHECKING:
    from detector.core.settings import DetectorSpec

#: Detectors that accept real-valued input, by the name used in config files
#: (:data:`detector.core.settings.DETECTOR_NAMES`, which validates the names without River).
KNOWN_DETECTORS: dict[str, type[DriftDetector]] = {
    name: getattr(drift, name) for name in DETECTOR_NAMES
}


class Detector(Protocol):
    """The minimal contract: feed one value, learn whether drift was detected at it."""

    def step(self, x: float) -> bool: ...

    def describe(self) -> dict[str, Any]: ...


def build_detector(spec: DetectorSpec) -> Detector:
    """A fresh detector for ``spec``; raises TypeError/ValueError on bad parameters."""
    cls = KNOWN_DETECTORS[spec.name]
    instance = cls(**spec.params)
    if isinstance(instance, drift.ADWIN):
        if not 0.0 < instance.delta < 1.0:
            raise ValueError(f"ADWIN delta must be in (0, 1), got {instance.delta!r}")
        return AdwinFast(instance)
    return RiverDetector(spec.name, instance)


__all__ = ["KNOWN_DETECTORS", "AdwinFast", "Detector", "RiverDetector", "build_detector"]
