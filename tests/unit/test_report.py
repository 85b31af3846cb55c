"""`detector replay --html`: the trace it plots (bounded bins), the report's content, and
the report opened in headless Chromium (Debian's `chromium`; `make test` installs it)."""

from __future__ import annotations

import gzip
import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import orjson
import pytest
from chromium import Chromium
from tuning_support import SPECS

from detector.cli import main
from detector.config import Settings
from detector.core.settings import ERROR, PREDICTION, DetectionSettings
from detector.tuning.backtest import run_backtest
from detector.tuning.inject import parse_injection
from detector.tuning.report import windows
from detector.tuning.sources import open_source
from detector.tuning.synthetic import StreamSpec, generate
from detector.tuning.trace import MAX_CATEGORIES, MISSING, VALUES, StreamTrace

#: The changes of tests/unit/test_tuning.py are found after these delays (TestBacktest).
DELAYS = {SPECS[0]: 284, SPECS[1]: 479, SPECS[2]: 639, SPECS[3]: 351, SPECS[4]: 335}
#: (feature, drift type) of the alerts the changes raise.
ALERTING = {
    PREDICTION: "prediction",
    "latency": "variance",
    "amount": "mean",
    "channel": "categorical",
    "score": "missing_rate",
}


def _event(features: dict[str, Any], prediction: Any = 0.5, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "features": features, "prediction": prediction, **extra}


def _observe(trace: StreamTrace, events: list[dict[str, Any]], model: str = "m") -> None:
    for position, event in enumerate(events):
        trace.observe(model, position, event)


# -- the trace -----------------------------------------------------------------------------


