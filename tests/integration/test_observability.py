"""Observability of a running sidecar: /metrics, /healthz, /readyz, JSON logs, no secrets.

Every expected value is exact and computed independently: counts from the stream the test
writes, alerts from the alert topic (transaction markers applied by the test, see
``support.alert_view``) and from the pure core run over the same records.

Alerts and dead letters are counted when their checkpoint commits, a moment after the group's
offsets move; the runner's debug ``checkpoint`` log line (written after the metrics of that
checkpoint are updated) is the event the tests wait for before scraping.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from support import (
    DENSE_DETECTION,
    SidecarProcess,
    alert_view,
    by_label,
    config_with_server,
    http_get,
    prediction_events,
    scrape,
    settings_for,
    wait_checkpointed,
)

from detector.broker import free_port
from detector.core.engine import PartitionDetectors
from detector.core.events import REASONS
from detector.core.records import InputRecord

pytestmark = pytest.mark.integration

MAX_BYTES = 2048
DRIFT_TYPES = {"mean", "variance", "categorical", "missing_rate", "prediction", "performance"}


def core_replay(settings: Any, records: Sequence[Any]) -> dict[int, Any]:
    """The pure core over the records as read back from Kafka, one state per partition."""
    topic = settings.kafka.input_topic
    out: dict[int, Any] = {}
    for partition in sorted({r.partition for r in records}):
        core = PartitionDetectors(settings.detection, topic, partition)
        core.set_max_message_bytes(settings.kafka.max_message_bytes)
        batch = [
            InputRecord(topic, r.partition, r.offset, r.value)
            for r in records
            if r.partition == partition
        ]
        out[partition] = (core, core.process(batch))
    return out


# --- metrics and health ----------------------------------------------------------------------


def _with_bad(
    good: list[dict[str, Any]], bad: list[tuple[bytes | None, str]], every: int
) -> tuple[list[bytes | None], list[str]]:
    """Good events with one bad value inserted every ``every`` events; (values, reasons)."""
    values: list[bytes | None] = []
    reasons: list[str] = []
    pending = list(bad)
    for i, event in enumerate(good):
        values.append(orjson.dumps(event))
        if i % every == every // 2 and pending:
            value, reason = pending.pop(0)
            values.append(value)
            reasons.append(reason)
    assert not pending
    return values, reasons


def test_metrics_and_health_match_the_stream(kafka: Any, unique: Any, tmp_path: Path) -> None:
    source = kafka.create_topic(unique("in"), partitions=2)
    churn = prediction_events("churn", 2000, shift_at=1000)
    fraud = prediction_events("fraud", 2000, shift_at=1200, shift=1.5)
    nan_event = (
        b'{"event_id": "n", "model": "fraud", "timestamp": 1, "features": {}, "prediction": NaN}'
    )
    oversized = orjson.dumps({**fraud[0], "event_id": "big", "pad": "x" * (2 * MAX_BYTES)})
    switched = orjson.dumps({**fraud[5], "event_id": "sw", "features": {"x": "high"}})
    bad0: list[tuple[bytes | None, str]] = [
        (b"not json", "not_json"),
        (b"", "empty"),
        (b"[1, 2]", "not_object"),
        (b'{"model": "churn"}', "missing_field"),
    ]
    bad1: list[tuple[bytes | None, str]] = [
        (nan_event, "non_finite"),
        (oversized, "oversized"),
        (orjson.dumps({**fraud[1], "schema_version": 2}), "unknown_schema_version"),
        (switched, "feature_type_changed"),
        (b"{,}", "not_json"),
    ]
    values0, reasons0 = _with_bad(churn, bad0, 400)
    values1, reasons1 = _with_bad(fraud, bad1, 350)
    kafka.produce(source, values0, key=b"churn", partition=0)
    kafka.produce(source, values1, key=b"fraud", partition=1)
    port = free_port()
    config = config_with_server(
        tmp_path / "config.yaml",
        kafka.bootstrap_servers,
        port=port,
        detection=DENSE_DETECTION,
        input_topic=source,
        alert_topic=unique("alerts"),
        group_id=unique("group"),
        max_message_bytes=MAX_BYTES,
    )
    settings = settings_for(config)
    records = kafka.read_all(source)
    ends = kafka.end_offsets(source)
    assert ends == {0: len(values0), 1: len(values1)}

    # Expected, independently of the sidecar.
    bad_reasons = Counter(reasons0 + reasons1)
    replay = core_replay(settings, records)
    core_reasons = Counter(r.reason for _, res in replay.values() for r in res.rejections)
    assert core_reasons == bad_reasons  # the core agrees with the stream's construction
    core_alerts = Counter(
        (d.model, d.drift_type) for _, res in replay.values() for d in res.detections
    )
    assert {model for model, _ in core_alerts} == {"churn", "fraud"}, core_alerts
    active = sum(core.active_detectors for core, _ in replay.values())

    sidecar = SidecarProcess(config, tmp_path / "sidecar.log").start()
    try:
        kafka.wait_committed(settings.kafka.group_id, source, ends, watch=[sidecar])
        wait_checkpointed(sidecar, ends)
        samples = scrape(port)
        health = http_get(port, "/healthz")
        ready = http_get(port, "/readyz")
        assert sidecar.terminate() == 0, sidecar.output()[-3000:]
    finally:
        sidecar.cleanup()

    processed = by_label(samples, "drift_detector_events_processed_total", "model")
    assert processed == {"churn": len(churn), "fraud": len(fraud)}
    consumed = by_label(samples, "drift_detector_events_consumed_total", "topic", "partition")
    assert consumed == {(source, "0"): len(values0), (source, "1"): len(values1)}
    letters = by_label(samples, "drift_detector_dead_letters_total", "reason")
    assert letters == dict(bad_reasons)

    view = alert_view(kafka, settings.kafka.alert_topic)
    assert not view.open and not view.aborted
    from_topic = Counter((key[0], key[2]) for key in view.committed)
    alerts = by_label(samples, "drift_detector_alerts_emitted_total", "model", "drift_type")
    assert alerts == dict(from_topic) == dict(core_alerts)

    lag = by_label(samples, "drift_detector_consumer_lag", "topic", "partition")
    assert lag == {(source, "0"): 0.0, (source, "1"): 0.0}
    assert samples["drift_detector_active_detectors"][()] == active
    assert samples["drift_detector_checkpoint_duration_seconds_count"][()] > 0
    assert samples["drift_detector_restore_duration_seconds_count"][()] > 0
    assert samples["drift_detector_processing_latency_seconds_count"][()] > 0
    assert samples["drift_detector_expired_detectors_total"][()] == 0
    assert by_label(samples, "drift_detector_limit_rejections_total", "limit") == {}

    # Bounded label sets: every label value comes from the assignment or the code, never
    # from an event (ids, free text).
    event_ids = {e["event_id"] for e in churn + fraud} | {"n", "big", "sw"}
    allowed = {
        "topic": {source},
        "partition": {"0", "1"},
        "model": {"churn", "fraud"},
        "reason": set(REASONS),
        "drift_type": DRIFT_TYPES,
        "limit": {"max_models", "max_features"},
    }
    for name, series in samples.items():
        if not name.startswith("drift_detector_"):
            continue
        for labels in series:
            for key, value in labels:
                if key == "le":  # histogram buckets
                    continue
                assert key in allowed, (name, key)
                assert value in allowed[key], (name, key, value)
                assert value not in event_ids, (name, key, value)

    status, content_type, body = health
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body)["status"] == "ok"
    status, content_type, body = ready
    assert (status, content_type) == (200, "application/json")
    readiness = json.loads(body)
    assert readiness["status"] == "ok" and readiness["reasons"] == []
    assert readiness["joined"] is True
    assert {name: (p["restored"], p["lag"]) for name, p in readiness["partitions"].items()} == {
        f"{source}/0": (True, 0),
        f"{source}/1": (True, 0),
    }


# --- logs ------------------------------------------------------------------------------------


@dataclass
class _Process(SidecarProcess):
    """SidecarProcess with extra flags, stderr (the log) and stdout kept apart."""

    args: tuple[str, ...] = ()
    stdout_path: Path | None = None
    env: dict[str, str] | None = None

    def start(self, wait_ready: bool = True) -> _Process:
        cmd = [sys.executable, "-m", "detector", "run", "--config", str(self.config), *self.args]
        env = self.env if self.env is not None else {}
        assert self.stdout_path is not None
        with open(self.log_path, "ab") as err, open(self.stdout_path, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        if wait_ready:
            self.wait_event("sidecar starting")
        return self


def _child_env() -> dict[str, str]:
    """The test's environment minus anything that would override the config file."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "DETECTOR_"))}


