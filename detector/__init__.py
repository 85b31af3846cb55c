"""drift-detector: a streaming drift detection sidecar for ML models in production.

The pure detection core lives in :mod:`detector.core`; the Kafka shell in
:mod:`detector.kafka`; operational endpoints in :mod:`detector.ops`; tuning tools (replay,
synthetic streams) in :mod:`detector.tuning`.

Importing this package is cheap: it imports nothing. The names below are loaded on first
use (``from detector import PartitionDetectors`` imports the core then), so that
``detector --help`` and the commands that need no detection core do not pay for numpy and
River.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_LAZY: dict[str, str] = {
    "BatchResult": "detector.core.records",
    "ConfigError": "detector.config",
    "Detection": "detector.core.records",
    "DetectionSettings": "detector.core.settings",
    "InputRecord": "detector.core.records",
    "InvalidEvent": "detector.core.events",
    "PartitionDetectors": "detector.core.engine",
    "PredictionEvent": "detector.core.events",
    "Rejection": "detector.core.records",
    "Settings": "detector.config",
    "StateFormatError": "detector.core.state",
    "build_alert": "detector.alerts",
    "load_settings": "detector.config",
    "parse_event": "detector.core.events",
}

if TYPE_CHECKING:
    from detector.alerts import build_alert
    from detector.config import ConfigError, Settings, load_settings
    from detector.core.engine import PartitionDetectors
    from detector.core.events import InvalidEvent, PredictionEvent, parse_event
    from detector.core.records import BatchResult, Detection, InputRecord, Rejection
    from detector.core.settings import DetectionSettings
    from detector.core.state import StateFormatError


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup does not come here
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "BatchResult",
    "ConfigError",
    "Detection",
    "DetectionSettings",
    "InputRecord",
    "InvalidEvent",
    "PartitionDetectors",
    "PredictionEvent",
    "Rejection",
    "Settings",
    "StateFormatError",
    "__version__",
    "build_alert",
    "load_settings",
    "parse_event",
]
