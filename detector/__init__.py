"""drift-detector: a streaming drift detection sidecar for ML models in production.

The pure detection core lives in :mod:`detector.core`; the Kafka shell in
:mod:`detector.kafka`; operational endpoints in :mod:`detector.ops`; tuning tools (replay,
synthetic streams) in :mod:`detector.tuning`.
"""

import os

# numpy's OpenBLAS starts a thread per core that spins after use; the detector does no
# linear algebra, and a sidecar must not burn the cores it shares with the model server.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from detector.alerts import build_alert
from detector.config import ConfigError, DetectionSettings, Settings, load_settings
from detector.core.engine import PartitionDetectors, StateFormatError
from detector.core.events import InvalidEvent, PredictionEvent, parse_event
from detector.core.records import BatchResult, Detection, InputRecord, Rejection

__version__ = "0.1.0"

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
