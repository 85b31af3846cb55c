"""One alert's evidence as an inline SVG figure, from the alert alone (no trace, no Kafka):
its reference window against its current window.

What is drawn depends on what the evidence holds (schemas/drift-alert.v1.json):

- numbers (``mean``, ``variance``, ``prediction`` of a number): each window's quantiles on
  one line and its mean with one standard deviation either side;
- categories (``categorical``, ``prediction`` of a class): one bar per category and
  window, the reference's most frequent first, the rest as "other categories";
- rates (``missing_rate``): the two rates; ``performance``: the two error rates;
- ``estimated_performance``: the two estimated accuracies with their 95 % intervals, and
  the realized accuracy of the calibration window;
- ``fairness``: each group's selection rate with its interval, and the disparate impact
  of both windows against the four-fifths line.

Drawn as ``detector replay --html`` draws (:mod:`detector.tuning.report`): matplotlib's
Agg figure without pyplot, glyphs as paths (no font is loaded or named), ids prefixed so
that a page's SVGs share none. Each drawn element has an id saying what it is
(``bar-reference-0``, ``quantile-current-3``, ...) and no user string, so a page's tests
can count them. matplotlib is the ``tuning`` extra: it is imported when a figure is drawn.
"""

from __future__ import annotations

import io
import re
from typing import Any

#: Categories drawn at most; the rest are summed into "other categories".
MAX_CATEGORIES = 8
#: The four-fifths rule's line for the disparate impact.
FOUR_FIFTHS = 0.8
_OTHER = "__other__"
_WINDOWS = ("reference", "current")
_COLORS = {"reference": "#4c78a8", "current": "#f58518"}


def _prefix(alert: dict[str, Any]) -> str:
    return "ev-" + re.sub(r"[^A-Za-z0-9-]", "", str(alert.get("alert_id")))[:40] + "-"


def _shape(evidence: dict[str, Any]) -> str:
    windows = [evidence.get(w) or {} for w in _WINDOWS]
    for key, shape in (
        ("groups", "fairness"),
        ("estimated_accuracy", "accuracy"),
        ("error_rate", "error"),
        ("frequencies", "categories"),
        ("rate", "rate"),
    ):
        if any(key in w for w in windows):
            return shape
    return "numbers"


