"""`detector replay kafka://...` against a real broker: the very alerts the sidecar published."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from support import (
    interleave,
    prediction_events,
    settings_for,
    sidecar_thread,
    without_emitted_at,
    write_config,
)

from detector.cli import main

pytestmark = pytest.mark.integration

_DEC_1_MS = 1_796_083_200_000  # 2026-12-01T00:00:00Z


def _stream() -> list[dict[str, Any]]:
    return interleave(
        [
            prediction_events("churn", 3000, shift_at=1500),
            prediction_events("fraud", 3000, shift_at=2000, shift=1.5),
        ]
    )


class TestReplayOfATopic:
    def test_same_alerts_byte_for_byte_as_the_sidecar(
        self, kafka: Any, unique: Any, tmp_path: Path, capsys: Any
    ) -> None:
        source = kafka.create_topic(unique("in"), partitions=2)
        events: list[Any] = _stream()
        # A malformed record in the middle: dead-lettered by both, offsets move on.
        events.insert(1000, b"{not json")
        keys = [e["model"].encode() if isinstance(e, dict) else b"bad" for e in events]
        kafka.produce(source, events, keys=keys)
        config = write_config(
            tmp_path / "config.yaml",
            kafka.bootstrap_servers,
            input_topic=source,
            alert_topic=unique("alerts"),
            group_id=unique("group"),
        )
        settings = settings_for(config)
        with sidecar_thread(settings):
            kafka.wait_committed(settings.kafka.group_id, source, kafka.end_offsets(source))
        published = [r.value for r in kafka.read_all(settings.kafka.alert_topic)]
        assert len(published) >= 2, "the stream must trigger alerts"

        out = tmp_path / "alerts.jsonl"
        summary = tmp_path / "summary.json"
        code = main(
            [
                "replay",
                f"kafka://{source}",
                "--config",
                str(config),
                "--json",
                str(out),
                "--summary",
                str(summary),
            ]
        )
        assert code == 0
        replayed = out.read_bytes().splitlines()
        assert without_emitted_at(replayed) == without_emitted_at(published)
        totals = orjson.loads(summary.read_bytes())
        assert totals["records"] == len(events)
        assert totals["rejected_by_reason"] == {"not_json": 1}
        assert totals["events"] == 6000
        table = capsys.readouterr().out
        assert "model churn: " in table and "model fraud: " in table

    def test_a_range_reads_only_its_records(self, kafka: Any, unique: Any, tmp_path: Path) -> None:
        from confluent_kafka import Producer

        source = kafka.create_topic(unique("in"), partitions=2)
        events = prediction_events("fraud", 400, shift_at=10_000)
        producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
        for i, event in enumerate(events):  # record times: one second apart from 2026-12-01
            producer.produce(
                source, orjson.dumps(event), partition=1, timestamp=_DEC_1_MS + i * 1000
            )
        assert producer.flush(30) == 0
        summary = tmp_path / "summary.json"
        code = main(
            [
                "replay",
                f"kafka://{source}?partitions=1&from=100&to=350",
                "--bootstrap-servers",
                kafka.bootstrap_servers,
                "--summary",
                str(summary),
            ]
        )
        assert code == 0
        assert orjson.loads(summary.read_bytes())["records"] == 250
        # Times select by record timestamp: [00:01:00, 00:05:00) is records 60..299.
        code = main(
            [
                "replay",
                f"kafka://{source}?from=2026-12-01T00:01:00Z&to=2026-12-01T00:05:00%2B00:00",
                "--bootstrap-servers",
                kafka.bootstrap_servers,
                "--summary",
                str(summary),
            ]
        )
        assert code == 0
        assert orjson.loads(summary.read_bytes())["records"] == 240
        # The whole partition, and the empty partition 0.
        code = main(
            [
                "replay",
                f"kafka://{source}?partitions=0,1",
                "--bootstrap-servers",
                kafka.bootstrap_servers,
                "--summary",
                str(summary),
            ]
        )
        assert code == 0
        assert orjson.loads(summary.read_bytes())["records"] == 400

    def test_unknown_topic_and_partition_are_clear_errors(
        self, kafka: Any, unique: Any, capsys: Any
    ) -> None:
        missing = unique("missing")
        code = main(
            ["replay", f"kafka://{missing}", "--bootstrap-servers", kafka.bootstrap_servers]
        )
        assert code == 2
        assert capsys.readouterr().err == f"detector: kafka://{missing}: topic: no such topic\n"
        source = kafka.create_topic(unique("in"), partitions=1)
        code = main(
            [
                "replay",
                f"kafka://{source}?partitions=3",
                "--bootstrap-servers",
                kafka.bootstrap_servers,
            ]
        )
        assert code == 2
        assert capsys.readouterr().err == (
            f"detector: kafka://{source}: partitions: 3 is not a partition of the topic "
            "(it has 1)\n"
        )
