"""``detector replay --html FILE``: one self-contained HTML report of a backtest.

The file needs nothing but itself to open: the CSS is inline, the plots are static SVG
rendered by matplotlib (Agg, no pyplot state, glyphs drawn as paths so no font is
loaded), inline in the page, and there is no JavaScript and no external URL.

Per model: its counts; per alerting feature, one ``<figure class="plot">`` (a panel per
statistic its alerts are about, over the model's events, from the
:class:`~detector.tuning.trace.StreamTrace`) with each alert's reference and current windows
shaded, a marker at each alert (``A1``, ``A2``... as in the evidence table) and each
injected change's start; then the evidence table; then the injected changes of the model
(start, the alert that found it, its delay, the false alarms before it). At the end, the
configuration that produced the alerts.

How the windows are drawn: a tracker's reference is the first ``reference_size``
observations (its evidence's ``reference.count``) after the stream's start or after the
tracker's previous alert, where it re-learns; its current window is the last
``current.count`` observations up to the trigger. Observations are a feature's non-null
values for the value trackers (mean, variance, categorical, prediction: one tracker), the
feature's events for the missing rate, the labelled events for the error rate; the trace
maps them back to model-event positions. A detection suppressed as a repeat (``rearm_after``)
re-learns too, and is not shown: a window after one starts earlier than drawn. Partitions
are drawn one after the other, as replayed.

Estimated performance (``estimated_performance`` alerts, on the ``__error__`` figure): a
panel "accuracy" draws the estimated accuracy (the scored predictions' calibrated
probabilities of being right, per point) next to the realized accuracy (the share of the
labelled predictions of that stretch that were right, whenever their labels came, from
the events' own labels or ``--labels``). The evidence table gives, for each window of
such an alert, the estimate with its 95 % interval as the alert carries it and the
realized accuracy of the same window in hindsight (:func:`realized`: the labelled
predictions among the window's positions; over the trace's bins, so exact while they are
one event wide and pro-rated at the window's edges otherwise).
"""

from __future__ import annotations

import html
import io
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from detector.core.hits import OTHER
from detector.core.settings import ERROR, PREDICTION
from detector.errors import TuningError
from detector.tuning.trace import MISSING, TRACKER_OF, VALUES, ModelTrace, Series, StreamTrace

if TYPE_CHECKING:
    from detector.tuning.backtest import Backtest, InjectionOutcome

#: Points per plot, at most: bins of the trace are summed into this many.
MAX_POINTS = 300
#: Characters of a name shown inside a plot.
LABEL_CHARS = 40

_NAMES = {PREDICTION: "prediction", ERROR: "error rate"}

_MISSING_MATPLOTLIB = "--html needs matplotlib: pip install 'drift-detector[tuning]'"


def require_matplotlib() -> None:
    """TuningError unless matplotlib can be imported (``--html`` is checked before a run)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise TuningError(_MISSING_MATPLOTLIB) from None


# -- what is plotted ---------------------------------------------------------------------


@dataclass
class Window:
    """An alert's reference and current windows, as model-event positions (inclusive)."""

    reference: tuple[int, int] | None
    current: tuple[int, int] | None


@dataclass
class Panel:
    """One statistic of a feature: its alerts and, for shares, the categories drawn."""

    statistic: str  # mean | std | share | missing | error
    alerts: list[int] = field(default_factory=list)  # indexes into the feature's alerts
    categories: list[str] = field(default_factory=list)


_PANEL_ORDER = ("mean", "std", "share", "missing", "error", "accuracy")
_PANEL_TITLES = {
    "mean": "mean",
    "std": "standard deviation",
    "share": "category share",
    "missing": "missing rate",
    "error": "error rate",
    "accuracy": "accuracy, estimated and realized",
}


def _panel_of(alert: dict[str, Any]) -> str:
    drift_type = alert["drift_type"]
    statistic = alert["evidence"].get("statistic")
    if drift_type == "missing_rate":
        return "missing"
    if drift_type == "estimated_performance":
        return "accuracy"
    if drift_type in ("performance", "error_rate"):
        return "error"
    if drift_type == "categorical" or statistic == "share":
        return "share"
    if drift_type == "variance" or statistic == "variance":
        return "std"
    return "mean"


