"""`detector config explain`: every detector, its parameters and where each value comes from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from detector.cli import main
from detector.config import ConfigError
from detector.tuning.explain import explain

CONFIG = """\
detection:
  reference_size: 1024
  models:
    fraud:
      detector: {name: ADWIN, params: {delta: 0.0001}}
      ignore_features: [user_id]
      features:
        amount: {detector: {name: ADWIN, params: {delta: 3.0e-6, clock: 4}}}
        __prediction__: {detector: {name: PageHinkley, params: {threshold: 80}}}
        country: {kind: categorical}
calibration:
  budget: 1 per week
  rate: 50/s
  source: ref.jsonl
  created_at: "2026-12-06T00:00:00Z"
  detectors:
    models.fraud.features.amount.detector:
      false_alarms_per_event: 1.1e-9
      interval: [5.0e-10, 2.0e-9]
      expected_delay_events: 420
"""


def _rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "detector.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


class TestExplain:
    def test_defaults_section(self, config: Path) -> None:
        rows = _rows(explain(str(config)))
        assert rows[2] == [
            "defaults",
            "(every",
            "model",
            "and",
            "feature",
            "the",
            "file",
            "does",
            "not",
            "name)",
        ]
        assert rows[3] == ["detector", "ADWIN", "default"]
        assert rows[4] == ["delta", "=", "1e-05", "default"]
        assert rows[5] == ["clock", "=", "4", "default"]
        assert rows[6] == ["max_buckets", "=", "5", "River", "default"]
        assert rows[9] == ["reference_size", "=", "1024", "override", "(detection.reference_size)"]
        assert rows[10] == ["window_size", "=", "512", "default"]

    def test_model_override_shows_what_it_drops(self, config: Path) -> None:
        """A model's detector replaces the default spec whole: its clock is River's 32."""
        text = explain(str(config), models=["fraud"])
        block = text.split("model fraud\n", 1)[1]
        rows = _rows(block)
        assert rows[1] == ["detector", "ADWIN", "override", "(detection.models.fraud.detector)"]
        assert rows[2] == ["delta", "=", "0.0001", "override", "(detection.models.fraud.detector)"]
        assert rows[3] == ["clock", "=", "32", "River", "default"]
        assert ["ignored", "features:", "user_id"] in rows

    def test_feature_origins(self, config: Path) -> None:
        text = explain(str(config))
        lines = text.splitlines()
        amount = lines.index("  feature amount")
        assert _rows(lines[amount + 1]) == [
            ["detector", "ADWIN", "calibrated", "(detection.models.fraud.features.amount.detector)"]
        ]
        assert _rows(lines[amount + 2])[0][:4] == ["delta", "=", "3e-06", "calibrated"]
        assert lines[amount + 7].strip() == (
            "# calibrated to 1.1e-09 false alarms per event (95% interval 5e-10..2e-09) for a "
            "budget of 1 per week at 50/s, expected delay 420 events"
        )
        prediction = lines.index("  prediction")
        assert _rows(lines[prediction + 1])[0][:3] == ["detector", "PageHinkley", "override"]
        assert "  feature country (kind categorical: override)" in lines
        assert "  feature user_id" not in lines

    def test_a_model_not_in_the_file(self, config: Path) -> None:
        text = explain(str(config), models=["credit"])
        assert text.endswith("model credit: not in the file; it runs with the defaults above\n")


class TestExplainCommand:
    def test_prints_the_explanation(self, config: Path, capsys: Any) -> None:
        assert main(["config", "explain", str(config), "--model", "fraud"]) == 0
        assert capsys.readouterr().out == explain(str(config), models=["fraud"])

    def test_bad_file_fails_as_detector_run_does(self, tmp_path: Path, capsys: Any) -> None:
        bad = tmp_path / "bad.yaml"
        bad.write_text(
            "detection:\n  models:\n    fraud:\n      detector: {name: ADWIN, params: {delta: 2}}\n"
        )
        assert main(["config", "explain", str(bad)]) == 2
        expected = (
            f"{bad}: detection.models.fraud.detector.params: expected valid arguments for "
            "river.drift.ADWIN (ADWIN delta must be in (0, 1), got 2)"
        )
        assert capsys.readouterr().err == f"detector: configuration error: {expected}\n"
        with pytest.raises(ConfigError) as caught:
            explain(str(bad))
        assert str(caught.value) == expected
