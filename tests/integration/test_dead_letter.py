"""Malformed messages go to the dead-letter topic, unchanged, with reason headers."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from support import (
    alert_key_of,
    expected_alerts,
    prediction_events,
    settings_for,
    sidecar_thread,
    write_config,
)

pytestmark = pytest.mark.integration

MAX_BYTES = 2048


def test_malformed_messages_are_dead_lettered(kafka: Any, unique: Any, tmp_path: Path) -> None:
    source = kafka.create_topic(unique("in"), partitions=1)
    good = [orjson.dumps(e) for e in prediction_events("churn", 3000, shift_at=1500)]
    oversized = orjson.dumps({**prediction_events("churn", 1, shift_at=0)[0], "pad": "x" * 5000})
    bad = [
        b"not json at all",
        b"",
        b'{"model": "churn"}',
        b"[1, 2, 3]",
        b'{"event_id": "e", "model": "churn", "timestamp": 1, "features": {}, "prediction": NaN}',
        oversized,
    ]
    values: list[bytes] = []
    bad_at: dict[int, bytes] = {}
    for i, value in enumerate(good):
        values.append(value)
        if i % 500 == 250 and bad:
            bad_at[len(values)] = bad[0]
            values.append(bad.pop(0))
    assert not bad
    kafka.produce(source, values, key=b"k")
    config = write_config(
        tmp_path / "config.yaml",
        kafka.bootstrap_servers,
        input_topic=source,
        alert_topic=unique("alerts"),
        group_id=unique("group"),
        max_message_bytes=MAX_BYTES,
    )
    settings = settings_for(config)
    expected = expected_alerts(settings, kafka.read_all(source))
    assert expected

    with sidecar_thread(settings):
        kafka.wait_committed(settings.kafka.group_id, source, kafka.end_offsets(source))

    letters = kafka.read_all(settings.kafka.dead_letter)
    assert sorted(int(r.headers["original_offset"]) for r in letters) == sorted(bad_at)
    for record in letters:
        offset = int(record.headers["original_offset"])
        original = bad_at[offset]
        assert record.headers["original_topic"] == source.encode()
        assert record.headers["original_partition"] == b"0"
        assert record.headers["reason"]
        assert record.headers["detail"]
        assert record.key == b"k"
        stamp = record.headers["dead_lettered_at"].decode()
        assert datetime.fromisoformat(stamp.replace("Z", "+00:00")).tzinfo is not None
        if len(original) > MAX_BYTES:
            assert record.headers["reason"] == b"oversized"
            assert record.headers["truncated"] == b"true"
            assert record.value == original[:MAX_BYTES]
        else:
            assert record.value == original
            assert "truncated" not in record.headers
    reasons = {r.headers["reason"].decode() for r in letters}
    assert {"not_json", "empty", "missing_field", "not_object", "oversized"} <= reasons

    # The good events were processed all the same.
    alerts = [alert_key_of(r.json()) for r in kafka.read_all(settings.kafka.alert_topic)]
    assert sorted(alerts) == sorted(expected)