def _tracker(alert: dict[str, Any]) -> str:
    return TRACKER_OF.get(alert["drift_type"], VALUES)


def windows(
    trace: StreamTrace,
    model: str,
    alerts: Sequence[dict[str, Any]],
    positions: Sequence[int | None],
    reference_size: int,
    window_size: int,
) -> list[Window]:
    """The windows of each alert of one feature (in trigger order). A tracker's reference
    starts after the stream's start or its previous alert."""
    out: list[Window] = []
    previous: dict[str, float] = {}
    for alert, position in zip(alerts, positions, strict=True):
        if position is None or trace.model(model) is None:
            out.append(Window(None, None))
            continue
        feature = alert["feature"]
        tracker = _tracker(alert)
        evidence = alert["evidence"]
        at = trace.count_at(model, feature, tracker, position)
        before = previous.get(tracker, 0.0)
        previous[tracker] = at
        ref_count = evidence.get("reference", {}).get("count") or reference_size
        cur_count = evidence.get("current", {}).get("count") or window_size
        ref_count = min(ref_count, max(at - before, 1.0))
        if tracker == MISSING:  # a rate tracker's current window restarts with it
            cur_count = min(cur_count, max(at - before, 1.0))
        reference = (
            trace.position_of(model, feature, tracker, before + 1),
            trace.position_of(model, feature, tracker, before + ref_count),
        )
        current = (trace.position_of(model, feature, tracker, at - cur_count + 1), position)
        out.append(Window(reference, current))
    return out


def realized(trace: StreamTrace, model: str, span: tuple[int, int]) -> tuple[float | None, float]:
    """The realized accuracy of the labelled predictions at positions ``span`` (inclusive)
    and how many there were (pro-rated in bins wider than one event)."""
    model_trace = trace.model(model)
    error = model_trace.error if model_trace is not None else None
    if model_trace is None or error is None:
        return None, 0.0
    width = model_trace.width
    lo, hi = span
    labelled = wrong = 0.0
    for b in range(lo // width, min(hi // width, len(error.events) - 1) + 1):
        start, end = b * width, (b + 1) * width - 1
        inside = (min(end, hi) - max(start, lo) + 1) / width
        labelled += error.events[b] * inside
        wrong += error.flags[b] * inside
    if labelled <= 0:
        return None, 0.0
    return 1.0 - wrong / labelled, labelled


def _grouped(values: np.ndarray, group: int) -> np.ndarray:
    if group == 1:
        return values
    pad = (-values.shape[0]) % group
    if pad:
        values = np.concatenate((values, np.zeros(pad)))
    summed: np.ndarray = values.reshape(-1, group).sum(axis=1)
    return summed


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _codes(alert: dict[str, Any], min_share: float, max_categories: int) -> list[str]:
    """The reference's frequent categories (the tracker's codes), from the evidence."""
    frequencies = alert["evidence"].get("reference", {}).get("frequencies") or {}
    frequent = [n for n, share in frequencies.items() if n != OTHER and share >= min_share]
    return frequent[:max_categories]


def _series_points(
    series: Series | None, statistic: str, group: int, category: str | None, codes: list[str]
) -> np.ndarray:
    """The statistic per plotted point (NaN where there is no observation)."""
    if series is None:
        return np.zeros(0)
    present = _grouped(series.array("present"), group)
    if statistic == "mean":
        return _ratio(_grouped(series.array("total"), group), present)
    if statistic == "std":
        mean = _ratio(_grouped(series.array("total"), group), present)
        square = _ratio(_grouped(series.array("squares"), group), present)
        with np.errstate(invalid="ignore"):
            spread: np.ndarray = np.sqrt(np.maximum(square - mean * mean, 0.0))
        return spread
    if statistic == "missing":
        events = _grouped(series.array("events"), group)
        return 1.0 - _ratio(present, events)
    if statistic == "error":
        return _ratio(
            _grouped(series.array("flags"), group), _grouped(series.array("events"), group)
        )
    assert category is not None
    if category == OTHER:
        kept = sum((series.share(c) for c in codes), np.zeros(len(series.events)))
        counts = series.array("present") - kept
    elif category in series.categories:
        counts = series.share(category)
    else:
        counts = series.array("other")
    return _ratio(_grouped(counts, group), present)


# -- rendering the plots -------------------------------------------------------------------


def plain(text: str) -> str:
    """A name as matplotlib text: shortened, no mathtext."""
    if len(text) > LABEL_CHARS:
        text = text[: LABEL_CHARS - 1] + "…"
    return text.replace("\\", "\\\\").replace("$", r"\$")


_ID = re.compile(r'\bid="([^"]+)"')
_REF = re.compile(r'(xlink:href|href)="#([^"]+)"')
_URL = re.compile(r"url\(#([^)]+)\)")
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)


