"""Delayed labels on a labels topic, on a real broker: predictions wait in the changelog,
a kill -9 while labels are being joined loses and duplicates nothing, and the performance
alert names the label record that completed it."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from support import (
    SidecarProcess,
    alert_key_of,
    alert_view,
    settings_for,
    without_emitted_at,
    write_config,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from label_support import DelayedStream

from detector.cli import main
from detector.core.engine import PartitionDetectors

pytestmark = pytest.mark.integration


def _expected(settings: Any, predictions: list[Any], labels: list[Any]) -> set[Any]:
    """The pure core over each partition's predictions, then its labels (the order the
    sidecar sees them in here: every prediction is committed before a label is sent)."""
    keys = set()
    for partition in sorted({r.partition for r in predictions}):
        core = PartitionDetectors(settings.detection, settings.kafka.input_topic, partition)
        core.labels_topic = settings.kafka.labels_topic
        mine = [r for r in predictions if r.partition == partition]
        theirs = [r for r in labels if r.partition == partition]
        found = core.process_batch([r.offset for r in mine], [r.value for r in mine]).detections
        found += core.process_labels(
            [r.offset for r in theirs], [r.value for r in theirs]
        ).detections
        keys |= {(d.model, d.feature, d.drift_type, d.partition, d.offset) for d in found}
    return keys


def test_kill_9_while_joining_labels(kafka: Any, unique: Any, tmp_path: Path) -> None:
    source = kafka.create_topic(unique("in"), partitions=2)
    labels_topic = kafka.create_topic(unique("labels"), partitions=2)
    config = write_config(
        tmp_path / "config.yaml",
        kafka.bootstrap_servers,
        input_topic=source,
        labels_topic=labels_topic,
        alert_topic=f"{source}.alerts",
        group_id=f"{source}.group",
        transactional_id=unique("txn"),
        librdkafka={"group.instance.id": unique("member")},
        checkpoint_events=3000,
    )
    settings = settings_for(config)
    assert settings.detection.labels.join
    group = settings.kafka.group_id
    streams = [DelayedStream(model="credit", seed=11), DelayedStream(model="fraud", seed=12)]
    predictions = [e for pair in zip(*(s.predictions for s in streams), strict=True) for e in pair]
    labels = sorted((x for s in streams for x in s.labels), key=lambda x: x["timestamp"])
    log_path = tmp_path / "sidecar.log"
    sidecar = SidecarProcess(config, log_path).start()
    try:
        kafka.produce(source, predictions, keys=[e["model"].encode() for e in predictions])
        kafka.wait_committed(group, source, kafka.end_offsets(source), watch=[sidecar])
        half = len(labels) // 2
        kafka.produce(
            labels_topic, labels[:half], keys=[x["model"].encode() for x in labels[:half]]
        )
        kafka.wait_committed_progress(group, labels_topic, {}, watch=[sidecar])
        sidecar.kill()  # pending predictions in the changelog, labels half joined
        sidecar = SidecarProcess(config, log_path).start()
        rest = labels[half:]
        kafka.produce(labels_topic, rest, keys=[x["model"].encode() for x in rest])
        kafka.wait_committed(group, labels_topic, kafka.end_offsets(labels_topic), watch=[sidecar])
        assert sidecar.terminate() == 0, sidecar.output()[-3000:]
    finally:
        sidecar.cleanup()
    expected = _expected(settings, kafka.read_all(source), kafka.read_all(labels_topic))
    performance = {k for k in expected if k[2] == "performance"}
    assert {k[0] for k in performance} == {"credit", "fraud"}
    view = alert_view(kafka, settings.kafka.alert_topic)
    assert not view.open
    assert not {k: c for k, c in Counter(view.committed).items() if c > 1}
    assert set(view.committed) == expected
    alerts = [r.json() for r in kafka.read_all(settings.kafka.alert_topic)]
    joined = [a for a in alerts if a["drift_type"] == "performance"]
    assert joined and all(a["trigger"]["label"]["topic"] == labels_topic for a in joined)
    for alert in joined:
        label = kafka.read_all(labels_topic)
        record = next(
            r
            for r in label
            if r.partition == alert["trigger"]["label"]["partition"]
            and r.offset == alert["trigger"]["label"]["offset"]
        )
        assert orjson.loads(record.value)["event_id"] == alert["trigger"]["event_id"]
        assert alert_key_of(alert) in performance

    # The backtest of both topics gives the very alerts the sidecar published: the Kafka
    # record times put every prediction before the labels here, as the sidecar saw them.
    out = tmp_path / "replayed.jsonl"
    argv = ["replay", f"kafka://{source}", "--labels", f"kafka://{labels_topic}"]
    assert main([*argv, "--config", str(config), "--json", str(out)]) == 0
    published = [r.value for r in kafka.read_all(settings.kafka.alert_topic)]
    assert without_emitted_at(out.read_bytes().splitlines()) == without_emitted_at(published)
