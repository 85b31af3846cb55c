"""`detector calibrate`: budgets, the fit, the written config, and calibration honesty."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import yaml

from detector.cli import main
from detector.config import load_settings
from detector.core.engine import PartitionDetectors
from detector.core.settings import PREDICTION, DetectionSettings
from detector.tuning.calibrate import (
    MIN_EVENTS,
    CalibrationError,
    bootstrap_indices,
    fit_rates,
    parse_budget,
    parse_rate,
)
from detector.tuning.inject import inject, parse_injection
from detector.tuning.replay import replay
from detector.tuning.synthetic import StreamSpec, generate

BUDGET, RATE = "5 per hour", "20/s"
#: The events the budget covers: an hour at 20 events a second.
PERIOD_EVENTS = 72_000
SEEDS = (101, 102, 103, 104)


def _stream(n: int, seed: int) -> list[dict[str, Any]]:
    """The standard synthetic model plus ``ar``: an AR(1) feature (phi 0.9), same process
    for every seed."""
    events = list(generate(StreamSpec("fraud", n, seed)))
    rng = np.random.default_rng(seed + 7919)
    noise = rng.normal(0.0, math.sqrt(1 - 0.81), n)
    x = rng.normal()
    for event, e in zip(events, noise.tolist(), strict=True):
        x = 0.9 * x + e
        event["features"]["ar"] = x
    return events


def _write(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


def _poisson_upper(mean: float, quantile: float) -> int:
    """The smallest k with P(X <= k) >= quantile for X ~ Poisson(mean)."""
    k, term = 0, math.exp(-mean)
    total = term
    while total < quantile:
        k += 1
        term *= mean / k
        total += term
    return k


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("calibrate")
    source = _write(root / "stable.jsonl", _stream(30_000, 11))
    output = root / "detector.yaml"
    code = main(
        [
            "calibrate",
            str(source),
            "--budget",
            BUDGET,
            "--rate",
            RATE,
            "--output",
            str(output),
            "--simulate",
            "300000",
        ]
    )
    assert code == 0
    return output


def _deltas(path: Path) -> dict[str, float]:
    settings = load_settings(path)
    return {
        name: feature.detector.params["delta"]
        for name, feature in settings.detection.models["fraud"].features.items()
        if feature.detector is not None
    }


class TestBudgetAndRate:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("1 per week", (1.0, 604_800.0)),
            ("5 per hour", (5.0, 3600.0)),
            ("2 per 3 days", (2.0, 259_200.0)),
            ("0.5/day", (0.5, 86_400.0)),
        ],
    )
    def test_budgets(self, text: str, expected: tuple[float, float]) -> None:
        assert parse_budget(text) == expected

    @pytest.mark.parametrize(
        ("text", "expected"), [("50/s", 50.0), ("3000/min", 50.0), ("36000 per hour", 10.0)]
    )
    def test_rates(self, text: str, expected: float) -> None:
        assert parse_rate(text) == expected

    @pytest.mark.parametrize(
        ("call", "message"),
        [
            (lambda: parse_budget("often"), "--budget: expected 'N per UNIT'"),
            (lambda: parse_budget("1 per fortnight"), "unknown time unit 'fortnight'"),
            (lambda: parse_budget("0 per week"), "positive count"),
            (lambda: parse_rate("fast"), "--rate: expected 'N/UNIT'"),
        ],
    )
    def test_bad_input_names_the_flag(self, call: Any, message: str) -> None:
        with pytest.raises(CalibrationError, match=message):
            call()


class TestFit:
    def test_common_slope_and_own_levels(self) -> None:
        """Two features whose rates follow rate = c * delta**2 with c differing by 10x:
        the fit finds the slope 2 and each level, exactly on exact counts."""
        deltas = (0.9, 0.5, 0.25)
        events = 10**9
        points = {
            "a": [(d, round(1e-4 * d**2 * events), events) for d in deltas],
            "b": [(d, round(1e-3 * d**2 * events), events) for d in deltas],
        }
        fits = fit_rates(points)
        assert fits["a"].b == pytest.approx(2.0, rel=1e-6)
        assert fits["b"].b == fits["a"].b
        assert math.exp(fits["a"].a) == pytest.approx(1e-4, rel=1e-5)
        assert math.exp(fits["b"].a) == pytest.approx(1e-3, rel=1e-5)

    def test_no_alarm_no_fit(self) -> None:
        assert fit_rates({"quiet": [(0.9, 0, 1000), (0.5, 0, 1000)]}) == {}


class TestBootstrap:
    def test_blocks_of_consecutive_events(self) -> None:
        indices = bootstrap_indices(100, 35, 10, np.random.default_rng(3))
        assert len(indices) == 35
        for block in range(3):
            chunk = indices[block * 10 : block * 10 + 10]
            assert all((b - a) % 100 == 1 for a, b in itertools.pairwise(chunk))


class TestCalibratedConfig:
    def test_loads_as_run_replay_and_reload_load_it(self, calibrated: Path) -> None:
        settings = load_settings(calibrated)
        assert settings.calibration is not None
        assert settings.calibration.budget == BUDGET
        fraud = settings.detection.models["fraud"].features
        keys = set(settings.calibration.detectors)
        assert keys == {f"models.fraud.features.{name}.detector" for name in fraud}
        assert set(fraud) == {
            "amount",
            "score",
            "txn_count",
            "utilisation",
            "latency",
            "country",
            "channel",
            "ar",
            PREDICTION,
        }
        # A SIGHUP reload hands the new detection settings to the running core.
        core = PartitionDetectors(DetectionSettings(), "t", 0)
        core.reconfigure(settings.detection)
        assert core.settings == settings.detection

    def test_a_comment_per_feature(self, calibrated: Path) -> None:
        text = calibrated.read_text()
        settings = load_settings(calibrated)
        assert settings.calibration is not None
        for name, feature in settings.detection.models["fraud"].features.items():
            assert feature.detector is not None
            delta = feature.detector.params["delta"]
            shown = "the prediction" if name == PREDICTION else name
            (comment,) = [
                line.strip() for line in text.splitlines() if line.strip().startswith(f"# {shown}:")
            ]
            assert f"ADWIN delta={delta!r}" in comment
            measured = settings.calibration.detectors[f"models.fraud.features.{name}.detector"]
            assert f"calibrated to {measured.false_alarms_per_event:.3g}" in comment
            kind = "20-point category move" if name in ("country", "channel") else "1sd mean shift"
            assert f"expected delay for a {kind}: " in comment
            assert measured.expected_delay_events is not None
            assert f"{measured.expected_delay_events:,.0f} events" in comment

    def test_explain_says_calibrated(self, calibrated: Path, capsys: Any) -> None:
        assert main(["config", "explain", str(calibrated), "--model", "fraud"]) == 0
        out = capsys.readouterr().out
        assert "calibrated (detection.models.fraud.features.amount.detector)" in out

    def test_the_input_config_is_kept(self, tmp_path: Path) -> None:
        base = tmp_path / "base.yaml"
        base.write_text(
            "kafka:\n  input_topic: predictions-prod\n"
            "detection:\n  rearm_after: 10000\n  models:\n    fraud:\n"
            "      ignore_features: [score]\n"
        )
        source = _write(tmp_path / "s.jsonl", _stream(MIN_EVENTS + 3000, 4))
        out = tmp_path / "out.yaml"
        args = ["calibrate", str(source), "--config", str(base), "--budget", BUDGET]
        args += ["--rate", RATE, "--output", str(out), "--simulate", "200000", "--jobs", "1"]
        assert main(args) == 0
        tree = yaml.safe_load(out.read_text())
        assert tree["kafka"] == {"input_topic": "predictions-prod"}
        assert tree["detection"]["rearm_after"] == 10000
        assert tree["detection"]["models"]["fraud"]["ignore_features"] == ["score"]
        assert "score" not in tree["detection"]["models"]["fraud"]["features"]

    def test_too_few_events_is_refused(self, tmp_path: Path, capsys: Any) -> None:
        source = _write(tmp_path / "s.jsonl", _stream(MIN_EVENTS - 1, 4))
        args = ["calibrate", str(source), "--budget", BUDGET, "--rate", RATE]
        assert main([*args, "--output", str(tmp_path / "o.yaml")]) == 2
        err = capsys.readouterr().err
        assert f"has {MIN_EVENTS - 1:,} valid events; calibration needs at least" in err
        assert not (tmp_path / "o.yaml").exists()


class TestHonesty:
    def test_false_alarms_stay_within_the_budget(self, calibrated: Path) -> None:
        """Fresh stationary streams of the same process, each of the length the budget
        covers (an hour at 20/s): the false alarms over all seeds stay at or below the
        99 % Poisson quantile of the budget (5 per stream). Counted as published (the
        config as written) and raw (every detection, rearm_after 0)."""
        settings = load_settings(calibrated).detection
        raw = DetectionSettings.model_validate({**settings.model_dump(), "rearm_after": 0})
        published = raw_count = 0
        for seed in SEEDS:
            events = _stream(PERIOD_EVENTS, seed)
            published += len(replay(events, settings)[0])
            raw_count += len(replay(events, raw)[0])
        bound = _poisson_upper(5 * len(SEEDS), 0.99)
        assert bound == 31
        assert published <= raw_count <= bound
        # And the budget is used, not thrown away: the default config is far quieter.
        default = sum(len(replay(_stream(PERIOD_EVENTS, s))[0]) for s in SEEDS[:1])
        assert default == 0 < raw_count

    def test_a_real_change_is_still_detected(self, calibrated: Path) -> None:
        settings = load_settings(calibrated).detection
        events = _stream(40_000, 202)
        inject(events, [parse_injection("model=fraud,feature=amount,kind=mean,shift=1sd,at=20000")])
        detections, _ = replay(events, settings)
        found = [d.offset for d in detections if d.feature == "amount" and d.offset >= 20_000]
        assert found and found[0] - 20_000 < 1_000

    def test_autocorrelation_gets_a_tighter_threshold(self, calibrated: Path) -> None:
        """The AR(1) feature raises more false alarms at every setting than the iid normal
        one: it gets a smaller delta."""
        deltas = _deltas(calibrated)
        assert deltas["ar"] < deltas["score"] / 3


class TestModels:
    def test_one_model_with_its_own_rate(self, tmp_path: Path, capsys: Any) -> None:
        fraud = _stream(3_000, 1)
        credit = [{**e, "model": "credit"} for e in _stream(3_000, 2)]
        source = _write(
            tmp_path / "two.jsonl", [e for pair in zip(fraud, credit, strict=True) for e in pair]
        )
        out = tmp_path / "out.yaml"
        args = ["calibrate", str(source), "--budget", BUDGET, "--model", "credit"]
        args += ["--rate", "credit=5/s", "--rate", "fraud=50/s", "--output", str(out)]
        assert main([*args, "--simulate", "50000", "--jobs", "1"]) == 0
        settings = load_settings(out)
        assert set(settings.detection.models) == {"credit"}
        assert settings.calibration is not None and settings.calibration.rate == (
            "credit=5/s, fraud=50/s"
        )
        printed = capsys.readouterr().out
        # 5 alarms an hour at 5 events a second: 5 / 18,000 per event.
        assert "model credit: " in printed and "budget 0.000278" in printed

    def test_unknown_model_and_missing_rate(self, tmp_path: Path, capsys: Any) -> None:
        source = _write(tmp_path / "s.jsonl", _stream(MIN_EVENTS, 3))
        out = str(tmp_path / "o.yaml")
        base = ["calibrate", str(source), "--budget", BUDGET, "--output", out]
        assert main([*base, "--rate", RATE, "--model", "credit"]) == 2
        assert "--model: no events of model 'credit' (models: fraud)" in capsys.readouterr().err
        assert main([*base, "--rate", "credit=5/s"]) == 2
        assert "--rate: no rate given for model 'fraud'" in capsys.readouterr().err