def inline_svg(data: str, prefix: str) -> str:
    """matplotlib's SVG document as an element to put in the page: no XML prolog,
    doctype or metadata (which names URLs), its ids prefixed so that the page's SVGs do
    not share any."""
    start = data.find("<svg")
    svg = _METADATA.sub("", data[start:].strip(), count=1)
    svg = _ID.sub(lambda m: f'id="{prefix}{m.group(1)}"', svg)
    svg = _REF.sub(lambda m: f'{m.group(1)}="#{prefix}{m.group(2)}"', svg)
    return _URL.sub(lambda m: f"url(#{prefix}{m.group(1)})", svg)


@dataclass
class _Drawn:
    """One feature of one model, ready to draw."""

    model: str
    feature: str
    alerts: list[dict[str, Any]]
    numbers: list[int]  # the alerts' numbers in the model (A1...)
    positions: list[int | None]
    windows: list[Window]
    injections: list[InjectionOutcome]


def _panels(drawn: _Drawn) -> list[Panel]:
    panels: dict[str, Panel] = {}
    for i, alert in enumerate(drawn.alerts):
        name = _panel_of(alert)
        panel = panels.setdefault(name, Panel(name))
        panel.alerts.append(i)
        category = alert["evidence"].get("category")
        if name == "share" and isinstance(category, str) and category not in panel.categories:
            panel.categories.append(category)
    return [panels[name] for name in _PANEL_ORDER if name in panels]


