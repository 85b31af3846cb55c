"""Bounded memory under a flood of never-seen feature names.

Every event carries two stable features and one feature name no event had before, the way a
model server leaking request ids into feature names would. ``max_features_per_model`` caps
what one model holds; the rest is refused as ``too_many_features``, counted by
``drift_detector_limit_rejections_total{limit="max_features"}``, by
``drift_detector_dead_letters_total{reason="too_many_features"}`` and on the dead-letter topic.

The memory bound: one feature costs about 8 KiB of Python objects alone in the detection
core (measured with tracemalloc; River's ADWIN state lives outside it and adds more). Were
the cap not enforced, the 90,000 events after the first sample would add 90,000 features:
over 700 MiB. Enforced, the detectors stay at 100 features; what remains is the transient
memory of the batches in flight (10,000 events per loop turn, a few MiB of Python objects),
librdkafka's fetch and produce buffers (the whole flood is about 12 MB on the wire) and
allocator slack. ``GROWTH_BOUND`` (64 MiB) is far below the unbounded case and well above
those.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from support import BASE_TS_MS, SidecarProcess, by_label, config_with_server, scrape, settings_for

from detector.broker import free_port

pytestmark = pytest.mark.integration

EVENTS = 100_000
FIRST = 10_000
MAX_FEATURES = 100
STABLE = 2  # x and y
GROWTH_BOUND = 64 * 1024 * 1024


def _flood(start: int, stop: int) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "event_id": f"e{i}",
                "model": "m",
                "timestamp": BASE_TS_MS + i * 1000,
                "features": {"x": (i % 13) * 0.5, "y": (i % 7) * 1.5, f"req_{i}": 1.0},
                "prediction": (i % 10) / 10,
            }
        )
        for i in range(start, stop)
    ]


def _settled(port: int, total: int, timeout_s: float = 60.0) -> dict[str, Any]:
    """Scrape until every consumed record is accounted for as processed or dead-lettered.

    Dead letters are counted when their checkpoint commits, a moment after the offsets move:
    this waits for that (an observable state), not for a time.
    """
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        samples = scrape(port)
        consumed = sum(samples.get("drift_detector_events_consumed_total", {}).values())
        processed = sum(samples.get("drift_detector_events_processed_total", {}).values())
        dead = sum(samples.get("drift_detector_dead_letters_total", {}).values())
        if consumed == total and processed + dead >= total:
            return samples
        assert time.monotonic() < deadline, (consumed, processed, dead, total)
        time.sleep(0.05)  # polling the metrics endpoint for the commit's counters


def test_feature_flood_is_capped_and_memory_stays_bounded(
    kafka: Any, unique: Any, tmp_path: Path
) -> None:
    source = kafka.create_topic(unique("in"), partitions=1)
    port = free_port()
    config = config_with_server(
        tmp_path / "config.yaml",
        kafka.bootstrap_servers,
        port=port,
        # One log line per dead letter at info; 90,000 of them would only slow the test.
        log={"level": "warning", "format": "json"},
        detection={"max_features_per_model": MAX_FEATURES, "feature_ttl_s": 60},
        input_topic=source,
        alert_topic=unique("alerts"),
        group_id=unique("group"),
    )
    settings = settings_for(config)
    group = settings.kafka.group_id
    sidecar = SidecarProcess(config, tmp_path / "sidecar.log").start(wait_ready=False)
    try:
        kafka.produce(source, _flood(0, FIRST), key=b"m")
        kafka.wait_committed(group, source, {0: FIRST}, watch=[sidecar])
        first = _settled(port, FIRST)
        kafka.produce(source, _flood(FIRST, EVENTS), key=b"m")
        kafka.wait_committed(group, source, {0: EVENTS}, watch=[sidecar])
        last = _settled(port, EVENTS)
        assert sidecar.proc is not None and sidecar.proc.poll() is None
        assert sidecar.terminate() == 0, sidecar.output()[-3000:]
    finally:
        sidecar.cleanup()

    rss_first = first["process_resident_memory_bytes"][()]
    rss_last = last["process_resident_memory_bytes"][()]
    growth = rss_last - rss_first
    print(
        f"\nRSS after {FIRST:,} events: {rss_first / 2**20:.1f} MiB, after {EVENTS:,}: "
        f"{rss_last / 2**20:.1f} MiB (growth {growth / 2**20:.1f} MiB)"
    )
    assert growth < GROWTH_BOUND

    processed = by_label(last, "drift_detector_events_processed_total", "model")
    dead = by_label(last, "drift_detector_dead_letters_total", "reason")
    limits = by_label(last, "drift_detector_limit_rejections_total", "limit")
    expired = last["drift_detector_expired_detectors_total"][()]
    refused = dead.get("too_many_features", 0)
    assert set(dead) == {"too_many_features"}
    assert limits == {"max_features": refused}
    assert processed["m"] + refused == EVENTS
    # The stable features and the first new names fill the model up ...
    assert processed["m"] >= MAX_FEATURES - STABLE
    if expired == 0:  # ... and with nothing forgotten, nothing else gets in.
        assert processed["m"] == MAX_FEATURES - STABLE
    # Detectors held: at most MAX_FEATURES features (3 detectors each when numeric, plus the
    # missing rate's 1 included) and the prediction's 3.
    assert last["drift_detector_active_detectors"][()] <= 3 * MAX_FEATURES + 3

    letters = kafka.read_all(settings.kafka.dead_letter)
    assert len(letters) == refused
    assert {r.headers["reason"] for r in letters} == {b"too_many_features"}
    assert len({int(r.headers["original_offset"]) for r in letters}) == refused
