"""Changelog restore: uncommitted snapshots are ignored, unreadable ones stop the sidecar."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from support import (
    DENSE_DETECTION,
    SidecarProcess,
    alert_key_of,
    expected_alerts,
    settings_for,
    sidecar_thread,
    wavy_events,
    write_config,
)

from detector.core.state import FORMAT_VERSION, MAGIC, encode_model
from detector.kafka.changelog import INPUT_OFFSET_HEADER

pytestmark = pytest.mark.integration


def _setup(kafka: Any, unique: Any, tmp_path: Path) -> tuple[Any, str, list[dict[str, Any]]]:
    source = kafka.create_topic(unique("in"), partitions=1)
    config = write_config(
        tmp_path / "config.yaml",
        kafka.bootstrap_servers,
        detection=DENSE_DETECTION,
        input_topic=source,
        alert_topic=unique("alerts"),
        group_id=unique("group"),
    )
    return settings_for(config), source, wavy_events("m0", 4000, period=350)


def _run_until_caught_up(kafka: Any, settings: Any, source: str) -> None:
    with sidecar_thread(settings):
        kafka.wait_committed(settings.kafka.group_id, source, kafka.end_offsets(source))


def test_snapshot_of_an_aborted_checkpoint_is_ignored(
    kafka: Any, unique: Any, tmp_path: Path
) -> None:
    settings, source, events = _setup(kafka, unique, tmp_path)
    kafka.produce(source, events[:2000], key=b"m0")
    _run_until_caught_up(kafka, settings, source)
    committed = kafka.committed(settings.kafka.group_id, source)[0]

    # A zombie's checkpoint: a snapshot for offsets beyond the committed one, aborted.
    # Kafka hides it from read_committed readers; Tansu does not, and the restore must
    # recognise it by its input_offset header. Its value would not even decode.
    zombie = Producer(
        {"bootstrap.servers": kafka.bootstrap_servers, "transactional.id": unique("zombie")}
    )
    zombie.init_transactions(30)
    zombie.begin_transaction()
    zombie.produce(
        settings.kafka.changelog,
        key=b"m0",
        value=b"not a snapshot",
        partition=0,
        headers=[(INPUT_OFFSET_HEADER, str(committed + 500).encode())],
    )
    zombie.flush(30)
    zombie.abort_transaction(30)

    kafka.produce(source, events[2000:], key=b"m0")
    _run_until_caught_up(kafka, settings, source)
    expected = expected_alerts(settings, kafka.read_all(source))
    alerts = [alert_key_of(r.json()) for r in kafka.read_all(settings.kafka.alert_topic)]
    assert len(expected) > 5
    assert sorted(alerts) == sorted(expected)


class _Call:
    """Pickles as ``func(*args)``: a changelog entry written to run code in the sidecar."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.reduced = (func, args)

    def __reduce__(self) -> tuple[Any, ...]:
        return self.reduced


def _restart_over(kafka: Any, unique: Any, tmp_path: Path, value: bytes) -> str:
    """Run to a checkpoint, write ``value`` as model m0's changelog entry, restart: the
    sidecar must stop with exit code 3 without processing anything. Its output."""
    settings, source, events = _setup(kafka, unique, tmp_path)
    kafka.produce(source, events[:1000], key=b"m0")
    _run_until_caught_up(kafka, settings, source)
    committed = kafka.committed(settings.kafka.group_id, source)[0]
    kafka.produce(
        settings.kafka.changelog,
        [value],
        key=b"m0",
        partition=0,
    )
    kafka.produce(source, events[1000:1100], key=b"m0")

    config = tmp_path / "config.yaml"
    sidecar = SidecarProcess(config, tmp_path / "sidecar.log").start()
    try:
        code = sidecar.wait(timeout_s=120)
    finally:
        sidecar.cleanup()
    output = sidecar.output()
    assert code == 3, output[-3000:]  # a deliberate stop, one line, no traceback
    assert "detector: StateFormatError: changelog entry for model 'm0'" in output, output[-3000:]
    # It did not start fresh: nothing past the committed offset was processed.
    assert kafka.committed(settings.kafka.group_id, source)[0] == committed
    return output


@pytest.mark.parametrize(
    "value",
    [b"garbage", MAGIC + bytes([FORMAT_VERSION + 41]) + b"\x00" * 16],
    ids=["corrupt", "unknown-format-version"],
)
def test_unreadable_changelog_entry_stops_the_sidecar(
    kafka: Any, unique: Any, tmp_path: Path, value: bytes
) -> None:
    _restart_over(kafka, unique, tmp_path, value)


def test_hostile_changelog_entry_is_refused_not_run(
    kafka: Any, unique: Any, tmp_path: Path
) -> None:
    """An entry that would run a command when unpickled stops the sidecar (exit code 3,
    naming the refused global); the command never runs."""
    marker = tmp_path / "ran"
    value = encode_model(_Call(subprocess.Popen, ["touch", str(marker)]))
    output = _restart_over(kafka, unique, tmp_path, value)
    assert "refers to subprocess.Popen" in output, output[-3000:]
    assert not marker.exists()
