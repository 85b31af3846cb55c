"""End to end against a real broker: events in, exactly the expected alerts out."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from support import (
    alert_key_of,
    expected_alerts,
    interleave,
    prediction_events,
    settings_for,
    sidecar_thread,
    write_config,
)

from detector.broker import free_port

pytestmark = pytest.mark.integration


def _schema(repo_root: Path) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(
        (repo_root / "schemas" / "drift-alert.v1.json").read_text(encoding="utf-8")
    )
    return schema


def _stream() -> list[dict[str, Any]]:
    return interleave(
        [
            prediction_events("churn", 3000, shift_at=1500),
            prediction_events("fraud", 3000, shift_at=2000, shift=1.5),
            prediction_events("ltv", 2000, shift_at=10_000),  # no shift
        ]
    )


def test_alerts_match_the_pure_core(
    kafka: Any, unique: Any, tmp_path: Path, repo_root: Path
) -> None:
    source = kafka.create_topic(unique("in"), partitions=3)
    events = _stream()
    kafka.produce(source, events, keys=[e["model"].encode() for e in events])
    config = write_config(
        tmp_path / "config.yaml",
        kafka.bootstrap_servers,
        input_topic=source,
        alert_topic=unique("alerts"),
        group_id=unique("group"),
        checkpoint_events=700,
    )
    settings = settings_for(config)
    port = free_port()
    settings = settings.model_copy(
        update={"server": settings.server.model_copy(update={"port": port})}
    )
    expected = expected_alerts(settings, kafka.read_all(source))
    assert expected, "the stream must trigger some alerts"
    ends = kafka.end_offsets(source)

    with sidecar_thread(settings):
        kafka.wait_committed(settings.kafka.group_id, source, ends)
        ready = urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10)
        assert ready.status == 200
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10)
        text = metrics.read().decode()
    emitted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("drift_detector_alerts_emitted_total{")
    )
    assert emitted == len(expected)

    alerts = [r.json() for r in kafka.read_all(settings.kafka.alert_topic)]
    schema = _schema(repo_root)
    for alert in alerts:
        jsonschema.validate(alert, schema)
    keys = [alert_key_of(a) for a in alerts]
    assert len(keys) == len(set(keys)), "an alert appears twice"
    assert set(keys) == expected
    # Alerts are keyed by model.
    for record in kafka.read_all(settings.kafka.alert_topic):
        assert record.key == record.json()["model"].encode()
