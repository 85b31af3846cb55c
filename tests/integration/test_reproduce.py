"""`detector reproduce` on a real broker: a sidecar archives its state while it raises an
alert of every drift type; each alert is re-derived from the audit log, the state archive
and the input topic alone, after the changelog entries it came from were overwritten."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from support import (
    EVERY_DRIFT_DETECTION,
    every_drift_type,
    run_through,
    settings_for,
    sidecar_thread,
    with_audit,
    write_config,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from label_support import DelayedStream

from detector.cli import main
from detector.kafka.archive import SNAPSHOT_HEADER
from detector.kafka.changelog import INPUT_OFFSET_HEADER

pytestmark = pytest.mark.integration

DRIFT_TYPES = [
    "categorical",
    "estimated_performance",
    "fairness",
    "mean",
    "missing_rate",
    "performance",
    "prediction",
    "variance",
]


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _header(record: Any, name: str) -> str | None:
    value = record.headers.get(name)
    return None if value is None else bytes(value).decode()


@pytest.fixture(scope="module")
def archived(session_kafka: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One sidecar run over every_drift_type's 50,000 events on a 2-partition topic,
    archiving at every checkpoint (each 4,000 events)."""
    kafka = session_kafka
    bootstrap_servers = kafka.bootstrap_servers
    tmp = tmp_path_factory.mktemp("reproduce")
    source = kafka.create_topic(unique_name("reproduce-in"), partitions=2)
    events = every_drift_type()
    kafka.produce(source, events, keys=[e["model"].encode() for e in events])
    alert_topic = unique_name("reproduce-alerts")
    config = write_config(
        tmp / "config.yaml",
        bootstrap_servers,
        detection=EVERY_DRIFT_DETECTION,
        input_topic=source,
        alert_topic=alert_topic,
        group_id=unique_name("reproduce-group"),
        checkpoint_events=4000,
    )
    settings = settings_for(with_audit(config, archive_interval_s=0))
    run_through(kafka, settings)
    return kafka, settings, config, [r.json() for r in kafka.read_all(alert_topic)]


