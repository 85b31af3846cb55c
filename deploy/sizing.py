#!/usr/bin/env python3
"""Measure what one partition's detector state costs: memory, changelog bytes, restore time.

For each feature count F, a fresh child process builds the engine's state for M models of
F features (80 % numeric, 20 % categorical, and a numeric prediction) by feeding it E
seeded events per model, then reports:

- ``detectors``: detectors held (``PartitionDetectors.active_detectors``);
- ``rss_bytes``: growth of the process's resident set while the state was built (the event
  bytes are generated batch by batch and freed, so this is the state and the allocator's
  overhead on it: what a container's memory limit has to hold);
- ``process_rss_bytes``: the resident set before the state (interpreter, River, numpy, the
  compiled core; no Kafka client);
- ``traced_bytes``: the same growth as ``tracemalloc`` counts it (Python allocations only;
  a second child, because tracing slows the core down);
- ``changelog_bytes``: the pickled changelog entries of the partition
  (``PartitionDetectors.snapshot()``), one per model: a compacted changelog partition's size;
- ``restore_s``: time to rebuild the state from those entries
  (``PartitionDetectors.restore``), without Kafka;
- ``events_per_s``: events per second through ``PartitionDetectors.process`` on one core,
  over the second half of the stream (warm state), JSON parsing included, Kafka excluded.

It uses only the core's public names (``detector.core.engine.PartitionDetectors``,
``detector.core.records.InputRecord``) and the config loader (``detector.config``), so a
config file's ``detection`` section (``--config``) sizes that configuration.

    python deploy/sizing.py                      # F = 10, 40, 100; 10 models; 10,000 events each
    python deploy/sizing.py --features 40 --models 20 --json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TOPIC = "sizing"
BATCH = 2_000
CATEGORIES = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta")


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc)."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def event_batches(
    models: int, features: int, events_per_model: int, seed: int, start: int = 0
) -> Iterator[list[bytes]]:
    """Seeded stationary events, round-robin over the models, as JSON, BATCH at a time."""
    import orjson

    rng = random.Random(seed)
    numeric = max(1, round(features * 0.8))
    names = [f"num_{j}" for j in range(numeric)]
    cat_names = [f"cat_{j}" for j in range(features - numeric)]
    total = models * events_per_model
    batch: list[bytes] = []
    for i in range(start, start + total):
        feats: dict[str, object] = {name: round(rng.gauss(0.0, 1.0), 5) for name in names}
        feats.update((name, rng.choice(CATEGORIES)) for name in cat_names)
        batch.append(
            orjson.dumps(
                {
                    "event_id": f"ev-{i}",
                    "model": f"model-{i % models}",
                    "model_version": "1",
                    "timestamp": 1_767_225_600_000 + i,
                    "features": feats,
                    "prediction": round(rng.random(), 5),
                }
            )
        )
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def measure(
    features: int, models: int, events_per_model: int, config: str | None, traced: bool
) -> dict[str, Any]:
    """Build one partition's state in this process and measure it."""
    from detector.config import load_settings
    from detector.core.engine import PartitionDetectors
    from detector.core.records import InputRecord

    detection = load_settings(config, env={}).detection

    def feed(core: Any, batches: Iterator[list[bytes]], offset: int) -> tuple[int, float]:
        n, seconds = 0, 0.0
        for values in batches:
            records = [InputRecord(TOPIC, 0, offset + k, v) for k, v in enumerate(values)]
            offset += len(values)
            started = time.perf_counter()
            core.process(records)
            seconds += time.perf_counter() - started
            n += len(values)
        return n, seconds

    # Warm up: import River, numpy and the compiled loop, and size the interpreter's pools,
    # on a throwaway partition, so that the baseline below holds all of it.
    warm = PartitionDetectors(detection, TOPIC, 1)
    feed(warm, event_batches(1, features, 1_000, seed=99), 0)
    del warm
    gc.collect()

    if traced:
        tracemalloc.start()
    base_rss = rss_bytes()
    base_traced = tracemalloc.get_traced_memory()[0] if traced else 0
    core = PartitionDetectors(detection, TOPIC, 0)
    half = events_per_model // 2
    feed(core, event_batches(models, features, half, seed=1), 0)
    n, seconds = feed(
        core, event_batches(models, features, events_per_model - half, seed=2), models * half
    )
    gc.collect()
    grown_rss = rss_bytes() - base_rss
    grown_traced = tracemalloc.get_traced_memory()[0] - base_traced if traced else 0
    if traced:
        tracemalloc.stop()

    detectors = core.active_detectors
    entries = core.snapshot()
    changelog = sum(len(v) for v in entries.values())
    started = time.perf_counter()
    restored = PartitionDetectors.restore(detection, TOPIC, 0, entries)
    restore_s = time.perf_counter() - started
    if restored.active_detectors != detectors:
        raise AssertionError(f"restored {restored.active_detectors} detectors of {detectors}")
    return {
        "features": features,
        "models": models,
        "events_per_model": events_per_model,
        "detectors": detectors,
        "detectors_per_feature": detectors / (models * (features + 1)),
        "rss_bytes": grown_rss,
        "process_rss_bytes": base_rss,
        "traced_bytes": grown_traced,
        "changelog_bytes": changelog,
        "restore_s": restore_s,
        "events_per_s": n / seconds if seconds else 0.0,
    }


def run_child(args: argparse.Namespace, features: int, traced: bool) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--features",
        str(features),
        "--models",
        str(args.models),
        "--events",
        str(args.events),
    ]
    if traced:
        cmd.append("--traced")
    if args.config:
        cmd += ["--config", args.config]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def report(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"Machine: {machine()}",
        "",
        "| features | models | detectors | RSS, MB | RSS/detector, KB | traced/detector, KB "
        "| changelog, MB | changelog/detector, KB | restore, s | restore/detector, µs "
        "| core events/s (1 core) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        d = r["detectors"]
        lines.append(
            f"| {r['features']} | {r['models']} | {d:,} | {r['rss_bytes'] / 1e6:.1f} "
            f"| {r['rss_bytes'] / d / 1e3:.2f} | {r['traced_bytes'] / d / 1e3:.2f} "
            f"| {r['changelog_bytes'] / 1e6:.1f} | {r['changelog_bytes'] / d / 1e3:.2f} "
            f"| {r['restore_s']:.2f} | {r['restore_s'] / d * 1e6:.0f} "
            f"| {r['events_per_s']:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", default="10,40,100", help="comma-separated feature counts")
    parser.add_argument("--models", type=int, default=10, help="models in the partition")
    parser.add_argument("--events", type=int, default=10_000, help="events per model")
    parser.add_argument("--config", help="a detector config file (its detection section)")
    parser.add_argument("--json", action="store_true", help="print JSON lines, not a table")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    counts = [int(x) for x in str(args.features).split(",") if x]
    if args.child:
        row = measure(counts[0], args.models, args.events, args.config, args.traced)
        print(json.dumps(row))
        return 0
    rows = []
    for features in counts:
        row = run_child(args, features, traced=False)
        row["traced_bytes"] = run_child(args, features, traced=True)["traced_bytes"]
        rows.append(row)
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        print(report(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
