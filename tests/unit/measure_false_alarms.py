"""False alarms of the label, slice and fairness detectors on stationary seeded streams.

Not a test (it takes minutes): the measurement behind docs/detection.md's table, run as

    .venv/bin/python tests/unit/measure_false_alarms.py [EVENTS] [SEEDS]

Each seed gives three stationary streams of EVENTS events (default 200,000; seeds 1-5):
labelled scored predictions with two segment keys and a protected key (every model and
slice detector, performance and fairness on), a protected attribute with equal selection
rates (fairness), and calibrated scores with the first 6,000 labelled (performance,
estimated performance). It prints the alerts by drift type and where they came from.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from label_support import scored_stream
from segment_support import disparity_stream, sliced_stream

from detector.core.settings import DetectionSettings, SegmentSettings
from detector.tuning.replay import replay


def _alerts(events: list[dict[str, Any]], settings: DetectionSettings) -> Counter[str]:
    detections, _ = replay(events, settings, batch_size=10_000)
    return Counter(f"{d.drift_type}{' [slice]' if d.segment else ''}" for d in detections)


def main(n: int, seeds: int) -> None:
    streams = {
        "slices and fairness (keys region, channel; protected channel)": lambda seed: _alerts(
            sliced_stream(n=n, change=n, seed=seed),
            DetectionSettings(
                segments=SegmentSettings(keys=["region", "channel"], protected=["channel"])
            ),
        ),
        "fairness (protected sex, equal rates)": lambda seed: _alerts(
            disparity_stream(n=n, change=n, seed=seed),
            DetectionSettings(segments=SegmentSettings(protected=["sex"])),
        ),
        "performance and estimated performance (scores)": lambda seed: _alerts(
            scored_stream(n=n, change=n, seed=seed, labelled=6_000)[0], DetectionSettings()
        ),
    }
    for name, run in streams.items():
        total: Counter[str] = Counter()
        for seed in range(1, seeds + 1):
            total += run(seed)
        events = n * seeds
        print(f"{name}: {events:,} events, {sum(total.values())} alerts {dict(total)}")


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 200_000,
        int(sys.argv[2]) if len(sys.argv) > 2 else 5,
    )