def _reproduce(capsys: Any, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["reproduce", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_every_drift_type_is_re_derived(archived: Any, capsys: Any) -> None:
    kafka, settings, config, published = archived
    assert sorted({a["drift_type"] for a in published}) == DRIFT_TYPES
    changelog = kafka.read_all(settings.kafka.changelog)
    archive = kafka.read_all(settings.audit.archive_topic_for(settings.kafka))
    inputs = kafka.read_all(settings.kafka.input_topic)
    audit = [r.json() for r in kafka.read_all(settings.audit.topic_for(settings.kafka))]
    archived_records = {
        r["body"]["snapshot"]: r["body"] for r in audit if r["kind"] == "state_archived"
    }
    for drift_type in DRIFT_TYPES:
        alert = next(a for a in published if a["drift_type"] == drift_type)
        code, out, err = _reproduce(capsys, alert["alert_id"], "--config", str(config), "--json")
        assert (code, err) == (0, ""), (drift_type, out, err)
        outcome = orjson.loads(out)
        assert outcome["reproduced"] is True and outcome["differences"] == []
        replayed = dict(outcome["replayed"], emitted_at=alert["emitted_at"])
        assert replayed == alert
        trigger = alert["trigger"]
        origin = outcome["origin"]
        # From an archived snapshot taken before the trigger, not from the beginning.
        assert 0 < origin["input_offset"] <= trigger["offset"]
        assert outcome["events"] == trigger["offset"] - origin["input_offset"] + 1
        snapshot = [r for r in archive if _header(r, SNAPSHOT_HEADER) == origin["snapshot"]]
        assert len(snapshot) == origin["entries"]
        assert {r.partition for r in snapshot} == {trigger["partition"]}
        assert alert["model"].encode() in {r.key for r in snapshot}
        # Its audit record: what the state said of the model then (every event labelled
        # inline but churn's).
        record = archived_records[origin["snapshot"]]
        events = sum(
            1
            for r in inputs
            if r.partition == trigger["partition"]
            and r.offset < origin["input_offset"]
            and r.json()["model"] == alert["model"]
        )
        counts = record["models"][alert["model"]]
        labelled = 0 if alert["model"] == "churn" else events
        assert (counts["events"], counts["labelled"]) == (events, labelled)
        assert record["input_offset"] == origin["input_offset"] and record["lag"] >= 0
        # The changelog has moved on: its newest entry of the model is from a later checkpoint.
        entries = [
            int(_header(r, INPUT_OFFSET_HEADER) or -1)
            for r in changelog
            if r.partition == trigger["partition"] and r.key == alert["model"].encode()
        ]
        assert max(entries) > trigger["offset"]


def test_the_text_report(archived: Any, capsys: Any) -> None:
    _, _, config, published = archived
    alert = next(a for a in published if a["drift_type"] == "mean")
    code, out, _ = _reproduce(capsys, alert["alert_id"], "--config", str(config))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == (
        f"alert    {alert['alert_id']}: mean drift on churn/{alert['feature']}, input "
        f"partition {alert['trigger']['partition']} offset {alert['trigger']['offset']}"
    )
    assert lines[-1] == (
        "result   reproduced: the same alert_id and evidence (every field but emitted_at)"
    )


def test_what_is_missing_is_named(archived: Any, capsys: Any, tmp_path: Path) -> None:
    kafka, settings, config, published = archived
    code, _, err = _reproduce(capsys, "0000", "--config", str(config))
    assert code == 2
    assert err == (
        "detector: cannot reproduce 0000: alert 0000 is not in the audit log (an alert id of "
        "`detector review list`; records older than audit.retention_days are gone)\n"
    )
    # The archive gone (another, empty topic): the snapshot the audit log names is missing.
    empty = kafka.create_topic(f"{settings.kafka.alert_topic}.gone", partitions=2)
    tree = yaml.safe_load(config.read_text())
    tree["audit"]["archive_topic"] = empty
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text(yaml.safe_dump(tree))
    alert = next(a for a in published if a["drift_type"] == "fairness")
    code, _, err = _reproduce(capsys, alert["alert_id"], "--config", str(elsewhere))
    assert code == 2
    partition = alert["trigger"]["partition"]
    assert err.startswith(f"detector: cannot reproduce {alert['alert_id']}: archive topic ")
    assert f"{empty!r} partition {partition} is empty: snapshot " in err
    assert err.endswith("is gone (audit.retention_days) or the topic was recreated\n")


def test_error_rate_alerts_completed_on_a_labels_topic(
    kafka: Any, unique: Any, tmp_path: Path, capsys: Any
) -> None:
    """All predictions first, then their delayed labels: each performance alert is raised by
    a label record, and re-derived from a snapshot taken while labels were being joined."""
    source = kafka.create_topic(unique("in"), partitions=1)
    labels_topic = kafka.create_topic(unique("labels"), partitions=1)
    alert_topic = unique("alerts")
    config = write_config(
        tmp_path / "config.yaml",
        kafka.bootstrap_servers,
        input_topic=source,
        labels_topic=labels_topic,
        alert_topic=alert_topic,
        group_id=unique("group"),
        checkpoint_events=1000,
        batch_size=500,
    )
    settings = settings_for(with_audit(config, archive_interval_s=0))
    group = settings.kafka.group_id
    stream = DelayedStream(model="credit", seed=11)
    with sidecar_thread(settings):
        kafka.produce(source, stream.predictions, keys=[b"credit"] * len(stream.predictions))
        kafka.wait_committed(group, source, kafka.end_offsets(source))
        kafka.produce(labels_topic, stream.labels, keys=[b"credit"] * len(stream.labels))
        kafka.wait_committed(group, labels_topic, kafka.end_offsets(labels_topic))
    alerts = [r.json() for r in kafka.read_all(alert_topic)]
    assert [a["drift_type"] for a in alerts] == ["performance"]
    alert = alerts[0]
    label_offset = alert["trigger"]["label"]["offset"]
    code, out, err = _reproduce(capsys, alert["alert_id"], "--config", str(config), "--json")
    assert (code, err) == (0, ""), out
    outcome = orjson.loads(out)
    assert outcome["reproduced"] is True
    assert dict(outcome["replayed"], emitted_at=alert["emitted_at"]) == alert
    origin = outcome["origin"]
    # Every prediction was in the snapshot (waiting for its label); labels replayed from it.
    assert origin["input_offset"] == len(stream.predictions)
    assert 0 < origin["labels_offset"] <= label_offset
    assert (outcome["events"], outcome["labels"]) == (0, label_offset - origin["labels_offset"] + 1)
