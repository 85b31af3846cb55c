"""The `detector` command as a user runs it: broker, demo, config errors."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _detector(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "detector", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


class TestBrokerCommand:
    def test_prints_a_working_address_and_stops_on_sigterm(self) -> None:
        """`detector broker` prints host:port of a broker that answers, and exits 0 on SIGTERM."""
        proc = _detector("broker")
        try:
            assert proc.stdout is not None
            address = proc.stdout.readline().strip()
            host, port = address.rsplit(":", 1)
            assert host == "127.0.0.1" and int(port) > 0
            metadata = AdminClient({"bootstrap.servers": address}).list_topics(timeout=30)
            assert metadata.brokers
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            proc.kill()
            proc.wait()


class TestDemoCommand:
    def test_demo_detects_every_injected_drift(self) -> None:
        """`detector demo` (what `make run` runs) exits 0 having detected all five drifts,
        printing each alert line and the summary table."""
        env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
        proc = _detector("demo", "--events", "8000", env=env)
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, out + err
        assert out.count(" drift on ") == 5, out
        assert "MISSED" not in out and "false" not in out.split("summary:")[1], out
        assert "events processed: 24,000   alerts: 5   dead letters: 0" in out, out
        assert re.search(
            r"audit log demo\.drift-alerts\.audit: intact, \d+ records \(5 alerts\)", out
        )
        assert (
            "alerts re-derived from the state archive and the input topic: 5 of 5 the same "
            "(detector reproduce ALERT_ID)" in out
        ), out


class TestRunCommand:
    def test_bad_config_fails_at_start_naming_file_and_key(self, tmp_path: Path) -> None:
        """A bad config stops `detector run` at once with exit 2, naming file and key path."""
        config = tmp_path / "bad.yaml"
        config.write_text("detection:\n  block_size: -3\n")
        proc = _detector("run", "--config", str(config))
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2
        assert f"{config}" in err
        assert "detection.block_size: Input should be greater than or equal to 1 (got -3)" in err
