"""The pure detection core: bytes in, detections and rejections out. No Kafka, no clock.

Nothing in ``detector.core`` imports from outside it (``tests/unit/test_imports.py``); the
settings it takes are its own types (:mod:`detector.core.settings`).
"""

import os

# numpy's OpenBLAS starts a thread per core that spins after use; the detector does no
# linear algebra, and a sidecar must not burn the cores it shares with the model server.
# Set here, before the core (the first to import numpy, through River or directly) loads
# numpy: OpenBLAS reads it once, when numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
