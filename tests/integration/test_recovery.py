"""Crash recovery: kill -9 mid-stream, restart, and the committed alerts are exactly those
of an uninterrupted run: none lost, none twice.

Reading "committed" alerts: see ``support.alert_view``. Tansu hands records of aborted
transactions to read_committed consumers, so the exactly-once property is checked on the
log with transaction markers applied by the test; librdkafka's view is checked to hold
every expected alert, and (on Tansu) to differ from the committed view only by records of
aborted transactions. Against a real Kafka (KAFKA_BOOTSTRAP_SERVERS) both views must agree.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from support import (
    DENSE_DETECTION,
    AlertKey,
    SidecarProcess,
    alert_key_of,
    alert_view,
    expected_alerts,
    external_broker,
    interleave,
    settings_for,
    wait_open_alert,
    wavy_events,
    write_config,
)

from detector.cli import main

pytestmark = pytest.mark.integration


def _chunks(n_models: int, events: int, n: int) -> list[list[dict[str, Any]]]:
    stream = interleave(
        [wavy_events(f"m{i}", events, period=300 + 70 * i) for i in range(n_models)]
    )
    size = -(-len(stream) // n)
    return [stream[i : i + size] for i in range(0, len(stream), size)]


def _produce(kafka: Any, topic: str, chunk: list[dict[str, Any]]) -> None:
    kafka.produce(topic, chunk, keys=[e["model"].encode() for e in chunk])


def _check_exactly_once(kafka: Any, settings: Any, source: str) -> None:
    expected = expected_alerts(settings, kafka.read_all(source))
    assert len(expected) > 20
    view = alert_view(kafka, settings.kafka.alert_topic)
    print(
        f"\nexpected {len(expected)} alerts; committed {len(view.committed)}, "
        f"aborted {len(view.aborted)}, open {len(view.open)}, "
        f"librdkafka read_committed returned {len(view.librdkafka)}"
    )
    assert not view.open
    duplicates = {k: c for k, c in Counter(view.committed).items() if c > 1}
    assert not duplicates, f"alerts committed twice: {duplicates}"
    assert set(view.committed) == expected
    # librdkafka's read_committed view: nothing lost ...
    assert set(view.librdkafka) == expected
    extra: Counter[AlertKey] = Counter(view.librdkafka) - Counter(view.committed)
    if external_broker():
        assert not extra, f"read_committed returned aborted alerts: {extra}"
    else:  # ... and on Tansu, more only by aborted records
        assert not extra - Counter(view.aborted)


def _check_audit(kafka: Any, settings: Any, config: Path) -> None:
    """The audit log after the kills: its chains verify, and its committed alert records
    are the committed alerts, each once (the audit record commits with its alert)."""
    from txnread import read_partition

    topic = settings.audit.topic_for(settings.kafka)
    audited: list[AlertKey] = []
    for partition in kafka.partitions(topic):
        for r in read_partition(kafka.bootstrap_servers, topic, partition).committed:
            record = orjson.loads(r.value)
            if record["kind"] == "alert":
                audited.append(alert_key_of(record["body"]))
    view = alert_view(kafka, settings.kafka.alert_topic)
    assert Counter(audited) == Counter(view.committed)
    assert main(["audit", "verify", "--config", str(config)]) == 0


def _config(tmp_path: Path, kafka: Any, source: str, **extra: Any) -> Path:
    return write_config(
        tmp_path / "config.yaml",
        kafka.bootstrap_servers,
        detection=DENSE_DETECTION,
        input_topic=source,
        alert_topic=f"{source}.alerts",
        group_id=f"{source}.group",
        **{
            # Long transactions: a kill right after a commit lands inside the next one.
            "checkpoint_events": 2000,
            "checkpoint_interval_s": 1.0,
            **extra,
        },
    )


def test_kill_9_mid_stream_loses_and_duplicates_nothing(
    kafka: Any, unique: Any, tmp_path: Path
) -> None:
    source = kafka.create_topic(unique("in"), partitions=3)
    # A stable transactional.id and static membership, as a StatefulSet pod has: the
    # restarted process fences its predecessor and takes its partitions back at once.
    config = _config(
        tmp_path,
        kafka,
        source,
        transactional_id=unique("txn"),
        librdkafka={"group.instance.id": unique("member")},
        # A chunk is processed in well under a second: its alerts stay in the open
        # transaction until the time cadence (counted from start-up, so longer than the
        # group join), which is where the kill must land.
        checkpoint_events=1_000_000,
        checkpoint_interval_s=8.0,
    )
    settings = settings_for(config)
    group = settings.kafka.group_id
    log_path = tmp_path / "sidecar.log"
    chunks = _chunks(6, 5000, 4)
    hits = 0
    sidecar = SidecarProcess(config, log_path).start()
    try:
        for chunk in chunks[:-1]:
            _produce(kafka, source, chunk)
            # Kill while an alert is delivered but its transaction still open.
            hits += wait_open_alert(kafka, settings.kafka.alert_topic, sidecar)
            sidecar.kill()
            sidecar = SidecarProcess(config, log_path).start()
        _produce(kafka, source, chunks[-1])
        kafka.wait_committed(group, source, kafka.end_offsets(source), watch=[sidecar])
        assert sidecar.terminate() == 0, sidecar.output()[-3000:]
    finally:
        sidecar.cleanup()
    print(f"\n{hits} of {len(chunks) - 1} kills with an open transaction holding alerts")
    assert hits, "no kill landed inside a transaction holding alerts: the test proved little"
    _check_exactly_once(kafka, settings, source)
    _check_audit(kafka, settings, config)


def test_kill_9_at_least_once_loses_nothing(kafka: Any, unique: Any, tmp_path: Path) -> None:
    """at-least-once: after kill -9, alerts may repeat (same alert_id), none is lost."""
    source = kafka.create_topic(unique("in"), partitions=2)
    config = _config(tmp_path, kafka, source, processing_guarantee="at-least-once")
    settings = settings_for(config)
    group = settings.kafka.group_id
    chunks = _chunks(4, 4000, 3)
    sidecar = SidecarProcess(config, tmp_path / "sidecar.log").start()
    try:
        for chunk in chunks[:-1]:
            _produce(kafka, source, chunk)
            sidecar.wait_event("drift detected")
            sidecar.kill()
            sidecar = SidecarProcess(config, tmp_path / "sidecar.log").start()
        _produce(kafka, source, chunks[-1])
        kafka.wait_committed(group, source, kafka.end_offsets(source), watch=[sidecar])
        assert sidecar.terminate() == 0, sidecar.output()[-3000:]
    finally:
        sidecar.cleanup()
    expected = expected_alerts(settings, kafka.read_all(source))
    alerts = [r.json() for r in kafka.read_all(settings.kafka.alert_topic)]
    assert {alert_key_of(a) for a in alerts} == expected
    by_id: dict[str, set[AlertKey]] = {}
    for alert in alerts:
        by_id.setdefault(alert["alert_id"], set()).add(alert_key_of(alert))
    assert len(by_id) == len(expected)  # a repeated alert is recognisable by its alert_id
    assert all(len(keys) == 1 for keys in by_id.values())
    print(f"\nat-least-once: {len(alerts)} alerts for {len(expected)} expected")


def test_instances_joining_and_one_killed_give_the_same_alerts(
    kafka: Any, unique: Any, tmp_path: Path
) -> None:
    source = kafka.create_topic(unique("in"), partitions=4)
    config = _config(tmp_path, kafka, source)
    settings = settings_for(config)
    group = settings.kafka.group_id
    chunks = _chunks(8, 3000, 4)

    def instance(name: str) -> SidecarProcess:
        # One transactional.id per instance (same host here, so not the hostname default).
        return SidecarProcess(config, tmp_path / f"{name}.log", transactional_id=f"{source}-{name}")

    def settled(procs: list[SidecarProcess], partitions: int) -> None:
        """Wait until the latest assignments of ``procs`` cover every partition once."""
        deadline = time.monotonic() + 60
        while True:
            held = [p for proc in procs for p in proc.assignment()]
            if sorted(held) == list(range(partitions)) and all(proc.assignment() for proc in procs):
                return
            assert time.monotonic() < deadline, [proc.assignment() for proc in procs]
            for proc in procs:
                assert proc.proc is not None and proc.proc.poll() is None, proc.output()[-3000:]
            time.sleep(0.05)  # polling log files: no event to wait on

    a = instance("a").start()
    others: list[SidecarProcess] = []
    try:
        before = kafka.committed(group, source)
        _produce(kafka, source, chunks[0])
        kafka.wait_committed_progress(group, source, before, watch=[a])
        # Two more instances join mid-stream.
        b, c = instance("b").start(), instance("c").start()
        others = [b, c]
        settled([a, b, c], 4)
        b_partitions = b.assignment()
        _produce(kafka, source, chunks[1])
        # Kill b as soon as it has detected drift: the alert is in its open transaction.
        b.wait_event("drift detected")
        wait_open_alert(kafka, settings.kafka.alert_topic, b, timeout_s=2.0)
        b.kill()
        # a and c take b's partitions over (after the session timeout) and restore them.
        settled([a, c], 4)
        restored = {
            event["partition"]
            for proc in (a, c)
            for event in proc.events()
            if event["event"] == "partition restored"
        }
        assert set(b_partitions) <= restored
        # b comes back with its transactional.id: init_transactions aborts its unfinished
        # transaction. (On Tansu this must happen before anything else commits: it has no
        # transaction timeout, and defers the commit of every transaction sharing a
        # partition with an open one, here the alert topic, until that one ends. Kafka
        # aborts the zombie after transaction.timeout.ms and commits the others meanwhile.)
        b = others[0] = instance("b").start()
        settled([a, b, c], 4)
        _produce(kafka, source, chunks[2] + chunks[3])
        kafka.wait_committed(group, source, kafka.end_offsets(source), watch=[a, b, c])
        for proc in [a, b, c]:
            assert proc.terminate() == 0, proc.output()[-3000:]
    finally:
        for proc in [a, *others]:
            proc.cleanup()
    _check_exactly_once(kafka, settings, source)