class TestStreamTrace:
    def test_exact_bins_of_a_tiny_stream(self) -> None:
        trace = StreamTrace()
        _observe(
            trace,
            [
                _event({"x": 1.0, "c": "a"}),
                _event({"x": None, "c": "b"}, label=0),  # 0.5 says 1: wrong
                _event({"x": 3, "c": True}, prediction=0.9, label=1),
                _event({"c": "a"}),  # x absent: missing, as in the engine
            ],
        )
        model = trace.models["m"]
        assert (model.width, model.bins, model.events) == (1, 4, 4)
        x = model.features["x"]
        assert x.kind == "numeric"
        assert x.events == [1, 1, 1, 1]
        assert x.present == [1, 0, 1, 0]
        assert x.total == [1.0, 0.0, 3.0, 0.0]
        assert x.squares == [1.0, 0.0, 9.0, 0.0]
        c = model.features["c"]
        assert c.kind == "categorical"
        assert c.categories == {"a": [1, 0, 0, 1], "b": [0, 1, 0, 0], "true": [0, 0, 1, 0]}
        assert model.prediction is not None and model.prediction.total == [0.5, 0.5, 0.9, 0.5]
        error = model.error
        assert error is not None and error.start == 1
        assert error.events == [0, 1, 1, 0]
        assert error.flags == [0, 1, 0, 0]

    def test_error_flags_use_the_core(self) -> None:
        trace = StreamTrace()
        _observe(
            trace,
            [
                _event({}, prediction=0.2, label=1),  # wrong
                _event({}, prediction=0.7, label=1),  # right
                # A class where the model's predictions are numbers: the core rejects it.
                _event({}, prediction={"a": 0.3, "b": 0.7}, label="a"),
            ],
        )
        error = trace.models["m"].error
        assert error is not None
        assert error.flags == [1, 0]
        assert trace.models["m"].events == 3

    def test_class_probabilities_are_watched_through_their_argmax(self) -> None:
        trace = StreamTrace()
        _observe(trace, [_event({}, prediction={"a": 0.3, "b": 0.7}), _event({}, prediction="a")])
        prediction = trace.models["m"].prediction
        assert prediction is not None and prediction.kind == "categorical"
        assert prediction.categories == {"b": [1, 0], "a": [0, 1]}

    def test_a_feature_counts_from_its_first_event(self) -> None:
        trace = StreamTrace()
        _observe(trace, [_event({}), _event({"late": None}), _event({}), _event({"late": 2.0})])
        late = trace.models["m"].features["late"]
        assert late.start == 1
        assert late.kind == "numeric"
        assert late.events == [0, 1, 1, 1]
        assert late.present == [0, 0, 0, 1]

    def test_events_the_core_rejects_for_a_changed_kind_are_not_counted(self) -> None:
        trace = StreamTrace()
        _observe(trace, [_event({"x": 1.0}), _event({"x": "one"}), _event({"x": 2.0})])
        assert trace.models["m"].features["x"].present == [1, 0, 1]

    def test_ignored_and_configured_features(self) -> None:
        settings = DetectionSettings.model_validate(
            {
                "models": {
                    "m": {"ignore_features": ["id"], "features": {"n": {"kind": "categorical"}}}
                }
            }
        )
        trace = StreamTrace(settings)
        _observe(trace, [_event({"id": "u1", "n": 3}), _event({"id": "u2", "n": "x"})])
        model = trace.models["m"]
        assert set(model.features) == {"n"}
        assert model.features["n"].categories == {"3": [1, 0], "x": [0, 1]}

    def test_bins_merge_in_pairs_and_the_width_doubles(self) -> None:
        trace = StreamTrace(max_bins=4)
        _observe(trace, [_event({"x": float(i), "c": "ab"[i % 2]}) for i in range(10)])
        model = trace.models["m"]
        assert (model.width, model.bins, model.merges) == (4, 3, 2)
        x = model.features["x"]
        assert x.present == [4, 4, 2]
        assert x.total == [0 + 1 + 2 + 3, 4 + 5 + 6 + 7, 8 + 9]
        assert model.features["c"].categories == {"a": [2, 2, 1], "b": [2, 2, 1]}

    def test_memory_is_bounded(self) -> None:
        trace = StreamTrace(max_bins=16)
        events = [_event({"x": float(i % 7), "c": f"k{i % 97}"}) for i in range(20_000)]
        _observe(trace, events)
        model = trace.models["m"]
        c = model.features["c"]
        assert model.bins <= 16 and len(c.events) == model.bins
        assert len(c.categories) <= 2 * MAX_CATEGORIES
        assert all(len(counts) == model.bins for counts in c.categories.values())
        # Nothing is lost: every value is in a kept category or in "other".
        assert sum(c.other) + sum(map(sum, c.categories.values())) == 20_000
        x = model.features["x"]
        assert sum(x.total) == sum(float(i % 7) for i in range(20_000))

    def test_observations_map_back_to_positions(self) -> None:
        trace = StreamTrace()
        # x is present at even positions only: its k-th value is at position 2(k - 1).
        _observe(trace, [_event({"x": 1.0 if i % 2 == 0 else None}) for i in range(100)])
        assert [trace.position_of("m", "x", VALUES, k) for k in (1, 2, 50)] == [0, 2, 98]
        assert trace.count_at("m", "x", VALUES, 10) == 6  # positions 0, 2, ..., 10
        assert trace.count_at("m", "x", MISSING, 10) == 11
        assert trace.position_of("m", "x", MISSING, 11) == 10
        assert trace.position_of("m", PREDICTION, VALUES, 7) == 6
        assert trace.position_of("m", ERROR, MISSING, 1) == 0  # no labels: nothing to map

    def test_wide_bins_spread_observations_evenly(self) -> None:
        trace = StreamTrace(max_bins=10)
        _observe(trace, [_event({"x": 1.0}) for _ in range(100)])
        model = trace.models["m"]
        assert model.width == 16
        for position in (0, 15, 16, 50, 99):
            k = trace.count_at("m", "x", VALUES, position)
            assert k == pytest.approx(position + 1)
            assert trace.position_of("m", "x", VALUES, k) == position


# -- the report ------------------------------------------------------------------------------


