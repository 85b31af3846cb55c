"""SIGTERM: the in-flight work is checkpointed, then the process exits 0."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support import (
    SidecarProcess,
    alert_key_of,
    expected_alerts,
    interleave,
    prediction_events,
    settings_for,
    write_config,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("guarantee", ["exactly-once", "at-least-once"])
def test_sigterm_commits_offsets_only_with_their_alerts(
    kafka: Any, unique: Any, tmp_path: Path, guarantee: str
) -> None:
    source = kafka.create_topic(unique("in"), partitions=2)
    streams = [
        prediction_events("churn", 4000, shift_at=1200),
        prediction_events("fraud", 4000, shift_at=2500),
    ]
    first = interleave([s[:1500] for s in streams])
    second = interleave([s[1500:] for s in streams])
    config = write_config(
        tmp_path / "config.yaml",
        kafka.bootstrap_servers,
        input_topic=source,
        alert_topic=unique("alerts"),
        group_id=unique("group"),
        processing_guarantee=guarantee,
        checkpoint_events=500,
    )
    settings = settings_for(config)
    group, alert_topic = settings.kafka.group_id, settings.kafka.alert_topic
    sidecar = SidecarProcess(config, tmp_path / "sidecar.log").start()
    try:
        kafka.produce(source, first, keys=[e["model"].encode() for e in first])
        kafka.wait_committed(group, source, kafka.end_offsets(source))
        # Idle after the first part: everything below the committed offsets is delivered.
        committed = kafka.committed(group, source)
        expected = expected_alerts(settings, kafka.read_all(source))
        alerts = [alert_key_of(r.json()) for r in kafka.read_all(alert_topic)]
        assert sorted(alerts) == sorted(k for k in expected if k[4] < committed[k[3]])

        # Stop in the middle of the second part.
        kafka.produce(source, second, keys=[e["model"].encode() for e in second])
        assert sidecar.terminate() == 0, sidecar.output()
    finally:
        sidecar.cleanup()
    committed = kafka.committed(group, source)
    expected = expected_alerts(settings, kafka.read_all(source))
    alerts = [alert_key_of(r.json()) for r in kafka.read_all(alert_topic)]
    # Alerts of every committed event are there, none of an uncommitted one, none twice.
    assert sorted(alerts) == sorted(k for k in expected if k[4] < committed.get(k[3], 0))
    assert '"sidecar stopped"' in sidecar.output() or "sidecar stopped" in sidecar.output()
