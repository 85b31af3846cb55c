"""SIGHUP reloads the detection settings; monitors whose settings did not change keep their
state, so their alerts are exactly those of an uninterrupted run.

The reload lands between two parts of the stream: the first part is committed before the
signal, the second produced only after the "configuration reloaded" log event. So the
pure core can reproduce the whole run: first part with the old settings, ``reconfigure``,
second part with the new ones.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from support import (
    DENSE_DETECTION,
    AlertKey,
    SidecarProcess,
    alert_view,
    expected_alerts,
    settings_for,
    wavy_events,
    write_config,
)

from detector.core.engine import PartitionDetectors
from detector.core.records import InputRecord

pytestmark = pytest.mark.integration

CHANGED = ("churn", "x")
NEW_DETECTION = {
    **DENSE_DETECTION,
    "models": {
        "churn": {
            "features": {"x": {"detector": {"name": "ADWIN", "params": {"delta": 0.2, "clock": 1}}}}
        }
    },
}


def _reloaded_core(
    old: Any, new: Any, first: list[Any], second: list[Any]
) -> tuple[set[AlertKey], int]:
    """The pure core per partition: ``first`` with ``old`` settings, reconfigure, ``second``."""
    topic = old.kafka.input_topic
    keys: set[AlertKey] = set()
    reset = 0
    for partition in sorted({r.partition for r in first + second}):
        core = PartitionDetectors(old.detection, topic, partition)
        detections = []
        for part, settings in ((first, None), (second, new.detection)):
            if settings is not None:
                reset += core.reconfigure(settings)
            batch = [InputRecord(topic, r.partition, r.offset, r.value) for r in part]
            batch = [r for r in batch if r.partition == partition]
            detections += core.process(batch).detections
        keys |= {(d.model, d.feature, d.drift_type, d.partition, d.offset) for d in detections}
    return keys, reset


def test_sighup_resets_only_the_changed_monitors(kafka: Any, unique: Any, tmp_path: Path) -> None:
    source = kafka.create_topic(unique("in"), partitions=2)
    # Feature x jumps back and forth: alerts all along, before and after the reload.
    churn = wavy_events("churn", 3000, period=300)
    fraud = wavy_events("fraud", 3000, period=370)
    split = 1200

    def produce(churn_part: list[Any], fraud_part: list[Any]) -> None:
        # churn on both partitions (alternating), fraud on partition 1 only.
        kafka.produce(source, churn_part[0::2], key=b"churn", partition=0)
        kafka.produce(source, churn_part[1::2] + fraud_part, key=b"x", partition=1)

    kafka_args = {
        "input_topic": source,
        "alert_topic": unique("alerts"),
        "group_id": unique("group"),
    }
    config = write_config(
        tmp_path / "config.yaml", kafka.bootstrap_servers, DENSE_DETECTION, **kafka_args
    )
    old = settings_for(config)
    group = old.kafka.group_id
    sidecar = SidecarProcess(config, tmp_path / "sidecar.log").start()
    try:
        produce(churn[:split], fraud[:split])
        first_ends = kafka.end_offsets(source)
        kafka.wait_committed(group, source, first_ends, watch=[sidecar])
        write_config(config, kafka.bootstrap_servers, NEW_DETECTION, **kafka_args)
        assert sidecar.proc is not None
        sidecar.proc.send_signal(signal.SIGHUP)
        reloaded = sidecar.wait_event("configuration reloaded")
        produce(churn[split:], fraud[split:])
        kafka.wait_committed(group, source, kafka.end_offsets(source), watch=[sidecar])
        assert sidecar.terminate() == 0, sidecar.output()[-3000:]
    finally:
        sidecar.cleanup()
    new = settings_for(config)

    records = kafka.read_all(source)
    first = [r for r in records if r.offset < first_ends[r.partition]]
    second = [r for r in records if r.offset >= first_ends[r.partition]]
    expected, core_reset = _reloaded_core(old, new, first, second)
    # One monitor changed (churn/x), held on both partitions.
    assert reloaded["detection_monitors_reset"] == core_reset == 2

    view = alert_view(kafka, old.kafka.alert_topic)
    assert not view.open
    alerts = view.committed
    assert len(alerts) == len(set(alerts)), "an alert was committed twice"
    assert set(alerts) == expected

    # Unchanged monitors: exactly the alerts of a run that never reloaded.
    uninterrupted = expected_alerts(old, records)

    def unchanged(keys: set[AlertKey]) -> set[AlertKey]:
        return {k for k in keys if (k[0], k[1]) != CHANGED}

    assert unchanged(set(alerts)) == unchanged(uninterrupted)
    # ... before and after the reload, on a partition holding churn too.
    fraud_alerts = [k for k in unchanged(set(alerts)) if k[0] == "fraud"]
    assert any(k[4] < first_ends[1] for k in fraud_alerts)
    assert any(k[4] >= first_ends[1] for k in fraud_alerts)
    # The changed monitor did change: its alerts differ from the uninterrupted run's.
    changed = set(alerts) - unchanged(set(alerts))
    assert changed != uninterrupted - unchanged(uninterrupted)
    print(f"\n{len(alerts)} alerts, {len(changed)} on the reloaded monitor")
