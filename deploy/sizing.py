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

#: Measured by this script (``python deploy/sizing.py`` and ``--features 40 --events 40000``,
#: three runs each on 2026-12-07: AMD EPYC, 2 cores, Python 3.11.7; deploy/README.md
#: "Sizing"). Memory, changelog and restore take the largest figure of the runs, rounded
#: up; throughput the median of the 40,000-event runs, rounded down. The manifests'
#: memory limits are derived from these (tests/deploy check them).
MEASURED = {
    "rss_per_detector": 33_000,  # bytes; 24.9 to 33.7 KB over the runs (40 features)
    # 3.98 for 80 % numeric (3: missing rate, mean, variance) and 20 % categorical
    # features of 6 categories (8: missing rate and one per category, "other" included).
    "detectors_per_feature": 4,
    "changelog_per_detector": 3_200,  # bytes, pickled; 3.15 KB at 40,000 events per model
    "restore_per_detector_s": 110e-6,  # restricted unpickle, checks and rebuild, no Kafka
    "process_rss": 64_000_000,  # bytes: interpreter, River, numpy, compiled core
    "core_events_per_s_40_features": 38_000,  # one core, warm state, parse included
}
#: librdkafka's prefetch queue (queued.max.messages.kbytes, its default 65536 KB).
FETCH_QUEUE_BYTES = 64 << 20
#: Room for the checkpoint's pickled entries, the allocator, and estimates being estimates.
HEADROOM = 1.25


def state_bytes(partitions: int, models: int, features: int) -> float:
    """Resident bytes of the detectors of ``partitions`` partitions of ``models`` models with
    ``features`` features each (plus the prediction)."""
    monitors = partitions * models * (features + 1)
    return monitors * MEASURED["detectors_per_feature"] * MEASURED["rss_per_detector"]


def memory_limit_bytes(partitions_per_pod: int, max_models: int, max_features: int) -> float:
    """The memory a sidecar needs to hold ``partitions_per_pod`` partitions at the configured
    limits (``detection.max_models``, ``detection.max_features_per_model``)."""
    used = MEASURED["process_rss"] + FETCH_QUEUE_BYTES
    used += state_bytes(partitions_per_pod, max_models, max_features)
    return used * HEADROOM


#: The state archive's defaults (``audit.archive_interval_s``, ``audit.retention_days``).
ARCHIVE_INTERVAL_S = 3600.0
RETENTION_DAYS = 400


def plan(
    events_per_s: float,
    features: int,
    models: int,
    replicas: int,
    partitions: int,
    keyed_by_model: bool = True,
    archive_interval_s: float = ARCHIVE_INTERVAL_S,
    retention_days: int = RETENTION_DAYS,
) -> dict[str, float]:
    """The worked example's arithmetic: CPU and memory per pod, changelog, state archive
    and restore. The archive holds a snapshot of every partition's whole state (its
    changelog entries) each ``archive_interval_s`` for ``retention_days`` (while events
    keep coming)."""
    cores = events_per_s / MEASURED["core_events_per_s_40_features"] * (features + 1) / 41
    # Keyed by model, a model's state lives in one partition; otherwise in every partition.
    total_models = models if keyed_by_model else models * partitions
    per_pod_worst = min(total_models, -(-partitions // max(replicas - 1, 1)) * models)
    detectors = total_models * (features + 1) * MEASURED["detectors_per_feature"]
    return {
        "cores_total": cores,
        "cores_per_pod": cores / replicas,
        "memory_per_pod_bytes": (
            MEASURED["process_rss"] + FETCH_QUEUE_BYTES + state_bytes(1, per_pod_worst, features)
        )
        * HEADROOM,
        "changelog_bytes_total": detectors * MEASURED["changelog_per_detector"],
        "changelog_bytes_per_s": detectors * MEASURED["changelog_per_detector"] / 2.0,
        "archive_bytes_total": detectors
        * MEASURED["changelog_per_detector"]
        * (retention_days * 86_400 / archive_interval_s),
        "restore_s_per_pod": detectors / replicas * MEASURED["restore_per_detector_s"],
    }


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
    parser.add_argument(
        "--plan",
        nargs=5,
        type=float,
        metavar=("EVENTS_PER_S", "FEATURES", "MODELS", "REPLICAS", "PARTITIONS"),
        help="print the sizing arithmetic from the MEASURED figures (no measurement)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    counts = [int(x) for x in str(args.features).split(",") if x]
    if args.plan:
        rate, features, models, replicas, partitions = args.plan
        for keyed in (True, False):
            figures = plan(rate, int(features), int(models), int(replicas), int(partitions), keyed)
            print(
                ("keyed by model: " if keyed else "not keyed:      ")
                + json.dumps({k: round(v, 3) for k, v in figures.items()})
            )
        return 0
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
