"""The YAML file ``detector calibrate`` writes: the input config with the calibrated
detectors set, a comment on each, and the ``calibration`` section.

The file is the input file's own content (never the environment's values: no secret taken
from the environment is written) with ``detection.models.M.features.F.detector`` set for
every calibrated feature. It is checked before it is written: it must load back, with
PyYAML, into exactly the tree meant, so that ``detector run``, ``detector replay`` and a
SIGHUP reload read what the comments say.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from detector.core.settings import ERROR, PREDICTION
from detector.tuning.calibrate import Calibration, FeatureCalibration

_SHOWN = {PREDICTION: "the prediction", ERROR: "the error rate"}


def _flow(value: Any) -> str:
    """One YAML scalar, list or mapping on one line (PyYAML's own quoting and floats)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30, sort_keys=False)
    return text.removesuffix("\n...\n").strip()


def _feature_comment(feature: FeatureCalibration, calibration: Calibration) -> str:
    shown = _SHOWN.get(feature.feature, feature.feature)
    if feature.spec is None:
        return f"{shown}: {feature.note or 'kept as configured'}"
    param = feature.param
    assert feature.rate is not None and feature.interval is not None
    low, high = feature.interval
    text = (
        f"{shown}: {feature.spec.name} {param}={feature.spec.params[param]!r}, calibrated to "
        f"{feature.rate:.3g} false alarms per event (95% interval {low:.3g}..{high:.3g}; "
        f"its share of {calibration.budget} is {feature.target:.3g})"
    )
    if feature.extrapolated >= 0.05:
        text += f", extrapolated {feature.extrapolated:.1f} decades below the counted rates"
    if feature.delay is not None:
        text += f"; expected delay for a {feature.delay_kind}: {feature.delay:,.0f} events"
    elif feature.delay_kind is not None:
        text += f"; a {feature.delay_kind} was not found within the measured horizon"
    else:
        text += "; no delay measured (no injection for this kind)"
    if feature.note:
        text += f" ({feature.note})"
    return text


def calibrated_tree(calibration: Calibration, base: dict[str, Any], created_at: str) -> Any:
    """The config tree to write: ``base`` with the calibrated detectors and the section."""
    tree = copy.deepcopy(base)
    detection = tree.setdefault("detection", {})
    models = detection.setdefault("models", {})
    detectors: dict[str, Any] = {}
    for model in calibration.models:
        for feature in model.features:
            if feature.spec is None:
                continue
            entry = models.setdefault(model.model, {}) or {}
            models[model.model] = entry
            features = entry.setdefault("features", {}) or {}
            entry["features"] = features
            feature_entry = features.setdefault(feature.feature, {}) or {}
            features[feature.feature] = feature_entry
            feature_entry["detector"] = {
                "name": feature.spec.name,
                "params": dict(feature.spec.params),
            }
            assert feature.rate is not None and feature.interval is not None
            detectors[feature.key] = {
                "false_alarms_per_event": float(f"{feature.rate:.4g}"),
                "interval": [float(f"{v:.4g}") for v in feature.interval],
                "expected_delay_events": feature.delay,
            }
    tree["calibration"] = {
        "budget": calibration.budget,
        "rate": calibration.rate,
        "source": calibration.source,
        "created_at": created_at,
        "method": (
            f"circular block bootstrap (blocks of {calibration.block_length:,} events), "
            f"{calibration.simulated_events:,} simulated events per setting; log-log fit, "
            "upper 95% bound at each feature's share of the budget"
        ),
        "detectors": detectors,
    }
    return tree


def _emit(
    node: Any,
    indent: int,
    lines: list[str],
    comments: dict[tuple[str, ...], str],
    path: tuple[str, ...],
) -> None:
    pad = "  " * indent
    for key, value in node.items():
        here = (*path, str(key))
        note = comments.get(here)
        if note is not None:
            lines.append(f"{pad}# {note}")
        if isinstance(value, dict) and value:
            lines.append(f"{pad}{_flow(key)}:")
            _emit(value, indent + 1, lines, comments, here)
            extra = comments.get((*here, "*"))
            if extra is not None:
                for line in extra.splitlines():
                    lines.append(f"{pad}  # {line}")
        else:
            lines.append(f"{pad}{_flow(key)}: {_flow(value)}")


def render(calibration: Calibration, base: dict[str, Any], created_at: str, command: str) -> str:
    """The file's text. Raises AssertionError if it would not load back as meant."""
    tree = calibrated_tree(calibration, base, created_at)
    comments: dict[tuple[str, ...], str] = {}
    for model in calibration.models:
        kept = []
        for feature in model.features:
            if feature.spec is not None:
                where = ("detection", "models", model.model, "features", feature.feature)
                comments[where] = _feature_comment(feature, calibration)
            else:
                kept.append(_feature_comment(feature, calibration))
        rate, low, high = model.expected()
        summary = (
            f"model {model.model}: {model.events:,} events calibrated; expected false alarms "
            f"{rate:.3g} per event, all its detectors together (95% interval {low:.3g}.."
            f"{high:.3g}), budget {model.budget_per_event:.3g} per event"
        )
        comments[("detection", "models", model.model)] = summary
        if kept:
            comments[("detection", "models", model.model, "*")] = "\n".join(kept)
    header = [
        "# Written by `detector calibrate`; load it with --config as any config file.",
        f"# {command}",
        f"# budget {calibration.budget} at {calibration.rate}; source {calibration.source}",
    ]
    for model in calibration.models:
        header.extend(f"# warning: {w}" for w in model.warnings)
        if model.model not in tree["detection"]["models"]:
            header.append(f"# model {model.model}: no detector changed")
            for feature in model.features:
                header.append(f"#   {_feature_comment(feature, calibration)}")
    lines: list[str] = []
    _emit(tree, 0, lines, comments, ())
    text = "\n".join(header + lines) + "\n"
    if yaml.safe_load(text) != tree:
        raise AssertionError("the calibrated config does not load back as written")
    return text


__all__ = ["calibrated_tree", "render"]