class _Page(HTMLParser):
    """The parts of the report the tests look at."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: list[dict[str, str]] = []
        self.svgs_in_figure: list[int] = []
        self.evidence_rows: list[tuple[str, str, str]] = []  # model, feature, alert id
        self.injections: dict[str, str] = {}  # spec -> the delay cell's text
        self.sections: set[str] = set()
        self.config_text = ""
        self.external: list[str] = []
        self.scripts = 0
        self._stack: list[tuple[str, dict[str, str]]] = []
        self._table: dict[str, str] | None = None
        self._injection: str | None = None
        self._cell: str | None = None
        self._in_config = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self._stack.append((tag, a))
        for key in ("src", "href", "xlink:href"):
            value = a.get(key, "")
            if value and not value.startswith("#"):
                self.external.append(value)
        if tag == "script":
            self.scripts += 1
        if tag == "figure" and "plot" in a.get("class", "").split():
            self.figures.append(a)
            self.svgs_in_figure.append(0)
        if tag == "svg" and any(t == "figure" for t, _ in self._stack[:-1]):
            self.svgs_in_figure[-1] += 1
        if tag == "section" and a.get("id"):
            self.sections.add(a["id"])
        if tag == "table" and "evidence" in a.get("class", ""):
            self._table = a
        if tag == "tr" and "alert" in a.get("class", "").split() and self._table is not None:
            row = (self._table["data-model"], self._table["data-feature"], a["data-alert-id"])
            self.evidence_rows.append(row)
        if tag == "tr" and a.get("class") == "injection":
            self._injection = a["data-spec"]
        if tag == "td" and "delay" in a.get("class", "").split():
            self._cell = ""
        if tag == "pre" and a.get("class") == "config-yaml":
            self._in_config = True

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            open_tag, _ = self._stack.pop()
            if open_tag == tag:
                break
        if tag == "table":
            self._table = None
        if tag == "td" and self._cell is not None and self._injection is not None:
            self.injections[self._injection] = self._cell
            self._cell = None
        if tag == "pre":
            self._in_config = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell += data
        if self._in_config:
            self.config_text += data


def _write(path: Path, events: list[dict[str, Any]]) -> Path:
    data = b"".join(orjson.dumps(e) + b"\n" for e in events)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    events = list(generate(StreamSpec("fraud", 30_000, 5)))
    return _write(tmp_path_factory.mktemp("report") / "fraud.jsonl", events)


@pytest.fixture(scope="module")
def report(stream: Path) -> Path:
    out = stream.parent / "report.html"
    argv = ["replay", str(stream), "--html", str(out)]
    for spec in SPECS:
        argv += ["--inject", spec]
    assert main(argv) == 0
    return out


class TestReport:
    def test_one_plot_per_alerting_feature_with_its_evidence(self, report: Path) -> None:
        page = _Page()
        page.feed(report.read_text(encoding="utf-8"))
        assert sorted((f["data-model"], f["data-feature"]) for f in page.figures) == sorted(
            ("fraud", feature) for feature in ALERTING
        )
        assert page.svgs_in_figure == [1] * len(ALERTING)
        assert sorted((m, f) for m, f, _ in page.evidence_rows) == sorted(
            ("fraud", feature) for feature in ALERTING
        )
        assert len({alert_id for _, _, alert_id in page.evidence_rows}) == len(ALERTING)

    def test_injected_changes_show_their_delays(self, report: Path) -> None:
        page = _Page()
        page.feed(report.read_text(encoding="utf-8"))
        assert {spec: int(text) for spec, text in page.injections.items()} == DELAYS

    def test_the_config_that_produced_it(self, report: Path) -> None:
        page = _Page()
        page.feed(report.read_text(encoding="utf-8"))
        assert "config" in page.sections
        assert "reference_size: 512" in page.config_text
        assert "delta: 1.0e-05" in page.config_text

    def test_self_contained(self, report: Path) -> None:
        text = report.read_text(encoding="utf-8")
        page = _Page()
        page.feed(text)
        assert page.external == []
        assert page.scripts == 0
        assert "<?xml" not in text and "<!DOCTYPE svg" not in text
        urls = set(re.findall(r"https?://[^\"'<> )]+", text))
        assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
        ids = re.findall(r'\bid="([^"]+)"', text)
        assert len(ids) == len(set(ids)), "SVG ids are unique in the page"

    def test_user_strings_are_escaped(self, tmp_path: Path) -> None:
        name = "<script>alert(1)</script>"
        events = list(generate(StreamSpec(name, 8000, 5)))
        source = _write(tmp_path / "odd.jsonl", events)
        out = tmp_path / "odd.html"
        spec = f"model={name},feature=amount,kind=mean,shift=2sd,at=0.5"
        assert main(["replay", str(source), "--html", str(out), "--inject", spec]) == 0
        text = out.read_text(encoding="utf-8")
        assert "<script>" not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text

    def test_a_config_file_is_explained(self, tmp_path: Path) -> None:
        config = tmp_path / "detector.yaml"
        config.write_text("detection:\n  reference_size: 256\n", encoding="utf-8")
        source = _write(tmp_path / "short.jsonl", list(generate(StreamSpec("fraud", 3000, 5))))
        out = tmp_path / "short.html"
        assert main(["replay", str(source), "--config", str(config), "--html", str(out)]) == 0
        text = out.read_text(encoding="utf-8")
        page = _Page()
        page.feed(text)
        assert page.figures == []  # no alert, no plot
        assert "reference_size: 256" in page.config_text
        assert re.search(r"reference_size = 256 +override \(detection.reference_size\)", text)
        assert "No alerts." in text

    def test_windows_of_an_alert(self, stream: Path) -> None:
        """The reference starts at the stream start; the current window ends at the
        trigger; both hold their evidence's count of the feature's values."""
        trace = StreamTrace()
        run = run_backtest(
            open_source(str(stream)),
            Settings(),
            injections=[parse_injection(SPECS[0])],
            trace=trace,
        )
        (alert,) = run.alerts
        position = run.positions[alert["alert_id"]]
        (window,) = windows(trace, "fraud", [alert], [position], 512, 512)
        assert window.reference is not None and window.current is not None
        width = trace.models["fraud"].width
        assert window.reference[0] == 0
        assert window.current[1] == position == 15284
        values = [e["features"]["amount"] for e in generate(StreamSpec("fraud", 30_000, 5))]
        present = [i for i, v in enumerate(values) if v is not None]
        assert abs(window.reference[1] - present[511]) <= width
        k = present.index(max(i for i in present if i <= position))
        assert abs(window.current[0] - present[k - 511]) <= width

    def test_without_matplotlib(
        self, stream: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
    ) -> None:
        monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
        out = tmp_path / "none.html"
        assert main(["replay", str(stream), "--html", str(out)]) == 2
        assert capsys.readouterr().err == (
            "detector: --html needs matplotlib: pip install 'drift-detector[tuning]'\n"
        )
        assert not out.exists()


# -- in a browser ------------------------------------------------------------------------------


_FIGURES_JS = """
JSON.stringify(Array.from(document.querySelectorAll('figure.plot')).map(f => {
  const svgs = f.querySelectorAll('svg');
  const box = svgs.length ? svgs[0].getBoundingClientRect() : {width: 0, height: 0};
  return {model: f.dataset.model, feature: f.dataset.feature, svgs: svgs.length,
          shapes: svgs.length ? svgs[0].querySelectorAll('path, use').length : 0,
          width: box.width, height: box.height};
}))
"""


def test_the_report_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    browser = Chromium(tmp_path / "chromium-profile")
    try:
        browser.connect()
        for domain in ("Runtime", "Log", "Network", "Page"):
            browser.send(f"{domain}.enable")
        url = report.resolve().as_uri()
        browser.send("Page.navigate", url=url)
        browser.wait_for("Page.loadEventFired")
        result = browser.send("Runtime.evaluate", expression=_FIGURES_JS, returnByValue=True)
        figures = json.loads(result["result"]["value"])
        errors = browser.errors()
        requests = [
            e["params"]["request"]["url"]
            for e in browser.events
            if e["method"] == "Network.requestWillBeSent"
        ]
    finally:
        browser.close()
    assert errors == []
    assert requests and all(r.startswith("file://") for r in requests), requests
    assert sorted(f["feature"] for f in figures) == sorted(ALERTING)
    for figure in figures:
        assert figure["model"] == "fraud"
        assert figure["svgs"] == 1, figure
        assert figure["shapes"] > 0, figure
        assert figure["width"] > 0 and figure["height"] > 0, figure
