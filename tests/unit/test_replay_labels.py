"""`detector replay --labels`: label events joined in the backtest as `detector run
--labels-topic` joins them, and the report's estimated against realized accuracy."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from label_support import DelayedStream, feed, join_settings, merged, positions, scored_stream

from detector.cli import main
from detector.config import Settings
from detector.core.engine import PartitionDetectors
from detector.core.records import InputRecord
from detector.tuning.backtest import joining, run_backtest
from detector.tuning.report import realized, render, windows
from detector.tuning.sources import SourceError, by_event_time, open_source
from detector.tuning.trace import StreamTrace

#: Labels of the scored stream's unlabelled events arrive an hour after their prediction.
LAG_MS = 3_600_000


def _lines(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs))
    return path


@pytest.fixture(scope="module")
def delayed(tmp_path_factory: pytest.TempPathFactory) -> tuple[DelayedStream, Path, Path]:
    stream = DelayedStream()
    where = tmp_path_factory.mktemp("delayed")
    return (
        stream,
        _lines(where / "predictions.jsonl", stream.predictions),
        _lines(where / "labels.jsonl", stream.labels),
    )


@pytest.fixture(scope="module")
def scored(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[list[dict[str, Any]], list[int], Path, Path]:
    """Calibrated scores that become less confident at 15,000 (covariate shift); the first
    6,000 events carry their label, the others' come an hour later from a labels file."""
    events, truth = scored_stream(spread_after=1.0)
    labels = [
        {"event_id": e["event_id"], "model": e["model"], "label": truth[i]}
        | {"timestamp": e["timestamp"] + LAG_MS}
        for i, e in enumerate(events)
        if "label" not in e
    ]
    where = tmp_path_factory.mktemp("scored")
    return (
        events,
        truth,
        _lines(where / "credit.jsonl", events),
        _lines(where / "lab.jsonl", labels),
    )


def _settings() -> Settings:
    settings = Settings()
    return settings.model_copy(update={"detection": joining(settings.detection)})


class TestByEventTime:
    def test_merges_per_partition_in_time_order_predictions_first(self) -> None:
        def rec(topic: str, partition: int, offset: int, ts: int | None, body: Any) -> InputRecord:
            value = body if isinstance(body, bytes) else orjson.dumps(body)
            return InputRecord(topic, partition, offset, value, ts)

        predictions = [
            rec("in", 0, 0, None, {"timestamp": "2026-01-01T00:00:00Z"}),
            rec("in", 0, 1, None, {"timestamp": 1_767_225_602_000}),
            rec("in", 0, 2, None, b"not json"),  # untimed: stays after offset 1
            rec("in", 1, 0, 5, {}),  # a Kafka timestamp comes first
        ]
        labels = [
            rec("lab", 0, 0, None, {"timestamp": 1_767_225_600_000}),  # tie: after offset 0
            rec("lab", 0, 1, None, {"timestamp": 1_767_225_603_000}),
            rec("lab", 1, 0, 4, {}),
        ]
        order = [(r.topic, r.partition, r.offset) for r in by_event_time(predictions, labels)]
        assert order == [
            ("in", 0, 0),
            ("lab", 0, 0),
            ("in", 0, 1),
            ("in", 0, 2),
            ("lab", 0, 1),
            ("lab", 1, 0),
            ("in", 1, 0),
        ]