def _plot(
    drawn: _Drawn, trace: StreamTrace, index: int, min_share: float, max_categories: int
) -> str:
    """The SVG of one feature's figure (``index``: its number in the page, for its ids)."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    model_trace: ModelTrace | None = trace.model(drawn.model)
    series = model_trace.series(drawn.feature) if model_trace is not None else None
    width = model_trace.width if model_trace is not None else 1
    events = model_trace.events if model_trace is not None else 0
    bins = model_trace.bins if model_trace is not None else 0
    group = max(1, math.ceil(bins / MAX_POINTS))
    span = width * group
    panels = _panels(drawn)
    salt = f"{drawn.model}/{drawn.feature}"
    with rc_context(
        {"svg.fonttype": "path", "svg.hashsalt": salt, "font.size": 8, "axes.titlesize": 9}
    ):
        figure = Figure(figsize=(9.0, 0.6 + 2.1 * len(panels)), layout="constrained")
        axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
        for ax, panel in zip(axes, panels, strict=True):
            _draw_panel(
                ax,
                panel,
                drawn,
                model_trace,
                series,
                group,
                span,
                events,
                min_share,
                max_categories,
            )
        axes[-1].set_xlabel(f"{plain(drawn.model)} events (each point: {span:,} events)")
        if events:
            axes[-1].set_xlim(0, events)
        handles = [
            Patch(facecolor="#4c78a8", alpha=0.18, label="reference window"),
            Patch(facecolor="#f58518", alpha=0.25, label="current window"),
            Patch(facecolor="#d62728", label="alert"),
        ]
        if drawn.injections:
            handles.append(Patch(facecolor="#9467bd", label="injected change starts"))
        figure.legend(
            handles=handles,
            loc="outside upper left",
            ncols=len(handles),
            frameon=False,
            fontsize=7,
        )
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    return inline_svg(buffer.getvalue(), f"plot{index}-")


def _draw_panel(
    ax: Any,
    panel: Panel,
    drawn: _Drawn,
    model_trace: ModelTrace | None,
    series: Series | None,
    group: int,
    span: int,
    events: int,
    min_share: float,
    max_categories: int,
) -> None:
    statistic = panel.statistic
    source = series
    lines: list[tuple[str, np.ndarray]] = []
    if statistic == "share":
        first = drawn.alerts[panel.alerts[0]]
        codes = _codes(first, min_share, max_categories)
        for category in panel.categories:
            shown = "other categories" if category == OTHER else category
            points = _series_points(source, statistic, group, category, codes)
            lines.append((f"share of {shown}", points))
    elif statistic == "accuracy":
        estimated = model_trace.estimated if model_trace is not None else None
        if estimated is not None:
            lines.append(
                (
                    "estimated accuracy",
                    _ratio(
                        _grouped(estimated.array("total"), group),
                        _grouped(estimated.array("events"), group),
                    ),
                )
            )
        errors = _series_points(source, "error", group, None, [])
        lines.append(("realized accuracy", 1.0 - errors))
    else:
        lines.append((_PANEL_TITLES[statistic], _series_points(source, statistic, group, None, [])))
    colors = ("#1f77b4", "#2ca02c", "#8c564b", "#17becf", "#7f7f7f")
    for i, (label, points) in enumerate(lines):
        if not points.size:
            continue
        x = np.minimum(np.arange(points.shape[0]) * span + span / 2.0, max(events - 0.5, 0))
        ax.plot(x, points, color=colors[i % len(colors)], linewidth=1.0, label=plain(label))
    if len(lines) > 1:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    title = _PANEL_TITLES[statistic]
    if statistic in ("share", "accuracy") and len(lines) == 1:
        title = lines[0][0]
    ax.set_title(plain(title), loc="left")
    ax.grid(True, linewidth=0.3, alpha=0.5)
    label_axis = ax.get_xaxis_transform()
    for i in panel.alerts:
        window = drawn.windows[i]
        if window.reference is not None:
            ax.axvspan(window.reference[0], window.reference[1] + 1, color="#4c78a8", alpha=0.18)
        if window.current is not None:
            ax.axvspan(window.current[0], window.current[1] + 1, color="#f58518", alpha=0.25)
    for i, position in enumerate(drawn.positions):
        if position is None:
            continue
        own = i in panel.alerts
        ax.axvline(
            position, color="#d62728", linewidth=1.2 if own else 0.6, linestyle="-" if own else ":"
        )
        if own:
            ax.text(
                position,
                0.98,
                f" A{drawn.numbers[i]}",
                transform=label_axis,
                color="#d62728",
                va="top",
                ha="left",
                fontsize=7,
            )
    for outcome in drawn.injections:
        start = outcome.plan.start
        ax.axvline(start, color="#9467bd", linewidth=1.0, linestyle="--")
        ramp = outcome.plan.injection.ramp
        if ramp:
            ax.axvspan(start, start + ramp, color="#9467bd", alpha=0.08)
        ax.text(
            start,
            0.02,
            " injected",
            transform=label_axis,
            color="#9467bd",
            va="bottom",
            ha="left",
            fontsize=7,
        )


# -- the page ------------------------------------------------------------------------------

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       margin: 2em auto; max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: .2em;
margin-top: 2em; } h3 { margin-top: 1.6em; }
code, pre, td.num, td.mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas,
  monospace; font-size: 12.5px; }
table { border-collapse: collapse; margin: .6em 0 1em; width: 100%; }
th, td { border: 1px solid #ddd; padding: .3em .5em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; white-space: nowrap; }
tr.critical td.severity { color: #b00; font-weight: 600; }
figure.plot { margin: .5em 0; } figure.plot svg { width: 100%; height: auto; display: block; }
figcaption { color: #555; font-size: .9em; }
pre { background: #f7f7f7; border: 1px solid #e3e3e3; padding: .8em; overflow-x: auto; }
.muted { color: #666; } dl.counts { display: grid; grid-template-columns: max-content auto;
gap: .1em 1em; } dl.counts dt { color: #555; } dl.counts dd { margin: 0; }
"""


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def number_text(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def percent(value: Any) -> str:
    return "-" if value is None else f"{value:.1%}"


def _feature_name(feature: str) -> str:
    if feature in _NAMES:
        return f"{_NAMES[feature]} ({feature})"
    return feature


def window_text(
    window: dict[str, Any],
    category: str | None,
    hindsight: tuple[float | None, float] | None = None,
) -> str:
    """One window's summary, as HTML."""
    parts: list[str] = []
    if "count" in window:
        parts.append(f"n {window['count']:,}")
    if "mean" in window:
        parts.append(f"mean {number_text(window.get('mean'))}")
        parts.append(f"std {number_text(window.get('std'))}")
        quantiles = window.get("quantiles") or {}
        if quantiles:
            shown = ", ".join(f"{escape(k)} {number_text(v)}" for k, v in quantiles.items())
            parts.append(f"quantiles {shown}")
    if "frequencies" in window:
        frequencies = window.get("frequencies") or {}
        if category is not None:
            parts.append(f"share of {escape(category)} {percent(frequencies.get(category, 0.0))}")
        top = list(frequencies.items())[:6]
        shown = ", ".join(f"{escape(k)} {percent(v)}" for k, v in top)
        more = " …" if len(frequencies) > len(top) else ""
        parts.append(f"shares {shown}{more}")
    if "rate" in window:
        parts.append(f"rate {percent(window['rate'])}")
    if "error_rate" in window:
        parts.append(f"error rate {percent(window['error_rate'])}")
        if window.get("roc_auc") is not None:
            parts.append(f"ROC AUC {number_text(window['roc_auc'], 3)}")
    if "estimated_accuracy" in window:
        low, high = window.get("estimated_accuracy_ci") or (None, None)
        parts.append(
            f"estimated accuracy {percent(window['estimated_accuracy'])} "
            f"(95% {percent(low)} to {percent(high)})"
        )
        if window.get("estimated_roc_auc") is not None:
            parts.append(f"estimated ROC AUC {number_text(window['estimated_roc_auc'], 3)}")
    if hindsight is not None:
        accuracy, labelled = hindsight
        shown = "-" if accuracy is None else percent(accuracy)
        parts.append(
            f"<span class='realized'>realized accuracy {shown} "
            f"({labelled:,.0f} labelled, in hindsight)</span>"
        )
    if window.get("missing_rate") is not None:
        parts.append(f"missing {percent(window['missing_rate'])}")
    return "<br>".join(parts) or "-"


def _detector_text(detector: dict[str, Any]) -> str:
    params = detector.get("params") or {}
    shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
    block = detector.get("block_size")
    suffix = f"; blocks of {block}" if block is not None else ""
    return f"{escape(detector.get('name', '?'))}({escape(shown)}){escape(suffix)}"


def _evidence_table(drawn: _Drawn, trace: StreamTrace) -> str:
    rows = [
        f"<table class='evidence' data-model='{escape(drawn.model)}' "
        f"data-feature='{escape(drawn.feature)}'>",
        "<thead><tr><th>#</th><th>drift type</th><th>position</th><th>event time</th>"
        "<th>detector</th><th>reference</th><th>current</th><th>effect size</th>"
        "<th>severity</th></tr></thead><tbody>",
    ]
    for alert, number, position, window in zip(
        drawn.alerts, drawn.numbers, drawn.positions, drawn.windows, strict=True
    ):
        trigger = alert["trigger"]
        where = f"p{trigger['partition']}@{trigger['offset']}"
        if position is not None:
            where += f" (#{position:,})"
        evidence = alert["evidence"]
        category = evidence.get("category")
        statistic = evidence.get("statistic")
        drift = escape(alert["drift_type"])
        if statistic:
            drift += f"<br><span class='muted'>statistic {escape(statistic)}</span>"
        if category is not None:
            drift += f"<br><span class='muted'>category {escape(category)}</span>"
        severity = escape(alert["severity"])
        hindsight: list[tuple[float | None, float] | None] = [None, None]
        if alert["drift_type"] == "estimated_performance":
            for i, span in enumerate((window.reference, window.current)):
                if span is not None:
                    hindsight[i] = realized(trace, drawn.model, span)
        rows.append(
            f"<tr class='alert {severity}' id='alert-{escape(alert['alert_id'])}' "
            f"data-alert-id='{escape(alert['alert_id'])}'>"
            f"<td>A{number}</td><td>{drift}</td><td class='mono'>{escape(where)}<br>"
            f"<span class='muted'>event {escape(trigger.get('event_id'))}</span></td>"
            f"<td class='mono'>{escape(alert['detected_at'])}</td>"
            f"<td class='mono'>{_detector_text(alert['detector'])}</td>"
            f"<td>{window_text(evidence.get('reference') or {}, category, hindsight[0])}</td>"
            f"<td>{window_text(evidence.get('current') or {}, category, hindsight[1])}</td>"
            f"<td class='num'>{number_text(evidence.get('effect_size'), 3)}</td>"
            f"<td class='severity'>{severity}</td></tr>"
        )
    rows.append("</tbody></table>")
    return "\n".join(rows)


def _injection_table(outcomes: Sequence[InjectionOutcome], numbers: dict[str, int]) -> str:
    rows = [
        "<table class='injections'><thead><tr><th>change</th><th>feature</th><th>kind</th>"
        "<th>start</th><th>detected</th><th>delay (events)</th>"
        "<th>false alarms before</th></tr></thead><tbody>"
    ]
    for outcome in outcomes:
        injection = outcome.plan.injection
        found = outcome.found_by
        if found is None:
            detected = "no"
        else:
            number = numbers.get(found["alert_id"])
            anchor = f"#alert-{escape(found['alert_id'])}"
            detected = f"yes, <a href='{anchor}'>A{number}</a> ({escape(found['drift_type'])})"
        delay = "-" if outcome.delay is None else f"{outcome.delay:,}"
        rows.append(
            f"<tr class='injection' data-spec='{escape(injection.spec)}'>"
            f"<td class='mono'>{escape(injection.spec)}</td>"
            f"<td>{escape(_feature_name(injection.feature))}</td><td>{escape(injection.kind)}</td>"
            f"<td class='num'>#{outcome.plan.start:,}</td><td>{detected}</td>"
            f"<td class='num delay'>{delay}</td>"
            f"<td class='num false-alarms'>{outcome.false_alarms_before}</td></tr>"
        )
    rows.append("</tbody></table>")
    return "\n".join(rows)


def _config_section(backtest: Backtest, config_file: str | None, seed: int | None) -> str:
    settings = backtest.settings
    tree: dict[str, Any] = {"detection": settings.detection.model_dump(mode="json")}
    if settings.calibration is not None:
        tree["calibration"] = settings.calibration.model_dump(mode="json")
    text = yaml.safe_dump(tree, sort_keys=False, allow_unicode=True, width=100)
    source = f"the file {config_file}" if config_file else "no file: the built-in defaults"
    parts = [
        "<section id='config' class='config'>",
        "<h2>Configuration</h2>",
        f"<p>Loaded from {escape(source)}, as <code>detector run</code> loads it. The detection "
        "settings in force (every value, defaults included; the <code>kafka</code>, "
        "<code>server</code> and <code>log</code> sections do not change detections and "
        "are not shown):</p>",
        f"<pre class='config-yaml'>{escape(text)}</pre>",
    ]
    if backtest.injections:
        specs = " ".join(f"--inject '{o.plan.injection.spec}'" for o in backtest.injections)
        seed_text = "" if seed is None else f" --seed {seed}"
        parts.append(f"<p>Injected changes: <code>{escape(specs)}{escape(seed_text)}</code></p>")
    if config_file:
        from detector.tuning.explain import explain

        try:
            explained = explain(config_file, models=sorted(backtest.processed) or None)
        except Exception as exc:  # the file was loaded for the run: only if it changed since
            explained = f"(could not explain {config_file}: {exc})"
        parts.append("<h3>Each detector and where its values come from</h3>")
        parts.append(f"<pre class='config-explain'>{escape(explained)}</pre>")
    parts.append("</section>")
    return "\n".join(parts)


def _by_feature(alerts: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for alert in alerts:
        grouped.setdefault(alert["feature"], []).append(alert)
    return grouped


def render(
    backtest: Backtest,
    trace: StreamTrace,
    *,
    config_file: str | None = None,
    seed: int | None = None,
) -> str:
    """The report's HTML."""
    require_matplotlib()
    detection = backtest.settings.detection
    summary = backtest.summary()
    out: list[str] = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>detector replay: {escape(backtest.source)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Backtest of <code>{escape(backtest.source)}</code></h1>",
        "<dl class='counts'>",
        f"<dt>records</dt><dd>{summary['records']:,}</dd>",
        f"<dt>events</dt><dd>{summary['events']:,}</dd>",
        f"<dt>alerts</dt><dd>{summary['alerts']:,}</dd>",
    ]
    rejected = ", ".join(f"{escape(k)} {v:,}" for k, v in summary["rejected_by_reason"].items())
    out.append(
        f"<dt>rejected</dt><dd>{summary['rejected']:,}{f' ({rejected})' if rejected else ''}</dd>"
    )
    out.append(f"<dt>time</dt><dd>{backtest.elapsed_s:.1f} s</dd></dl>")
    models = summary["models"]
    if models:
        links = ", ".join(
            f"<a href='#model-{i}'>{escape(name)}</a>" for i, name in enumerate(models)
        )
        out.append(f"<p>Models: {links}. <a href='#config'>Configuration</a>.</p>")
    numbers: dict[str, int] = {}
    figures = 0
    for i, (model, entry) in enumerate(models.items()):
        alerts = [a for a in backtest.alerts if a["model"] == model]
        for n, alert in enumerate(alerts, start=1):
            numbers[alert["alert_id"]] = n
        outcomes = [o for o in backtest.injections if o.plan.injection.model == model]
        out.append(f"<section class='model' id='model-{i}' data-model='{escape(model)}'>")
        out.append(f"<h2>Model {escape(model)}</h2>")
        kinds = ", ".join(f"{escape(k)} {v}" for k, v in sorted(entry["by_drift_type"].items()))
        model_trace = trace.model(model)
        width = f"; the trace's bins are {model_trace.width:,} events wide" if model_trace else ""
        out.append(
            f"<p class='counts'>{entry['events']:,} events, {entry['alerts']} "
            f"alert{'s' if entry['alerts'] != 1 else ''}{f' ({kinds})' if kinds else ''}"
            f"{width}.</p>"
        )
        if not alerts:
            out.append("<p class='muted'>No alerts.</p>")
        for feature, feature_alerts in _by_feature(alerts).items():
            positions = [backtest.positions.get(a["alert_id"]) for a in feature_alerts]
            drawn = _Drawn(
                model=model,
                feature=feature,
                alerts=feature_alerts,
                numbers=[numbers[a["alert_id"]] for a in feature_alerts],
                positions=positions,
                windows=windows(
                    trace,
                    model,
                    feature_alerts,
                    positions,
                    detection.reference_size,
                    detection.window_size,
                ),
                injections=[o for o in outcomes if o.plan.injection.feature == feature],
            )
            svg = _plot(
                drawn, trace, figures, detection.min_category_share, detection.max_categories
            )
            figures += 1
            out.append(f"<section class='feature' data-feature='{escape(feature)}'>")
            out.append(f"<h3>{escape(_feature_name(feature))}</h3>")
            out.append(
                f"<figure class='plot' data-model='{escape(model)}' "
                f"data-feature='{escape(feature)}'>"
            )
            out.append(svg)
            out.append(
                "<figcaption>The watched statistic over the model's events. Shaded: each "
                "alert's reference (blue) and current (orange) window; red: the alerts; "
                "purple, dashed: an injected change's start.</figcaption></figure>"
            )
            out.append(_evidence_table(drawn, trace))
            out.append("</section>")
        if outcomes:
            out.append("<h3>Injected changes</h3>")
            out.append(_injection_table(outcomes, numbers))
        out.append("</section>")
    out.append(_config_section(backtest, config_file, seed))
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_report(
    backtest: Backtest,
    trace: StreamTrace,
    path: str | Path,
    *,
    config_file: str | None = None,
    seed: int | None = None,
) -> None:
    """Write the report of ``backtest`` (whose run was shown to ``trace``) to ``path``."""
    text = render(backtest, trace, config_file=config_file, seed=seed)
    Path(path).write_text(text, encoding="utf-8")


__all__ = [
    "CSS",
    "MAX_POINTS",
    "Window",
    "escape",
    "inline_svg",
    "number_text",
    "percent",
    "plain",
    "realized",
    "render",
    "require_matplotlib",
    "window_text",
    "windows",
    "write_report",
]