def evidence_svg(alert: dict[str, Any], prefix: str | None = None) -> str:
    """The SVG element of ``alert``'s evidence (ids prefixed with ``prefix``, by default
    from the alert's id)."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    from detector.tuning.report import inline_svg, plain

    evidence = alert.get("evidence") if isinstance(alert.get("evidence"), dict) else {}
    assert isinstance(evidence, dict)
    shape = _shape(evidence)
    title = plain(f"{alert.get('feature')}: {alert.get('drift_type')}")
    with rc_context(
        {
            "svg.fonttype": "path",
            "svg.hashsalt": str(alert.get("alert_id")),
            "font.size": 7,
            "axes.titlesize": 8,
        }
    ):
        panels = 2 if shape == "fairness" else 1
        figure = Figure(figsize=(4.2, 1.5 + 0.9 * panels), layout="constrained")
        axes = figure.subplots(panels, 1, squeeze=False)[:, 0]
        draw = {
            "fairness": _fairness,
            "accuracy": _accuracy,
            "error": _error,
            "categories": _categories,
            "rate": _rate,
            "numbers": _numbers,
        }[shape]
        draw(axes, evidence)
        axes[0].set_title(title, loc="left")
        for ax in axes:
            ax.grid(True, linewidth=0.3, alpha=0.5)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    return inline_svg(buffer.getvalue(), prefix if prefix is not None else _prefix(alert))


def _window(evidence: dict[str, Any], name: str) -> dict[str, Any]:
    window = evidence.get(name)
    return window if isinstance(window, dict) else {}


def _pair_bars(ax: Any, values: list[float | None], what: str, label: str) -> None:
    """One bar per window (reference, current), ids ``<what>-reference`` and
    ``<what>-current``."""
    for i, (name, value) in enumerate(zip(_WINDOWS, values, strict=True)):
        if value is None:
            continue
        (bar,) = ax.bar([i], [value], color=_COLORS[name], width=0.6)
        bar.set_gid(f"{what}-{name}")
    ax.set_xticks([0, 1], list(_WINDOWS))
    ax.set_ylabel(label)
    ax.set_xlim(-0.7, 1.7)


def _rate(axes: Any, evidence: dict[str, Any]) -> None:
    values = [_window(evidence, w).get("rate") for w in _WINDOWS]
    _pair_bars(axes[0], values, "rate", "rate")
    axes[0].set_ylim(0, 1)


def _error(axes: Any, evidence: dict[str, Any]) -> None:
    values = [_window(evidence, w).get("error_rate") for w in _WINDOWS]
    _pair_bars(axes[0], values, "error", "error rate")
    axes[0].set_ylim(0, 1)


def _accuracy(axes: Any, evidence: dict[str, Any]) -> None:
    ax = axes[0]
    values = [_window(evidence, w).get("estimated_accuracy") for w in _WINDOWS]
    _pair_bars(ax, values, "accuracy", "estimated accuracy")
    for i, name in enumerate(_WINDOWS):
        value = values[i]
        interval = _window(evidence, name).get("estimated_accuracy_ci")
        if value is None or not isinstance(interval, list) or len(interval) != 2:
            continue
        low, high = interval
        bars = ax.errorbar(
            [i], [value], yerr=[[value - low], [high - value]], color="#222", capsize=3
        )
        bars.lines[0].set_gid(f"interval-{name}")
    calibration = evidence.get("calibration")
    realized = calibration.get("realized_accuracy") if isinstance(calibration, dict) else None
    if realized is not None:
        line = ax.axhline(realized, color="#2ca02c", linestyle="--", linewidth=1.0)
        line.set_gid("calibration")
    ax.set_ylim(0, 1)


def _categories(axes: Any, evidence: dict[str, Any]) -> None:
    from detector.tuning.report import plain

    ax = axes[0]
    shares = [_window(evidence, w).get("frequencies") or {} for w in _WINDOWS]
    ranked = sorted(
        (c for c in set(shares[0]) | set(shares[1]) if c != _OTHER),
        key=lambda c: (-shares[0].get(c, 0.0), -shares[1].get(c, 0.0), c),
    )
    shown, rest = ranked[:MAX_CATEGORIES], ranked[MAX_CATEGORIES:]
    names = list(shown)
    values = [[float(s.get(c, 0.0)) for c in shown] for s in shares]
    if rest or any(_OTHER in s for s in shares):
        names.append("other categories")
        for v, s in zip(values, shares, strict=True):
            v.append(float(s.get(_OTHER, 0.0)) + sum(float(s.get(c, 0.0)) for c in rest))
    width = 0.4
    for w, name in enumerate(_WINDOWS):
        positions = [i + (w - 0.5) * width for i in range(len(names))]
        bars = ax.bar(positions, values[w], width=width, color=_COLORS[name], label=name)
        for i, bar in enumerate(bars):
            bar.set_gid(f"bar-{name}-{i}")
    ax.set_xticks(range(len(names)), [plain(n) for n in names], rotation=30, ha="right")
    ax.set_ylabel("share")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=6, frameon=False)


def _numbers(axes: Any, evidence: dict[str, Any]) -> None:
    ax = axes[0]
    for y, name in enumerate(_WINDOWS):
        window = _window(evidence, name)
        quantiles = [v for v in (window.get("quantiles") or {}).values() if v is not None]
        if quantiles:
            ax.plot(quantiles, [y] * len(quantiles), color=_COLORS[name], linewidth=1.0)
            for i, value in enumerate(quantiles):
                (point,) = ax.plot([value], [y], "|", color=_COLORS[name], markersize=10)
                point.set_gid(f"quantile-{name}-{i}")
        mean, std = window.get("mean"), window.get("std")
        if mean is not None:
            bars = ax.errorbar(
                [mean], [y + 0.25], xerr=[std or 0.0], fmt="o", color=_COLORS[name], capsize=3
            )
            bars.lines[0].set_gid(f"mean-{name}")
    ax.set_yticks([0, 1], list(_WINDOWS))
    ax.set_ylim(-0.6, 1.8)
    ax.set_xlabel("quantiles; mean \u00b1 1 std")


def _fairness(axes: Any, evidence: dict[str, Any]) -> None:
    from detector.tuning.report import plain

    ax, impact = axes
    current = _window(evidence, "current")
    groups = current.get("groups") if isinstance(current.get("groups"), dict) else {}
    assert isinstance(groups, dict)
    names = sorted(groups)
    for i, group in enumerate(names):
        metrics = groups[group] if isinstance(groups[group], dict) else {}
        rate = metrics.get("selection_rate")
        if rate is None:
            continue
        (bar,) = ax.bar([i], [rate], color=_COLORS["current"], width=0.6)
        bar.set_gid(f"group-{i}")
        interval = metrics.get("selection_rate_ci")
        if isinstance(interval, list) and len(interval) == 2:
            ax.errorbar(
                [i],
                [rate],
                yerr=[[rate - interval[0]], [interval[1] - rate]],
                color="#222",
                capsize=3,
            )
    ax.set_xticks(range(len(names)), [plain(str(n)) for n in names])
    ax.set_ylabel("selection rate (current)")
    ax.set_ylim(0, 1)
    values = [_window(evidence, w).get("disparate_impact") for w in _WINDOWS]
    _pair_bars(impact, values, "impact", "disparate impact")
    line = impact.axhline(FOUR_FIFTHS, color="#d62728", linestyle="--", linewidth=1.0)
    line.set_gid("four-fifths")
    impact.set_ylim(0, 1.05)


__all__ = ["FOUR_FIFTHS", "MAX_CATEGORIES", "evidence_svg"]