class TestReplayWithLabels:
    def test_performance_alert_as_the_core_joins_them(
        self, delayed: tuple[DelayedStream, Path, Path]
    ) -> None:
        """The error rate rises at prediction 6,000; labels lag (mean 60 s) and a tenth
        never come. The backtest finds what the core fed both topics in time order finds:
        prediction 6,375, completed by label 5,695."""
        stream, predictions, labels = delayed
        core = PartitionDetectors(join_settings(), "predictions", 0)
        expected = positions(feed(core, merged(stream)).detections)
        assert expected == [(6375, 5695, "performance")]
        backtest = run_backtest(
            open_source(str(predictions)), Settings(), labels=open_source(str(labels))
        )
        found = [
            (a["trigger"]["offset"], a["trigger"]["label"]["offset"], a["drift_type"])
            for a in backtest.alerts
        ]
        assert found == expected
        assert backtest.alerts[0]["trigger"]["label"]["topic"] == "labels.jsonl"
        summary = backtest.summary()
        assert summary["labels"] == str(labels)
        assert summary["label_events"] == len(stream.labels) == 10_782
        assert summary["models"]["credit"]["labels"] == {"joined": 10_782}

    def test_labels_and_predictions_of_one_topic_are_refused(
        self, delayed: tuple[DelayedStream, Path, Path]
    ) -> None:
        _, predictions, _ = delayed
        with pytest.raises(SourceError, match="the labels and the predictions are both topic"):
            run_backtest(
                open_source(str(predictions)), Settings(), labels=open_source(str(predictions))
            )

    def test_estimate_alerts_an_hour_before_the_realized_drop(
        self, scored: tuple[list[dict[str, Any]], list[int], Path, Path]
    ) -> None:
        """The estimate alerts at prediction 15,494 from the scores alone (as in
        tests/unit/test_estimation.py); the realized drop, once the labels of the
        predictions come an hour later, at prediction 15,743 (label 9,743)."""
        _, _, events, labels = scored
        backtest = run_backtest(
            open_source(str(events)), _settings(), labels=open_source(str(labels))
        )
        got = [
            (a["drift_type"], a["trigger"]["offset"], a["detected_at"])
            for a in backtest.alerts
            if a["drift_type"] in ("estimated_performance", "performance")
        ]
        assert got == [
            ("estimated_performance", 15494, "2026-01-01T04:18:14.000Z"),
            ("performance", 15743, "2026-01-01T05:22:23.000Z"),
        ]
        performance = backtest.alerts[-1]
        assert performance["trigger"]["label"]["offset"] == 9743
        assert performance["evidence"]["current"]["error_rate"] == 0.322266
        assert backtest.summary()["models"]["credit"]["labels"] == {
            "inline": 6000,
            "joined": 24000,
        }

    def test_realized_accuracy_of_the_estimated_windows_in_hindsight(
        self, scored: tuple[list[dict[str, Any]], list[int], Path, Path]
    ) -> None:
        """The trace calibrates as the core does (the scored predictions from the 5,000th
        labelled one on: 25,001) and gives each window's realized accuracy from the labels
        that came later: within 0.01 of the exact share (bins 32 events wide here)."""
        stream, truth, events, labels = scored
        settings = _settings()
        trace = StreamTrace(settings.detection)
        backtest = run_backtest(
            open_source(str(events)), settings, labels=open_source(str(labels)), trace=trace
        )
        model = trace.model("credit")
        assert model is not None and model.estimated is not None and model.error is not None
        assert (model.width, sum(model.estimated.events), sum(model.error.events)) == (
            32,
            25_001,
            30_000,
        )
        (alert,) = [a for a in backtest.alerts if a["drift_type"] == "estimated_performance"]
        position = backtest.positions[alert["alert_id"]]
        (window,) = windows(
            trace,
            "credit",
            [alert],
            [position],
            settings.detection.reference_size,
            settings.detection.window_size,
        )
        assert window.current == (14983, 15494)

        def exact(span: tuple[int, int]) -> float:
            right = [
                (stream[i]["prediction"] >= 0.5) == (truth[i] == 1)
                for i in range(span[0], span[1] + 1)
            ]
            return sum(right) / len(right)

        assert window.reference is not None
        for span in (window.reference, window.current):
            accuracy, labelled = realized(trace, "credit", span)
            assert accuracy is not None and abs(accuracy - exact(span)) < 0.01
            assert labelled == span[1] - span[0] + 1
        accuracy, _ = realized(trace, "credit", window.current)
        assert round(accuracy or 0.0, 3) == 0.706  # the estimate said 0.684 (0.645-0.724)
        assert alert["evidence"]["current"]["estimated_accuracy_ci"][1] >= exact(window.current)

        page = render(backtest, trace)
        row = re.search(rf"<tr[^>]*data-alert-id='{alert['alert_id']}'.*?</tr>", page, re.S)
        assert row is not None
        assert "estimated accuracy 68.4% (95% 64.5% to 72.4%)" in row.group(0)
        assert re.findall(r"realized accuracy ([\d.]+%) \(([\d,]+) labelled", row.group(0)) == [
            ("81.7%", "518"),
            ("70.6%", "512"),
        ]

    def test_the_command(
        self, delayed: tuple[DelayedStream, Path, Path], tmp_path: Path, capsys: Any
    ) -> None:
        _, predictions, labels = delayed
        out, summary = tmp_path / "alerts.jsonl", tmp_path / "summary.json"
        argv = ["replay", str(predictions), "--labels", str(labels), "--json", str(out)]
        assert main([*argv, "--summary", str(summary), "--html", str(tmp_path / "r.html")]) == 0
        (alert,) = [orjson.loads(line) for line in out.read_bytes().splitlines()]
        assert (alert["drift_type"], alert["trigger"]["offset"]) == ("performance", 6375)
        assert orjson.loads(summary.read_bytes())["label_events"] == 10_782
        table = capsys.readouterr().out
        assert f"10,782 label events from {labels} (credit: joined 10,782)" in table
        assert "data-feature='__error__'" in (tmp_path / "r.html").read_text()
