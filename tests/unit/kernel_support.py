"""Running a partition's core over records in batches, and comparing two runs: shared by
the tests that hold the compiled core to the same source run uncompiled (``pure.py``) and
to the oracle (test_kernel*.py, test_fast_path_shapes.py)."""

from __future__ import annotations

import dataclasses
import math
import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np
import pure

from detector.config import DetectionSettings
from detector.core.engine import PartitionDetectors
from detector.core.records import BatchResult, Detection, InputRecord

DEFAULT = DetectionSettings()


@dataclasses.dataclass
class Outcome:
    """Everything a run produced, totalled over its batches."""

    core: Any  # PartitionDetectors, compiled or not
    result: BatchResult
    active: int
    admissions: int  # events that took full admission (a shape not seen before)
    parsed: int = 0  # events parsed with orjson (not read from their bytes by the engine)


def add_result(total: BatchResult, result: BatchResult) -> None:
    total.detections += result.detections
    total.rejections += result.rejections
    for model, count in result.processed.items():
        total.processed[model] = total.processed.get(model, 0) + count
    total.expired += result.expired


def batches(n: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(n, start + size)) for start in range(0, n, size)]


def new_core(settings: DetectionSettings, *, reference: bool) -> Any:
    """A partition's core, compiled or (``reference``) the same source uncompiled."""
    if not reference:
        return PartitionDetectors(settings, "in", 0)
    engine = pure.core().engine
    return engine.PartitionDetectors(
        engine.DetectionSettings.model_validate(settings.model_dump()), "in", 0
    )


def run_batches(
    records: Sequence[InputRecord],
    batch: int,
    *,
    reference: bool,
    settings: DetectionSettings = DEFAULT,
    restore_at: Sequence[int] = (),
    periodic: bool = False,
    max_bytes: int | None = None,
    core: Any = None,
    dict_only: bool = False,
) -> Outcome:
    """Process in batches of ``batch``, on the compiled core or (``reference``) the same
    source uncompiled. At each of ``restore_at`` (after the batch that
    reaches it) continue on a core restored from the changelog: the entries of every
    snapshot so far, the latest per model. ``periodic``: a snapshot after every batch (as
    the runner checkpoints), else a snapshot at each restore only. ``max_bytes``: the
    message size limit. ``core``: continue on this one. ``dict_only`` (uncompiled only):
    every event parsed with orjson and matched as a dict, none read from its bytes by
    ``PartitionDetectors._scan`` (the path every event took before that reader)."""
    engine: Any = pure.core().engine if reference else None
    if reference:
        settings = engine.DetectionSettings.model_validate(settings.model_dump())
    cls = engine.PartitionDetectors if reference else PartitionDetectors
    if core is None:
        core = cls(settings, "in", 0)
    admissions = 0
    parsed = 0
    assert reference or not dict_only

    def count(core: Any) -> None:
        if max_bytes is not None:
            core.set_max_message_bytes(max_bytes)
        if dict_only:
            core._scan = lambda raw: None

    count(core)
    total = BatchResult()
    changelog: dict[str, bytes] = {}
    cuts = sorted(restore_at)
    for start, end in batches(len(records), batch):
        before, before_parsed = core.full_admissions, core.parsed_events
        add_result(total, core.process(records[start:end]))
        admissions += core.full_admissions - before
        parsed += core.parsed_events - before_parsed
        restore = bool(cuts) and end >= cuts[0]
        while cuts and end >= cuts[0]:
            cuts.pop(0)
        if periodic or restore:
            changelog.update(core.snapshot())
        if restore:
            core = cls.restore(settings, "in", 0, changelog)
            count(core)
    return Outcome(core, total, core.active_detectors, admissions, parsed)


def canon(obj: Any) -> Any:
    """A comparable, NaN-safe view of tracker state and detection evidence."""
    if isinstance(obj, float):
        return ("float", obj.hex()) if not math.isnan(obj) else ("float", "nan")
    if isinstance(obj, dict):
        return ("dict", [(canon(k), canon(v)) for k, v in obj.items()])
    if isinstance(obj, list | tuple):
        return [canon(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return ("array", obj.dtype.str, obj.shape, obj.tobytes())
    if isinstance(obj, np.generic):
        return canon(obj.item())
    # Compiled and uncompiled objects are of different classes: compared by name and state.
    name = type(obj).__name__
    if name in ("RateTracker", "NumericTracker", "CategoricalTracker", "PerformanceTracker"):
        return (name, canon(obj.__getstate__()))
    if name == "Adwin":
        return (name, canon(obj.__reduce__()[1:]))
    if name in ("RiverDetector", "BinaryDetector"):
        # Pickled twice: the bytes of a first pickle depend on string identities (memo),
        # which a restore does not keep; a second pickle of the restored object is stable.
        return (name, pickle.dumps(pickle.loads(pickle.dumps(obj.det))))
    if name in ("DetectionSettings", "DetectorSpec"):
        return repr(obj)
    if hasattr(obj, "last") and hasattr(obj, "window"):  # hits.Rearm
        return ("rearm", obj.window, dict(obj.last))
    return obj


def model_state(core: Any) -> dict[str, Any]:
    """Each model's state as the snapshot holds it."""
    view: dict[str, Any] = {}
    for model, state in core.models.items():
        monitors = [
            (
                name,
                monitor.kind,
                monitor.fingerprint,
                monitor.last_seen_ms,
                monitor.detector_count,
                canon(monitor.missing),
                canon(monitor.values),
            )
            for name, monitor in state.features.items()
        ]
        prediction = state.prediction
        view[model] = {
            "features": monitors,
            "events": state.events,
            "latest_ms": state.latest_ms,
            "refused": state.refused,
            "prediction_kind": state.prediction_kind,
            "prediction": None
            if prediction is None
            else (
                prediction.kind,
                prediction.last_seen_ms,
                canon(prediction.missing),
                canon(prediction.values),
            ),
            "performance": canon(state.performance),
        }
    return view


def detection_view(d: Detection) -> Any:
    return canon(dataclasses.asdict(d))


def assert_same(got: Outcome, expected: Outcome, what: str = "") -> None:
    """Everything two runs produced is equal: detections (every field, NaN-safe),
    rejections, counts, active detectors, and each model's state."""
    a, b = got.result.detections, expected.result.detections
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        assert detection_view(x) == detection_view(y), f"{what}: detection {i} differs:\n{x}\n{y}"
    assert len(a) == len(b), f"{what}: {len(a)} detections, expected {len(b)}"

    def rejections(outcome: Outcome) -> list[Any]:  # records compared by value (classes differ)
        return [
            (dataclasses.astuple(r.record), r.reason, r.detail) for r in outcome.result.rejections
        ]

    got_rejections, expected_rejections = rejections(got), rejections(expected)
    for i, (x, y) in enumerate(zip(got_rejections, expected_rejections, strict=False)):
        assert x == y, f"{what}: rejection {i} differs:\n{x}\n{y}"
    assert len(got_rejections) == len(expected_rejections), f"{what}: rejection count"
    assert got.result.processed == expected.result.processed, f"{what}: processed"
    assert got.result.expired == expected.result.expired, f"{what}: expired"
    assert got.active == expected.active, f"{what}: active_detectors"
    got_state, expected_state = model_state(got.core), model_state(expected.core)
    # Models in any order (a restore registers them sorted); features in order (it is the
    # order of hits at one event).
    assert sorted(got_state) == sorted(expected_state), f"{what}: models"
    for model in expected_state:
        for key in expected_state[model]:
            assert got_state[model][key] == expected_state[model][key], (
                f"{what}: state of model {model!r} differs in {key!r}"
            )
