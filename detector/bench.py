"""`detector bench` (`make bench`): throughput on the embedded broker, written to a file.

Measured in one run, on one broker, over the same topic:

1. the floor: a bare confluent-kafka consumer that only parses each event with orjson;
2. the sidecar (the code behind `detector run`), exactly-once;
3. the sidecar, at-least-once;
4. restoring the state of 10,000+ detectors from the changelog topic.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import orjson
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from detector.config import DetectionSettings, KafkaSettings, LogSettings, Settings
from detector.kafka.clients import FETCH_QUEUE_BACKOFF_MS

MODELS = 10
NUMERIC = 20
CATEGORICAL = 5
PARTITIONS = 4
TOPIC = "bench.predictions"


def _events(n: int, seed: int = 1) -> list[bytes]:
    rng = np.random.default_rng(seed)
    numbers = np.round(rng.normal(0.0, 1.0, (n, NUMERIC)), 5).tolist()
    cats = rng.integers(0, 6, (n, CATEGORICAL)).tolist()
    names = [f"num_{j}" for j in range(NUMERIC)]
    cat_names = [f"cat_{j}" for j in range(CATEGORICAL)]
    labels = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
    out = []
    for i in range(n):
        features: dict[str, object] = dict(zip(names, numbers[i], strict=True))
        features.update(zip(cat_names, (labels[c] for c in cats[i]), strict=True))
        out.append(
            orjson.dumps(
                {
                    "event_id": f"ev-{i}",
                    "model": f"model-{i % MODELS}",
                    "model_version": "1",
                    "timestamp": 1_767_225_600_000 + i,
                    "features": features,
                    "prediction": round(float(numbers[i][0]) * 0.1 + 0.5, 5),
                }
            )
        )
    return out


def _produce(bootstrap: str, topic: str, events: list[bytes]) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10000}
    )
    for value in events:
        key = value[value.index(b'"model":"') + 9 :].split(b'"', 1)[0]
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush()


def measure_floor(bootstrap: str, topic: str, n: int) -> float:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-floor-{time.time_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            # The same fetch tuning as `detector run` (detector/kafka/clients.py).
            "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
        }
    )
    consumer.subscribe([topic])
    seen = 0
    first = 0.0
    try:
        while seen < n:
            for message in consumer.consume(num_messages=5000, timeout=1.0):
                if message.error() is not None:
                    continue
                if not seen:
                    first = time.perf_counter()
                orjson.loads(message.value() or b"null")
                seen += 1
        return (n - 1) / (time.perf_counter() - first)
    finally:
        consumer.close()


def measure_sidecar(
    bootstrap: str, topic: str, n: int, guarantee: Literal["exactly-once", "at-least-once"]
) -> float:
    from detector.kafka.runner import Sidecar

    tag = f"{guarantee}-{time.time_ns()}"
    settings = Settings(
        kafka=KafkaSettings(
            bootstrap_servers=bootstrap,
            input_topic=topic,
            alert_topic=f"bench.alerts.{tag}",
            group_id=f"bench-{tag}",
            processing_guarantee=guarantee,
            session_timeout_ms=6000,
        ),
        detection=DetectionSettings(),
    )
    sidecar = Sidecar(settings)
    thread = threading.Thread(target=sidecar.run, daemon=True)
    thread.start()
    first = 0.0
    while sidecar.counts["events"] < n:
        if not first and sidecar.counts["events"]:
            first = time.perf_counter()
            start_count = sidecar.counts["events"]
        time.sleep(0.01)
    elapsed = time.perf_counter() - first
    sidecar.stop()
    thread.join(60)
    return (n - start_count) / elapsed


def measure_restore(bootstrap: str) -> tuple[int, int, float]:
    """Snapshot a partition holding 10,000+ detectors to a changelog; time its restore."""
    from detector.core.engine import PartitionDetectors
    from detector.core.records import InputRecord
    from detector.kafka.changelog import INPUT_OFFSET_HEADER, restore_partitions

    tag = time.time_ns()
    settings = Settings(
        kafka=KafkaSettings(
            bootstrap_servers=bootstrap,
            input_topic=f"bench.restore.{tag}",
            group_id=f"bench-restore-{tag}",
        )
    )
    models = 110
    events = _events(models * 600, seed=3)
    records = []
    for i, value in enumerate(events):
        value = value.replace(
            f'"model":"model-{i % MODELS}"'.encode(), f'"model":"m-{i % models}"'.encode()
        )
        records.append(InputRecord(settings.kafka.input_topic, 0, i, value))
    core = PartitionDetectors(settings.detection, settings.kafka.input_topic, 0)
    core.process(records)
    detectors = core.active_detectors
    entries = core.snapshot()
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = settings.kafka.changelog
    for future in admin.create_topics(
        [NewTopic(topic, 1, 1, config={"cleanup.policy": "compact"})]
    ).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 16 << 20})
    size = 0
    for model, value in entries.items():
        size += len(value)
        producer.produce(
            topic,
            key=model.encode(),
            value=value,
            partition=0,
            headers=[(INPUT_OFFSET_HEADER, str(len(records)).encode())],
        )
    producer.flush()
    started = time.perf_counter()
    restored = restore_partitions(settings, {0: len(records)})
    elapsed = time.perf_counter() - started
    assert restored[0].active_detectors == detectors
    return detectors, size, elapsed


def measure_core_split(payload: list[bytes]) -> dict[str, float]:
    """Microseconds per event in the pure core (no Kafka): best of three passes over the
    same events in 10,000-event batches of one partition, after warm-up."""
    from detector.core.engine import PartitionDetectors

    warm, rest = payload[:20_000], payload[20_000:]
    n = len(rest)
    offsets = list(range(len(payload)))

    def best(run: Callable[[], object], passes: int = 3) -> float:
        times = []
        for _ in range(passes):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
        return min(times)

    def loads() -> None:
        for value in rest:
            orjson.loads(value)

    core = PartitionDetectors(DetectionSettings(), TOPIC, 0)
    core.process_batch(offsets[:20_000], warm)

    def compiled() -> None:
        for start in range(0, n, 10_000):
            core.process_batch(offsets[start : start + 10_000], rest[start : start + 10_000])

    reference = PartitionDetectors(DetectionSettings(), TOPIC, 0, reference=True)
    reference.process_batch(offsets[:20_000], warm)
    sample = rest[:10_000]

    def readable() -> None:
        reference.process_batch(offsets[:10_000], sample)

    us = 1e6 / n
    return {
        "orjson.loads": best(loads) * us,
        "compiled core, total (orjson included)": best(compiled) * us,
        "readable reference path, for comparison": best(readable, 1) * 1e6 / len(sample),
    }


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def run_bench(output: str = "docs/benchmarks.md", events: int = 200_000) -> int:
    from detector.broker import EmbeddedBroker
    from detector.log import configure_logging
    from detector.ops.runtime import tune_gc

    configure_logging(LogSettings(level="error"))
    print(
        f"generating {events:,} events ({NUMERIC} numeric + {CATEGORICAL} categorical features, "
        f"{MODELS} models)",
        flush=True,
    )
    payload = _events(events)
    avg = sum(map(len, payload)) / len(payload)
    tune_gc()
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for future in admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)]).values():
            future.result(30)
        _produce(bootstrap, TOPIC, payload)
        print("floor (consume + orjson.loads)...", flush=True)
        floor = measure_floor(bootstrap, TOPIC, events)
        print(f"  {floor:,.0f} events/s", flush=True)
        print("detector run, exactly-once...", flush=True)
        eos = measure_sidecar(bootstrap, TOPIC, events, "exactly-once")
        print(f"  {eos:,.0f} events/s", flush=True)
        print("detector run, at-least-once...", flush=True)
        alo = measure_sidecar(bootstrap, TOPIC, events, "at-least-once")
        print(f"  {alo:,.0f} events/s", flush=True)
        print("core split...", flush=True)
        split = measure_core_split(payload[:120_000])
        ratio = eos / floor
        verdict = (
            f"**The target of 40 % of the floor is met: {ratio:.0%}.**"
            if ratio >= 0.4
            else f"**The target of 40 % of the floor is not met: {ratio:.0%}.**"
        )
        print("restore...", flush=True)
        detectors, size, restore_s = measure_restore(bootstrap)
        print(f"  {detectors:,} detectors, {size / 1e6:.1f} MB, {restore_s:.2f} s", flush=True)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    text = (
        f"""# Benchmarks

