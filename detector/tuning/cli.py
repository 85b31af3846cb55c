"""`detector replay FILE`: a recorded stream through the same core as `detector run`."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from detector.alerts import alert_line, build_alert, encode_alert
from detector.config import load_settings
from detector.tuning.replay import replay


def _lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        for line in handle:
            line = line.strip()
            if line:
                yield line


def replay_file(file: str, config: str | None, *, json_out: bool = False) -> int:
    """Replay a JSON-lines file (one prediction event per line) as one partition.

    Prints one line per alert (or the alert JSON with ``json_out``) and a summary to stderr.
    Offsets in the alerts' triggers are line numbers of non-empty lines, from 0.
    """
    settings = load_settings(config).detection
    path = Path(file)
    started = time.perf_counter()
    detections, total = replay(_lines(path), settings, topic=path.name)
    elapsed = time.perf_counter() - started
    now_ms = int(time.time() * 1000)
    for detection in detections:
        alert = build_alert(detection, now_ms)
        if json_out:
            sys.stdout.buffer.write(encode_alert(alert) + b"\n")
        else:
            print(alert_line(alert))
    events = sum(total.processed.values())
    reasons = Counter(r.reason for r in total.rejections)
    print(
        f"{events:,} events, {len(detections)} alerts, {len(total.rejections)} rejected "
        f"{dict(reasons) if reasons else ''} in {elapsed:.1f} s",
        file=sys.stderr,
    )
    return 0
