"""One alert's evidence as an inline SVG (detector.audit.figures): the elements each kind
of evidence draws, ids prefixed, no user string in the markup."""

from __future__ import annotations

import re
from typing import Any

import pytest
from vendors import amount_alert, country_alert

from detector.audit.figures import evidence_svg


def _ids(svg: str, prefix: str) -> list[str]:
    return [i[len(prefix) :] for i in re.findall(r'\bid="([^"]+)"', svg) if i.startswith(prefix)]


def _drawn(svg: str, prefix: str, kind: str) -> list[str]:
    return sorted(i for i in _ids(svg, prefix) if i.startswith(kind))


def _with(evidence: dict[str, Any], drift_type: str) -> dict[str, Any]:
    return amount_alert(drift_type=drift_type, evidence=evidence)


def test_numbers_draw_quantiles_and_mean() -> None:
    alert = amount_alert()
    alert["evidence"]["reference"]["quantiles"] = {"p05": 6.1, "p50": 30.0, "p95": 99.0}
    svg = evidence_svg(alert, "f-")
    assert svg.startswith("<svg")
    assert _drawn(svg, "f-", "quantile-") == [
        "quantile-current-0",
        "quantile-reference-0",
        "quantile-reference-1",
        "quantile-reference-2",
    ]
    assert _drawn(svg, "f-", "mean-") == ["mean-current", "mean-reference"]


def test_one_bar_per_category_and_window() -> None:
    alert = country_alert()
    alert["evidence"]["reference"]["frequencies"] = {"US": 0.5, "DE": 0.3, "__other__": 0.2}
    svg = evidence_svg(alert, "c-")
    # US, DE, other categories: three bars in each window.
    assert _drawn(svg, "c-", "bar-") == [
        f"bar-{w}-{i}" for w in ("current", "reference") for i in range(3)
    ]


def test_many_categories_fold_into_other() -> None:
    frequencies = {f"c{i}": 0.05 for i in range(20)}
    alert = country_alert()
    alert["evidence"]["reference"]["frequencies"] = frequencies
    svg = evidence_svg(alert, "m-")
    assert len(_drawn(svg, "m-", "bar-reference-")) == 9  # 8 and "other categories"


@pytest.mark.parametrize(
    ("drift_type", "evidence", "expected"),
    [
        (
            "missing_rate",
            {
                "statistic": "rate",
                "reference": {"count": 9, "rate": 0.01},
                "current": {"count": 9, "rate": 0.3},
            },
            ["rate-current", "rate-reference"],
        ),
        (
            "performance",
            {
                "statistic": "error_rate",
                "reference": {"count": 9, "error_rate": 0.1},
                "current": {"count": 9, "error_rate": 0.4},
            },
            ["error-current", "error-reference"],
        ),
        (
            "estimated_performance",
            {
                "statistic": "estimated_accuracy",
                "calibration": {"count": 500, "realized_accuracy": 0.9},
                "reference": {
                    "count": 9,
                    "estimated_accuracy": 0.9,
                    "estimated_accuracy_ci": [0.88, 0.92],
                },
                "current": {
                    "count": 9,
                    "estimated_accuracy": 0.7,
                    "estimated_accuracy_ci": [0.65, 0.75],
                },
            },
            [
                "accuracy-current",
                "accuracy-reference",
                "calibration",
                "interval-current",
                "interval-reference",
            ],
        ),
        (
            "fairness",
            {
                "statistic": "disparate_impact",
                "reference": {"disparate_impact": 0.95},
                "current": {
                    "disparate_impact": 0.5,
                    "groups": {
                        "f": {
                            "decisions": 400,
                            "selection_rate": 0.2,
                            "selection_rate_ci": [0.16, 0.24],
                        },
                        "m": {
                            "decisions": 400,
                            "selection_rate": 0.4,
                            "selection_rate_ci": [0.35, 0.45],
                        },
                    },
                },
            },
            ["four-fifths", "group-0", "group-1", "impact-current", "impact-reference"],
        ),
    ],
)
def test_rates_accuracy_and_fairness(
    drift_type: str, evidence: dict[str, Any], expected: list[str]
) -> None:
    svg = evidence_svg(_with(evidence, drift_type), "r-")
    drawn = sorted(
        i
        for i in _ids(svg, "r-")
        if re.match(r"(rate|error|accuracy|interval|calibration|group|impact|four)", i)
    )
    assert drawn == expected


def test_user_strings_are_not_in_the_markup() -> None:
    name = "<script>alert(1)</script>"
    alert = country_alert(feature=name, alert_id='"><script>x</script>')
    alert["evidence"]["reference"]["frequencies"] = {name: 0.5, "$x$": 0.5}
    svg = evidence_svg(alert)
    assert "<script" not in svg and "</script" not in svg
    assert "<?xml" not in svg and "<metadata" not in svg
    ids = re.findall(r'\bid="([^"]+)"', svg)
    assert ids and all(i.startswith("ev-scriptxscript-") for i in ids)
