"""Loading and validating configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from detector.config import ConfigError, load_settings


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "detector.yaml"
    path.write_text(text)
    return path


class TestLoadSettings:
    def test_defaults(self) -> None:
        """With no file, defaults apply: ADWIN, exactly-once, <input>.dlq."""
        settings = load_settings(env={})
        assert settings.detection.detector.name == "ADWIN"
        assert settings.kafka.processing_guarantee == "exactly-once"
        assert settings.kafka.dead_letter == "predictions.dlq"

    def test_precedence(self, tmp_path: Path) -> None:
        """Flags beat the environment, which beats the file."""
        path = _write(tmp_path, "kafka:\n  input_topic: from-file\n  group_id: file-group\n")
        settings = load_settings(
            path,
            env={"DETECTOR_GROUP_ID": "env-group", "DETECTOR_INPUT_TOPIC": "env-topic"},
            overrides={("kafka", "input_topic"): "flag-topic"},
        )
        assert settings.kafka.input_topic == "flag-topic"
        assert settings.kafka.group_id == "env-group"

    def test_per_feature_overrides(self, tmp_path: Path) -> None:
        """Models and features may override detector, kind and ignore."""
        path = _write(
            tmp_path,
            "detection:\n  models:\n    fraud:\n      ignore_features: [debug_id]\n"
            "      features:\n        zip:\n          kind: categorical\n"
            "        amount:\n          detector: {name: PageHinkley, params: {threshold: 80}}\n",
        )
        det = load_settings(path, env={}).detection
        assert det.feature_kind("fraud", "zip") == "categorical"
        assert det.feature_detector("fraud", "amount").name == "PageHinkley"
        assert det.feature_detector("fraud", "other").params == det.detector.params
        assert det.ignored("fraud") == frozenset({"debug_id"})

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            (
                "detection:\n  models:\n    fraud:\n      features:\n        zip:\n          kind: text\n",
                "detection.models.fraud.features.zip.kind: Input should be 'numeric' or 'categorical'",
            ),
            (
                "detection:\n  block_size: 0\n",
                "detection.block_size: Input should be greater than or equal to 1 (got 0)",
            ),
            ("kafka:\n  bootstrap: x\n", "kafka.bootstrap: unknown key"),
            (
                "detection:\n  detector: {name: Magic}\n",
                "detection.detector.name: expected one of ['ADWIN', 'KSWIN', 'PageHinkley']",
            ),
            (
                "detection:\n  detector: {name: ADWIN, params: {delta: 5}}\n",
                "detection.detector.params: expected valid arguments for river.drift.ADWIN",
            ),
            (
                "detection:\n  models:\n    m:\n      detector: {name: KSWIN, params: {windows: 5}}\n",
                "detection.models.m.detector.params: expected valid arguments for river.drift.KSWIN",
            ),
            ("- a\n- b\n", "<top level>: expected a mapping"),
            ("kafka: [\n", "not valid YAML at line"),
        ],
    )
    def test_errors_name_file_key_and_expectation(
        self, tmp_path: Path, text: str, message: str
    ) -> None:
        """A bad config fails naming the file, the key path and what was expected."""
        path = _write(tmp_path, text)
        with pytest.raises(ConfigError) as info:
            load_settings(path, env={})
        assert str(path) in str(info.value)
        assert message in str(info.value)

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file is a ConfigError naming it."""
        with pytest.raises(ConfigError, match="cannot read config file"):
            load_settings(tmp_path / "absent.yaml", env={})