def test_log_lines_are_json_objects_with_fields_as_keys(
    kafka: Any, unique: Any, tmp_path: Path
) -> None:
    source = kafka.create_topic(unique("in"), partitions=1)
    events = prediction_events("churn", 1500, shift_at=700)
    values: list[bytes | None] = [orjson.dumps(e) for e in events]
    values.insert(300, b"\xff\xfe not json")
    kafka.produce(source, values, key=b"churn")
    # The file says console; the flag must win.
    config = config_with_server(
        tmp_path / "config.yaml",
        kafka.bootstrap_servers,
        log={"level": "debug", "format": "console"},
        detection=DENSE_DETECTION,
        input_topic=source,
        alert_topic=unique("alerts"),
        group_id=unique("group"),
    )
    settings = settings_for(config)
    stderr, stdout = tmp_path / "stderr.log", tmp_path / "stdout.log"
    sidecar = _Process(
        config, stderr, args=("--log-format", "json"), stdout_path=stdout, env=_child_env()
    )
    sidecar.start()
    try:
        kafka.wait_committed(
            settings.kafka.group_id, source, kafka.end_offsets(source), watch=[sidecar]
        )
        assert sidecar.terminate() == 0, sidecar.output()[-3000:]
    finally:
        sidecar.cleanup()

    assert stdout.read_bytes() == b""
    lines = stderr.read_bytes().splitlines()
    assert lines
    records = []
    for line in lines:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise AssertionError(f"stderr line is not JSON: {line[:300]!r}") from None
        assert isinstance(record, dict), line
        assert {"event", "level", "timestamp"} <= record.keys(), record
        records.append(record)
    names = [r["event"] for r in records]
    assert names[-1] == "sidecar stopped"
    drift = [r for r in records if r["event"] == "drift detected"]
    assert drift, names
    for record in drift:
        assert record["model"] == "churn"
        assert record["partition"] == 0
        assert isinstance(record["feature"], str) and record["feature"]
        assert isinstance(record["offset"], int)
        assert record["drift_type"] in DRIFT_TYPES
    lettered = [r for r in records if r["event"] == "dead-lettered"]
    assert [(r["reason"], r["partition"], r["offset"]) for r in lettered] == [("not_json", 0, 300)]


