"""The backtest (`detector replay`): sources, injected changes, outcomes, tables and files."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest
from tuning_support import SPECS

from detector.cli import main
from detector.config import Settings
from detector.core.settings import PREDICTION
from detector.tuning.backtest import run_backtest
from detector.tuning.inject import InjectionError, inject, parse_injection
from detector.tuning.replay import replay
from detector.tuning.sources import Bound, SourceError, open_source, parse_kafka_uri
from detector.tuning.synthetic import StreamSpec, generate


def _events(n: int = 30_000, seed: int = 5) -> list[dict[str, Any]]:
    return list(generate(StreamSpec("fraud", n, seed)))


def _write(path: Path, events: list[dict[str, Any]]) -> Path:
    data = b"".join(orjson.dumps(e) + b"\n" for e in events)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("stream") / "fraud.jsonl", _events())


class TestParseInjection:
    def test_every_kind(self) -> None:
        mean, category, missing, scale, prediction = (parse_injection(s) for s in SPECS)
        assert (mean.feature, mean.kind, mean.shift, mean.at) == ("amount", "mean", 1.0, 0.5)
        assert (category.shift, category.at, category.category) == (20.0, 20000, None)
        assert (missing.to, missing.ramp) == (0.3, 1000)
        assert scale.factor == 3.0
        assert (prediction.feature, prediction.shift) == (PREDICTION, 1.0)

    @pytest.mark.parametrize(
        ("spec", "message"),
        [
            (
                "model=m,feature=f,kind=drop,at=0.5",
                "kind: expected one of mean, scale, categorical, missing, prediction",
            ),
            (
                "model=m,feature=f,kind=mean,shift=0.5,at=0.5",
                "shift: expected standard deviations, such as 0.5sd",
            ),
            (
                "model=m,feature=f,kind=mean,shift=0.5sd",
                "at: required (a fraction or an event position)",
            ),
            (
                "model=m,feature=f,kind=mean,shift=0.5sd,at=1.5",
                "at: expected a fraction in (0, 1) or an event position",
            ),
            ("feature=f,kind=mean,shift=0.5sd,at=0.5", "model: required"),
            ("model=m,kind=mean,shift=0.5sd,at=0.5", "feature: required for kind=mean"),
            ("model=m,feature=f,kind=scale,factor=-1,at=0.5", "factor: expected a positive number"),
            ("model=m,feature=f,kind=missing,to=2,at=0.5", "to: expected a rate in [0, 1]"),
            (
                "model=m,feature=f,kind=mean,shift=1sd,at=0.5,factor=2",
                "factor: unknown key for kind=mean",
            ),
            (
                "model=m,feature=f,kind=mean,shift=1sd,at=0.5,ramp=x",
                "ramp: expected a number of events",
            ),
            ("model=m,feature=f,kind", "expected key=value pairs, got 'kind'"),
        ],
    )
    def test_bad_specs_name_the_key(self, spec: str, message: str) -> None:
        with pytest.raises(InjectionError) as caught:
            parse_injection(spec)
        assert str(caught.value).startswith(f"--inject {spec!r}: {message}")


class TestInject:
    def test_mean_shift_in_standard_deviations_before_the_change(self) -> None:
        events = _events(4000)
        original = [e["features"]["amount"] for e in events]
        (plan,) = inject(
            events, [parse_injection("model=fraud,feature=amount,kind=mean,shift=0.5sd,at=0.5")]
        )
        assert plan.start == 2000
        before = [v for v in original[:2000] if v is not None]
        mean = sum(before) / len(before)
        sd = (sum((v - mean) ** 2 for v in before) / len(before)) ** 0.5
        assert plan.mean == pytest.approx(mean) and plan.sd == pytest.approx(sd)
        after = [e["features"]["amount"] for e in events]
        assert after[:2000] == original[:2000]
        for new, old in zip(after[2000:], original[2000:], strict=True):
            assert (new is None and old is None) or new == pytest.approx(old + 0.5 * sd)

    def test_ramp_is_gradual_and_ids_are_kept(self) -> None:
        events = _events(2000)
        ids = [e["event_id"] for e in events]
        original = [e["features"]["score"] for e in events]
        (plan,) = inject(
            events,
            [parse_injection("model=fraud,feature=score,kind=mean,shift=1sd,at=1000,ramp=100")],
        )
        deltas = [
            e["features"]["score"] - o
            for e, o in zip(events, original, strict=True)
            if o is not None
        ]
        assert [e["event_id"] for e in events] == ids
        i = 1000 - sum(o is None for o in original[:1000])  # index into the non-null deltas
        assert deltas[i - 1] == 0.0
        assert deltas[i] == pytest.approx(plan.sd / 100)
        assert deltas[i + 200] == pytest.approx(plan.sd)

    def test_categorical_moves_the_points_to_the_rarest_category(self) -> None:
        events = _events(20_000)
        (plan,) = inject(
            events,
            [parse_injection("model=fraud,feature=channel,kind=categorical,shift=20,at=0.5")],
        )
        assert plan.category == "pos"
        after = [e["features"]["channel"] for e in events[10_000:]]
        share = after.count("pos") / len(after)
        assert share == pytest.approx(0.2 + 0.2, abs=0.015)

    def test_missing_reaches_the_rate(self) -> None:
        events = _events(20_000)
        inject(events, [parse_injection("model=fraud,feature=score,kind=missing,to=0.25,at=0.5")])
        after = [e["features"]["score"] for e in events[10_000:]]
        assert after.count(None) / len(after) == pytest.approx(0.25, abs=0.015)

    def test_same_seed_same_copy(self) -> None:
        spec = [parse_injection("model=fraud,feature=country,kind=missing,to=0.5,at=0.5")]
        first, second, other = _events(3000), _events(3000), _events(3000)
        inject(first, spec, seed=1)
        inject(second, spec, seed=1)
        inject(other, spec, seed=2)
        assert first == second
        assert first != other

    @pytest.mark.parametrize(
        ("spec", "message"),
        [
            (
                "model=credit,feature=amount,kind=mean,shift=1sd,at=0.5",
                "model: no events of model 'credit'",
            ),
            (
                "model=fraud,feature=nope,kind=mean,shift=1sd,at=0.5",
                "feature: 'nope' has no values in model 'fraud''s events before position 500",
            ),
            (
                "model=fraud,feature=country,kind=mean,shift=1sd,at=0.5",
                "kind: 'country' is not numeric",
            ),
            (
                "model=fraud,feature=amount,kind=categorical,shift=20,at=0.5",
                "kind: 'amount' is not categorical",
            ),
            (
                "model=fraud,feature=amount,kind=mean,shift=1sd,at=5000",
                "at: position 5000 is outside the model's 1000 events",
            ),
        ],
    )
    def test_changes_that_do_not_fit_the_stream(self, spec: str, message: str) -> None:
        with pytest.raises(InjectionError) as caught:
            inject(_events(1000), [parse_injection(spec)])
        assert str(caught.value) == f"--inject {spec!r}: {message}"


class TestSources:
    def test_file_gzip_and_directory_give_the_same_alerts(
        self, stream: Path, tmp_path: Path
    ) -> None:
        events = _events()
        injected = [parse_injection(SPECS[0])]
        gz = _write(tmp_path / "fraud.jsonl.gz", events)
        folder = tmp_path / "day"
        folder.mkdir()
        _write(folder / "a.jsonl", events[:12_345])
        _write(folder / "b.ndjson.gz", events[12_345:])
        (folder / "notes.txt").write_text("not events")

        def found(source: str) -> list[tuple[str, str, int]]:
            run = run_backtest(open_source(source), Settings(), injections=injected)
            return [(a["feature"], a["drift_type"], a["trigger"]["offset"]) for a in run.alerts]

        assert found(str(stream)) == [("amount", "mean", 15284)]
        assert found(str(gz)) == found(str(stream))
        assert found(str(folder)) == found(str(stream))

    def test_missing_and_empty_sources(self, tmp_path: Path) -> None:
        with pytest.raises(SourceError, match="no such file or directory"):
            open_source(str(tmp_path / "nope.jsonl"))
        with pytest.raises(SourceError, match="no event files in the directory"):
            open_source(str(tmp_path))

    def test_kafka_uri(self) -> None:
        parsed = parse_kafka_uri(
            "kafka://preds?partitions=2,0&from=1200&to=2026-12-01T01:00:00+01:00"
        )
        assert parsed.topic == "preds"
        assert parsed.partitions == (0, 2)
        assert parsed.start == Bound(offset=1200)
        assert parsed.end == Bound(time_ms=1_796_083_200_000)
        assert parse_kafka_uri("kafka://preds").partitions is None

    @pytest.mark.parametrize(
        ("uri", "message"),
        [
            ("kafka://", "expected kafka://TOPIC?partitions=0,1&from=..&to=.."),
            ("kafka://t?partition=1", "partition: unknown parameter (partitions, from, to)"),
            ("kafka://t?partitions=a", "partitions: expected partition numbers, such as 0,1"),
            (
                "kafka://t?from=yesterday",
                "from: expected an offset or an RFC 3339 time with an offset, got 'yesterday'",
            ),
            ("kafka://t?to=2026-12-01T00:00:00", "to: expected an offset or an RFC 3339 time"),
        ],
    )
    def test_bad_kafka_uris(self, uri: str, message: str) -> None:
        with pytest.raises(SourceError) as caught:
            parse_kafka_uri(uri)
        assert str(caught.value).startswith(f"{uri}: {message}")


class TestBacktest:
    def test_injected_changes_are_found_at_exact_positions(self, stream: Path) -> None:
        run = run_backtest(
            open_source(str(stream)), Settings(), injections=[parse_injection(s) for s in SPECS]
        )
        assert [
            (a["feature"], a["drift_type"], run.positions[a["alert_id"]]) for a in run.alerts
        ] == [
            (PREDICTION, "prediction", 6335),
            ("latency", "variance", 12351),
            ("amount", "mean", 15284),
            ("channel", "categorical", 20479),
            ("score", "missing_rate", 24639),
        ]
        outcomes = [(o.plan.start, o.delay, o.false_alarms_before) for o in run.injections]
        assert outcomes == [
            (15000, 284, 0),
            (20000, 479, 0),
            (24000, 639, 0),
            (12000, 351, 0),
            (6000, 335, 0),
        ]

    def test_alerts_equal_the_core_on_the_same_records(self, stream: Path) -> None:
        """No injection: the records go to the core as they are, as `detector run` would."""
        events = _events()
        inject(events, [parse_injection(SPECS[0])])
        path = _write(stream.parent / "shifted.jsonl", events)
        run = run_backtest(open_source(str(path)), Settings(), now_ms=lambda: 0)
        detections, _ = replay(events, topic="shifted.jsonl")
        from detector.alerts import build_alert

        assert run.alerts == [build_alert(d, 0) for d in detections]
        assert len(run.alerts) == 1

    def test_false_alarms_before_a_change_are_counted(self, stream: Path) -> None:
        """An alert before the change that no injected change explains is a false alarm."""
        settings = Settings.model_validate(
            {"detection": {"detector": {"name": "ADWIN", "params": {"delta": 0.5, "clock": 4}}}}
        )
        run = run_backtest(
            open_source(str(stream)),
            settings,
            injections=[parse_injection("model=fraud,feature=amount,kind=mean,shift=2sd,at=0.9")],
        )
        (outcome,) = run.injections
        early = [a for a in run.alerts if run.positions[a["alert_id"]] < outcome.plan.start]
        assert outcome.false_alarms_before == len(early) > 0

    def test_summary(self, stream: Path) -> None:
        run = run_backtest(open_source(str(stream)), Settings())
        summary = run.summary()
        assert summary["records"] == summary["events"] == 30_000
        assert summary["alerts"] == 0 and summary["rejected"] == 0
        assert summary["models"] == {"fraud": {"events": 30_000, "alerts": 0, "by_drift_type": {}}}


class TestReplayCommand:
    def test_json_summary_and_table(self, stream: Path, tmp_path: Path, capsys: Any) -> None:
        out, summary = tmp_path / "alerts.jsonl", tmp_path / "summary.json"
        code = main(
            [
                "replay",
                str(stream),
                "--json",
                str(out),
                "--summary",
                str(summary),
                "--inject",
                SPECS[0],
                "--inject",
                SPECS[4],
            ]
        )
        assert code == 0
        alerts = [orjson.loads(line) for line in out.read_bytes().splitlines()]
        assert [(a["feature"], a["trigger"]["offset"]) for a in alerts] == [
            (PREDICTION, 6335),
            ("amount", 15284),
        ]
        totals = orjson.loads(summary.read_bytes())
        assert [i["delay_events"] for i in totals["injections"]] == [284, 335]
        table = capsys.readouterr().out.splitlines()
        assert table[1] == "model fraud: 30,000 events, 2 alerts"
        assert table[2].split() == [
            "feature",
            "drift",
            "type",
            "position",
            "event",
            "time",
            "effect",
            "severity",
        ]
        assert table[3].split()[:3] == [PREDICTION, "prediction", "p0@6335"]
        assert any(
            line.startswith(f"  {SPECS[0]}: starts at #15000, found after 284 events")
            for line in table
        )

    def test_json_to_standard_output(self, stream: Path, capsys: Any) -> None:
        assert main(["replay", str(stream), "--json", "-", "--inject", SPECS[0]]) == 0
        captured = capsys.readouterr()
        (line,) = captured.out.splitlines()
        assert orjson.loads(line)["trigger"]["offset"] == 15284
        assert "model fraud: 30,000 events, 1 alert" in captured.err

    def test_user_errors_exit_2_with_one_line(self, stream: Path, capsys: Any) -> None:
        assert main(["replay", str(stream), "--inject", "model=x,kind=mean"]) == 2
        assert capsys.readouterr().err == (
            "detector: --inject 'model=x,kind=mean': feature: required for kind=mean\n"
        )
        assert main(["replay", "kafka://t?from=soon"]) == 2
        assert "from: expected an offset or an RFC 3339 time" in capsys.readouterr().err
