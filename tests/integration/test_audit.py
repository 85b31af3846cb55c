"""The audit log on a real broker: every alert recorded in its partition's hash chain with
the assignment and release around it, chains that continue across restarts, and
`detector audit verify` finding a forged record."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import orjson
import pytest
from audit_keys import write_keys
from support import (
    drifting_models,
    prediction_events,
    run_through,
    settings_for,
    with_audit,
)

from detector.audit.chain import GENESIS, digest
from detector.audit.signing import Checker
from detector.cli import main

pytestmark = pytest.mark.integration


def _records(kafka: Any, topic: str) -> dict[int, list[dict[str, Any]]]:
    by_partition: dict[int, list[dict[str, Any]]] = {}
    for record in kafka.read_all(topic):
        by_partition.setdefault(record.partition, []).append(orjson.loads(record.value))
    return by_partition


def test_alerts_are_chained_and_verified(
    kafka: Any, unique: Any, tmp_path: Path, capsys: Any
) -> None:
    source, alert_topic, config = drifting_models(
        kafka, unique, tmp_path, 3000, 1500, transactional_id=unique("txn")
    )
    settings = settings_for(config)
    audit_topic = f"{alert_topic}.audit"
    assert settings.audit.topic_for(settings.kafka) == audit_topic
    run_through(kafka, settings)
    published = [r.json() for r in kafka.read_all(alert_topic)]
    assert len(published) >= 2, "the stream must trigger alerts"

    chains = _records(kafka, audit_topic)
    assert sorted(chains) == [0, 1]
    for partition, records in chains.items():
        assert [r["seq"] for r in records] == list(range(len(records)))
        assert [r["chain"] for r in records] == [f"sidecar/{partition}"] * len(records)
        assert records[0]["prev"] == GENESIS
        for before, after in itertools.pairwise(records):
            assert after["prev"] == before["hash"]
        for r in records:
            assert r["hash"] == digest({k: v for k, v in r.items() if k != "hash"})
        kinds = [r["kind"] for r in records]
        assert kinds[0] == "partition_assigned" and kinds[-1] == "partition_released"
        assigned = records[0]["body"]
        assert assigned["committed_offset"] is None and assigned["reason"] == "assigned"
        assert assigned["instance"] == settings.kafka.transactional_id
        assert assigned["config"]["kafka"]["input_topic"] == source
        assert assigned["config_hash"] == digest(assigned["config"])
        assert {"version", "river", "python"} <= set(assigned)
        assert records[-1]["body"]["reason"] == "stopped"
        # The next offset to consume (None: the partition had no event).
        assert records[-1]["body"]["next_offset"] == (kafka.end_offsets(source)[partition] or None)
        # Every alert the partition published, exactly as published, once, in order.
        mine = [a for a in published if a["trigger"]["partition"] == partition]
        assert [r["body"] for r in records if r["kind"] == "alert"] == mine

    # A second run continues each chain from where the first left it.
    more = prediction_events("ltv", 1500, shift_at=500, shift=2.0)
    kafka.produce(source, more, keys=[e["model"].encode() for e in more])
    run_through(kafka, settings)
    again = _records(kafka, audit_topic)
    for partition, records in again.items():
        old = chains[partition]
        assert records[: len(old)] == old
        resumed = records[len(old)]
        assert resumed["kind"] == "partition_assigned" and resumed["seq"] == len(old)
        assert resumed["prev"] == old[-1]["hash"]
        assert resumed["body"]["committed_offset"] == old[-1]["body"]["next_offset"]

    # People's decisions: recorded on the review chain, refused when they mean nothing.
    capsys.readouterr()
    alert_ids = [a["alert_id"] for a in published]
    first, second = alert_ids[0], alert_ids[1]
    review = ["--config", str(config)]
    assert main(["review", "ack", first, "--by", "ana", "--reason", "on it", *review]) == 0
    assert capsys.readouterr().out.startswith(f"alert {first} acknowledged by ana (audit ")
    assert main(["review", "comment", first, "--by", "ben", "--reason", "upstream", *review]) == 0
    assert main(["review", "resolve", first, "--by", "ana", "--reason", "fixed", *review]) == 0
    assert main(["review", "resolve", second, "--by", "ben", "--reason", "seasonal", *review]) == 0
    capsys.readouterr()
    assert main(["review", "ack", first, "--by", "cy", "--reason", "again", *review]) == 2
    assert capsys.readouterr().err.startswith(f"detector: alert {first} is resolved (by ana at 20")
    assert main(["review", "ack", "no-such-alert", "--by", "cy", "--reason", "x", *review]) == 2
    assert capsys.readouterr().err == "detector: no alert no-such-alert in the audit log\n"
    decisions = [r for r in _records(kafka, audit_topic)[0] if r["chain"] == "review"]
    assert [(r["seq"], r["by"], r["body"]["action"], r["body"]["alert_id"]) for r in decisions] == [
        (0, "ana", "ack", first),
        (1, "ben", "comment", first),
        (2, "ana", "resolve", first),
        (3, "ben", "resolve", second),
    ]
    assert main(["review", "list", "--state", "open", *review]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[-1] == f"{len(alert_ids) - 2} alerts"
    assert first not in "".join(listed) and second not in "".join(listed)
    assert main(["review", "list", "--state", "resolved", *review]) == 0
    resolved = capsys.readouterr().out.splitlines()
    assert resolved[-1] == "2 alerts"
    assert any(
        line.startswith(first) and line.endswith("resolve by ana: fixed") for line in resolved
    )

    # A third run: chain sidecar/0 goes on past the review chain's records on partition 0.
    last = prediction_events("ltv", 200, shift_at=10_000)
    kafka.produce(source, last, keys=[e["model"].encode() for e in last])
    run_through(kafka, settings)
    again = _records(kafka, audit_topic)
    again[0] = [r for r in again[0] if r["chain"] == "sidecar/0"]
    capsys.readouterr()  # (the sidecar's log)
    assert main(["audit", "verify", "--config", str(config)]) == 0
    out = capsys.readouterr().out.splitlines()
    total = sum(len(r) for r in again.values()) + len(decisions)
    assert out[-1] == f"audit log {audit_topic}: intact, {total} records in 3 chains"
    assert out[0] == (
        f"review (partition 0): 4 records, seq 0-3, {decisions[0]['at']} to "
        f"{decisions[-1]['at']}; review 4"
    )
    assert out[1].startswith(f"sidecar/0 (partition 0): {len(again[0])} records, seq 0-")

    # A forged record: an alert's severity lowered, the rest (its hash too) copied.
    alerts = [r for r in chains[0] if r["kind"] == "alert"]
    forged = dict(alerts[0], body=dict(alerts[0]["body"], severity="info"))
    kafka.produce(audit_topic, [forged], keys=[b"sidecar/0"], partition=0)
    offset = kafka.end_offsets(audit_topic)[0] - 1
    assert main(["audit", "verify", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"audit chain broken at partition 0 offset {offset} (chain sidecar/0, seq "
        f"{forged['seq']}): its hash does not match its content (edited)\n"
    )


def test_checkpoints_sign_the_heads(kafka: Any, unique: Any, tmp_path: Path, capsys: Any) -> None:
    private, public = write_keys(tmp_path)
    _, alert_topic, config = drifting_models(kafka, unique, tmp_path, 2000, 1000)
    settings = settings_for(with_audit(config, signing_key_file=str(private)))
    run_through(kafka, settings)
    chains = _records(kafka, f"{alert_topic}.audit")
    for records in chains.values():
        # Every checkpoint that moved the chain ended with a signature of its head.
        assert records[-1]["kind"] == "signature"
        assert records[-2]["kind"] == "partition_released"
        assert records[-1]["body"]["signs_hash"] == records[-2]["hash"]
        kinds = [r["kind"] for r in records]
        assert kinds[1] == "signature"  # the assignment's checkpoint
    capsys.readouterr()
    argv = ["audit", "verify", "--config", str(config), "--public-key", str(public)]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()[:-1]
    assert len(lines) == 2
    key_id = Checker.from_file(str(public)).key_id
    for partition, line in enumerate(lines):
        last = len(chains[partition]) - 2  # the release; the signature after it signs it
        assert line.endswith(f"; signed up to seq {last} (key {key_id})")