def test_librdkafka_log_lines_are_json_too(kafka: Any, unique: Any, tmp_path: Path) -> None:
    """A configuration librdkafka warns about (a SASL mechanism without a SASL protocol)."""
    source = kafka.create_topic(unique("in"), partitions=1)
    config = config_with_server(
        tmp_path / "config.yaml",
        kafka.bootstrap_servers,
        input_topic=source,
        alert_topic=unique("alerts"),
        group_id=unique("group"),
        librdkafka={"sasl.mechanism": "PLAIN"},
    )
    stderr, stdout = tmp_path / "stderr.log", tmp_path / "stdout.log"
    sidecar = _Process(
        config, stderr, args=("--log-format", "json"), stdout_path=stdout, env=_child_env()
    )
    try:
        sidecar.start()
        sidecar.wait_event("restore done")
        assert sidecar.terminate() == 0, sidecar.output()[-3000:]
    finally:
        sidecar.cleanup()
    lines = stderr.read_bytes().splitlines()
    assert any(b"sidecar stopped" in line for line in lines)
    not_json = [line for line in lines if not line.startswith(b"{")]
    assert not not_json, not_json[:3]


# --- secrets ---------------------------------------------------------------------------------

SECRET = "s3cr3t-Value-91f2"


@pytest.mark.parametrize("case", ["runs", "fails-at-start", "missing-secret"])
def test_secrets_never_reach_the_output(kafka: Any, unique: Any, tmp_path: Path, case: str) -> None:
    """A password read from a file or the environment appears in no output of the process.

    ``runs``: PLAINTEXT to the broker (librdkafka ignores the SASL settings), debug logging,
    a short stream with a bad event, SIGTERM. ``fails-at-start``: SASL_SSL with a CA file
    that does not exist, so the Kafka clients cannot be created. ``missing-secret``: one
    secret reference cannot be resolved (exit 2) while another one could.
    """
    secret_file = tmp_path / "password"
    secret_file.write_text(SECRET + "\n", encoding="utf-8")
    env = {**_child_env(), "TEST_SECRET": SECRET}
    source = kafka.create_topic(unique("in"), partitions=1)
    librdkafka: dict[str, Any] = {
        "sasl.mechanism": "PLAIN",
        "sasl.username": "drift",
        "sasl.password": f"file:{secret_file}",
        "ssl.key.password": "env:TEST_SECRET",
    }
    if case == "runs":
        librdkafka["security.protocol"] = "PLAINTEXT"
    elif case == "fails-at-start":
        librdkafka["security.protocol"] = "SASL_SSL"
        librdkafka["ssl.ca.location"] = str(tmp_path / "missing-ca.pem")
    else:
        librdkafka["security.protocol"] = "SASL_SSL"
        librdkafka["sasl.oauthbearer.client.secret"] = "env:TEST_SECRET_NOT_SET"
    config = config_with_server(
        tmp_path / "config.yaml",
        kafka.bootstrap_servers,
        input_topic=source,
        alert_topic=unique("alerts"),
        group_id=unique("group"),
        librdkafka=librdkafka,
    )
    stderr, stdout = tmp_path / "stderr.log", tmp_path / "stdout.log"
    sidecar = _Process(config, stderr, stdout_path=stdout, env=env)
    try:
        if case == "runs":
            sidecar.start()
            values = [orjson.dumps(e) for e in prediction_events("m", 200, shift_at=10_000)]
            kafka.produce(source, [*values, b"{bad"], key=b"m")
            group = settings_for(config).kafka.group_id
            kafka.wait_committed(group, source, kafka.end_offsets(source), watch=[sidecar])
            assert sidecar.terminate() == 0, sidecar.output()[-3000:]
        else:
            sidecar.start(wait_ready=False)
            code = sidecar.wait()
            assert code == (2 if case == "missing-secret" else 1), sidecar.output()[-3000:]
    finally:
        sidecar.cleanup()
    output = stderr.read_bytes() + stdout.read_bytes()
    assert output, "the process said nothing"
    assert SECRET.encode() not in output
    assert SECRET[:8].encode() not in output  # nor a prefix of it
    if case == "missing-secret":
        assert b"TEST_SECRET_NOT_SET" in output  # names the variable, not any value
