"""``detector config explain FILE [--model M]``: what each detector of a config is, and why.

For the defaults and for each model and feature the file names, it prints the detector, its
parameters and where each value comes from:

* ``default`` - the sidecar's built-in default (the file does not set it);
* ``override (KEY)`` - set in the file, under KEY (the feature's own ``detector``, or the
  model's, or the section's ``detection.detector``, whichever is nearest);
* ``calibrated (KEY)`` - set by ``detector calibrate`` (KEY is listed in the file's
  ``calibration.detectors``), with the false-alarm rate and delay it measured;
* ``River default`` - a constructor argument nobody set: River's (or the native ADWIN's,
  which has River's defaults) own default.

The file is loaded exactly as ``detector run`` loads it, so a bad file fails with the same
errors. Numbers are printed with ``repr`` so that what is shown is what runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detector.config import Settings, load_settings, read_config_tree
from detector.core.settings import ERROR, PREDICTION, DetectionSettings, DetectorSpec

#: The section's scalar settings, in the order they are shown.
SECTION_KEYS = (
    "reference_size",
    "window_size",
    "block_size",
    "rearm_after",
    "max_categories",
    "min_category_share",
    "critical_effect",
    "max_models",
    "max_features_per_model",
    "feature_ttl_s",
)

_NAMES = {PREDICTION: "prediction", ERROR: "error rate"}


def _get(tree: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = tree
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _spec_source(settings: DetectionSettings, model: str | None, feature: str | None) -> str:
    """The key path (below ``detection``) of the spec in force, or "" for the built-in."""
    model_settings = settings.models.get(model) if model is not None else None
    if model_settings is not None and feature is not None:
        feature_settings = model_settings.features.get(feature)
        if feature_settings is not None and feature_settings.detector is not None:
            return f"models.{model}.features.{feature}.detector"
    if model_settings is not None and model_settings.detector is not None:
        return f"models.{model}.detector"
    return "detector" if "detector" in settings.model_fields_set else ""


def _origin(settings: Settings, key: str) -> str:
    calibration = settings.calibration
    if calibration is not None and key in calibration.detectors:
        return f"calibrated (detection.{key})"
    return f"override (detection.{key})"


def _calibration_note(settings: Settings, key: str) -> str:
    calibration = settings.calibration
    if calibration is None or key not in calibration.detectors:
        return ""
    entry = calibration.detectors[key]
    low, high = entry.interval
    delay = (
        ""
        if entry.expected_delay_events is None
        else f", expected delay {entry.expected_delay_events:g} events"
    )
    return (
        f"calibrated to {entry.false_alarms_per_event:.3g} false alarms per event "
        f"(95% interval {low:.3g}..{high:.3g}) for a budget of {calibration.budget} at "
        f"{calibration.rate}{delay}"
    )


#: The column where a value's origin is printed.
ORIGIN_COLUMN = 40


def _row(left: str, origin: str) -> str:
    return f"{left:<{ORIGIN_COLUMN}} {origin}"


def _detector_lines(settings: Settings, spec: DetectorSpec, key: str, indent: str) -> list[str]:
    from detector.core.detectors import build_detector

    full = build_detector(spec).describe()["params"]
    given = set(spec.params)
    spec_origin = _origin(settings, key) if key else "default"
    lines = [_row(f"{indent}detector {spec.name}", spec_origin)]
    for name, value in full.items():
        origin = spec_origin if name in given else "River default"
        lines.append(_row(f"{indent}  {name} = {value!r}", origin))
    note = _calibration_note(settings, key) if key else ""
    if note:
        lines.append(f"{indent}  # {note}")
    return lines


def explain(path: str, *, models: list[str] | None = None) -> str:
    """The explanation of the config file at ``path`` (ConfigError if it is not valid)."""
    settings = load_settings(path, env={})
    tree, _ = read_config_tree(path)
    detection = settings.detection
    lines = [f"{path}", ""]
    lines.append("defaults (every model and feature the file does not name)")
    key = _spec_source(detection, None, None)
    lines += _detector_lines(settings, detection.detector, key, "  ")
    for name in SECTION_KEYS:
        value = getattr(detection, name)
        set_here = _get(tree, ("detection", name)) is not None
        origin = f"override (detection.{name})" if set_here else "default"
        lines.append(_row(f"  {name} = {value!r}", origin))
    wanted = models if models else sorted(detection.models)
    for model in wanted:
        lines.append("")
        model_settings = detection.models.get(model)
        if model_settings is None:
            lines.append(f"model {model}: not in the file; it runs with the defaults above")
            continue
        lines.append(f"model {model}")
        key = _spec_source(detection, model, None)
        lines.append("  any other feature, and the prediction and error rate unless listed:")
        lines += _detector_lines(settings, detection.feature_detector(model, ""), key, "    ")
        ignored = sorted(detection.ignored(model))
        if ignored:
            lines.append(f"  ignored features: {', '.join(ignored)}")
        for feature, feature_settings in sorted(model_settings.features.items()):
            if feature_settings.ignore:
                continue
            shown = _NAMES.get(feature, f"feature {feature}")
            kind = f" (kind {feature_settings.kind}: override)" if feature_settings.kind else ""
            lines.append(f"  {shown}{kind}")
            key = _spec_source(detection, model, feature)
            spec = detection.feature_detector(model, feature)
            lines += _detector_lines(settings, spec, key, "    ")
    return "\n".join(lines) + "\n"


def add_parser(sub: Any) -> None:
    """``detector config explain FILE [--model M]``."""
    config = sub.add_parser("config", help="inspect a config file")
    actions = config.add_subparsers(dest="config_command", required=True)
    explain_parser = actions.add_parser(
        "explain",
        help="print each detector, its parameters and where each value comes from",
    )
    explain_parser.add_argument("file", help="the YAML config file")
    explain_parser.add_argument(
        "--model", action="append", default=[], help="only this model (repeatable)"
    )
    explain_parser.set_defaults(func=_cmd_explain)


def _cmd_explain(args: Any) -> int:
    print(explain(args.file, models=args.model), end="")
    return 0


__all__ = ["SECTION_KEYS", "add_parser", "explain"]