Written by `make bench` (`detector bench --events {events}`); numbers from one run.

- Date: {datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}, commit {commit or "n/a"}
- Machine: {_machine()}
- Broker: embedded Tansu (memory storage) on the same machine, {PARTITIONS} input partitions;
  the whole topic is produced first, so every consumer starts on a backlog
- Both consumers use `fetch.queue.backoff.ms={FETCH_QUEUE_BACKOFF_MS}` (the sidecar's default;
  librdkafka's is 1000). With 1000, whenever the prefetch queue fills the next fetch waits
  a second: the floor then measured either about 350,000 or about 145,000 events/s from run
  to run, and the sidecar spent a third of its run idle
- Events: {events:,}, {MODELS} models, {NUMERIC} numeric + {CATEGORICAL} categorical features
  each, {avg:.0f} bytes on average, keyed by model

| what | events/s | of the floor |
|---|---:|---:|
| floor: bare confluent-kafka consumer, `orjson.loads` per event | {floor:,.0f} | 100 % |
| `detector run`, exactly-once (default) | {eos:,.0f} | {eos / floor:.0%} |
| `detector run`, at-least-once | {alo:,.0f} | {alo / floor:.0%} |

Exactly-once vs at-least-once: {eos / alo:.2f}x.

| restore | value |
|---|---:|
| detectors in one partition's state | {detectors:,} |
| changelog bytes | {size / 1e6:.1f} MB |
| time to restore (read changelog to its end, unpickle, rebuild) | {restore_s:.2f} s |

## Where the time goes

The pure core with no Kafka, per event, measured in the same run (best of three passes
over the same events in 10,000-event batches of one partition, after warm-up):

| stage | µs per event |
|---|---:|
"""
        + "".join(f"| {name} | {value:.2f} |\n" for name, value in split.items())
        + f"""
The floor costs {1e6 / floor:.2f} µs per event, of which `orjson.loads` is about
{split["orjson.loads"]:.2f}. `detector run` (exactly-once) costs {1e6 / eos:.2f} µs per event:
the compiled core, {split["compiled core, total (orjson included)"]:.2f} µs, and the Kafka shell
(consume, transactions, changelog snapshots), about
{1e6 / eos - split["compiled core, total (orjson included)"]:.2f} µs.

{verdict}

What the compiled core does per event, and what it costs:

- parse with `orjson.loads` (the floor's own cost);
- recognise an event of known features with values of the kinds seen before (a few dict
  lookups and type tests; keys in the usual order match by position);
- per numeric feature, the two reference ranks: a search of 64 bucket fences, then of one
  bucket of 8 values (usually a cache miss), whose load is started for all of the event's
  features before the first is needed;
- per feature, the missing flag and block sums;
- every 16 observations of a feature, one River ADWIN step per detector (about 100
  detectors per model here), checking for a cut every 4th step (`clock=4`). A detector whose
  window holds only zeros (a feature never missing, a category that never occurs) gets its
  zeros later, just before its next non-zero value: the same River calls, made later.

Measured along the way (same machine, `perf record` on the core): River's ADWIN steps and
the per-feature rank search were each about an eighth of the core's time, `orjson.loads`
and the dicts it builds about two fifths.

The readable reference path does the same per event in Python; the compiled loop gives the
same detections (`tests/unit/test_kernel.py`).

Scaling out is per partition: more `detector run` instances in the same consumer group
split the input partitions, and their throughput adds up until the broker is the limit.
"""
    )
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(text)
    print(f"written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(run_bench())
