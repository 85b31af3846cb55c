"""River drift detectors by name, and the fast path for ADWIN.

River is the reference. ``AdwinFast`` drives the same Rust ``AdaptiveWindowing`` object that
``river.drift.ADWIN`` wraps, without the Python method layer; tests prove that it reports
drift at exactly the same positions as ``river.drift.ADWIN.update`` on the same stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from river import drift
from river.base import DriftDetector

if TYPE_CHECKING:
    from detector.config import DetectorSpec

#: Detectors that accept real-valued input, by the name used in config files.
KNOWN_DETECTORS: dict[str, type[DriftDetector]] = {
    "ADWIN": drift.ADWIN,
    "PageHinkley": drift.PageHinkley,
    "KSWIN": drift.KSWIN,
}


class Detector(Protocol):
    """The minimal contract: feed one value, learn whether drift was detected at it."""

    def step(self, x: float) -> bool: ...

    def describe(self) -> dict[str, Any]: ...


class RiverDetector:
    """Any ``river.drift`` detector, through its public ``update``/``drift_detected``."""

    __slots__ = ("_det", "_name")

    def __init__(self, name: str, det: DriftDetector) -> None:
        self._name = name
        self._det = det

    def step(self, x: float) -> bool:
        self._det.update(x)
        return bool(self._det.drift_detected)

    def describe(self) -> dict[str, Any]:
        return {"name": self._name, "params": dict(self._det._get_params())}


class AdwinFast:
    """``river.drift.ADWIN`` with the per-call Python overhead removed.

    ``river.drift.ADWIN.update`` resets its Rust helper on the call after a detection and
    then forwards to ``helper.update``; this does the same, directly.
    """

    __slots__ = ("_adwin", "_detected", "_update")

    def __init__(self, adwin: drift.ADWIN) -> None:
        self._adwin = adwin
        self._update = adwin._helper.update
        self._detected = False

    def step(self, x: float) -> bool:
        if self._detected:
            self._adwin._reset()  # type: ignore[no-untyped-call]
            self._update = self._adwin._helper.update
        self._detected = bool(self._update(x))
        return self._detected

    def describe(self) -> dict[str, Any]:
        return {"name": "ADWIN", "params": dict(self._adwin._get_params())}

    def __getstate__(self) -> dict[str, Any]:
        return {"adwin": self._adwin, "detected": self._detected}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._adwin = state["adwin"]
        self._detected = state["detected"]
        self._update = self._adwin._helper.update


def build_detector(spec: DetectorSpec) -> Detector:
    """A fresh detector for ``spec``; raises TypeError/ValueError on bad parameters."""
    cls = KNOWN_DETECTORS[spec.name]
    instance = cls(**spec.params)
    if isinstance(instance, drift.ADWIN):
        if not 0.0 < instance.delta < 1.0:
            raise ValueError(f"ADWIN delta must be in (0, 1), got {instance.delta!r}")
        return AdwinFast(instance)
    return RiverDetector(spec.name, instance)
