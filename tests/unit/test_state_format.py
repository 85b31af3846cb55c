"""The changelog format: safe to read, and readable after an upgrade (no broker).

- Entries written by earlier releases (``tests/fixtures/state/v*``) restore and continue
  with exactly the detections recorded when they were written.
- The restricted unpickler allows exactly the globals real state holds, and refuses
  anything else, at any depth, with StateFormatError naming the model and the global,
  without running it (the sidecar then exits 3).
- Restored state is checked: what the compiled code indexes memory with is in range.
- Each entry records the River version that wrote it; state holding River objects written
  by another River series is refused, state without them (native ADWIN) is read.
"""

from __future__ import annotations

import builtins
import gzip
import importlib.util
import io
import json
import os
import pickle
import subprocess
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import orjson
import pytest
from river import drift

from detector import cli
from detector.core import state as state_format
from detector.core.detectors import RiverDetector
from detector.core.engine import PartitionDetectors
from detector.core.settings import (
    BINARY_DETECTOR_NAMES,
    DETECTOR_NAMES,
    DetectionSettings,
    PerformanceDetectorSpec,
    PerformanceSettings,
    SegmentSettings,
)
from detector.core.state import (
    ALLOWED,
    ALLOWED_LEGACY,
    FORMAT_VERSION,
    MAGIC,
    StateFormatError,
    decode_model,
    encode_model,
    river_version,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "state"
RENAMED = {"error_rate": "performance"}
RELEASES = sorted(p for p in FIXTURES.iterdir() if (p / "meta.json").exists())
#: Names only another numpy uses (numpy 1.x names numpy.core).
LEGACY = {k for k in ALLOWED if k[0].startswith("numpy.core.")}


def _maker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_fixture", FIXTURES / "make_fixture.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_fixture = _maker()


class Release:
    """One fixture directory: entries of a release and what they must give."""

    def __init__(self, path: Path) -> None:
        self.meta = json.loads((path / "meta.json").read_text())
        self.settings = DetectionSettings.model_validate(
            json.loads((path / "settings.json").read_text())
        )
        self.entries = {p.stem: p.read_bytes() for p in sorted((path / "entries").iterdir())}
        with gzip.open(path / "continuation.jsonl.gz") as f:
            self.tail = f.read().splitlines()
        # Releases before state format 5 called performance drift "error_rate" (CHANGELOG):
        # the same detections, under the new name.
        self.detections = [
            dict(d, drift_type=RENAMED.get(d["drift_type"], d["drift_type"]))
            for d in json.loads((path / "detections.json").read_text())
        ]

    def restore(self, entries: dict[str, bytes] | None = None) -> PartitionDetectors:
        return PartitionDetectors.restore(
            self.settings, self.meta["topic"], self.meta["partition"], entries or self.entries
        )

    def continued(self, core: PartitionDetectors) -> list[dict[str, Any]]:
        first = self.meta["first_offset"]
        offsets = list(range(first, first + len(self.tail)))
        found: list[dict[str, Any]] = make_fixture.found(
            core.process_batch(offsets, self.tail).detections
        )
        return found


@pytest.fixture(scope="module", params=RELEASES, ids=[p.name for p in RELEASES])
def release(request: pytest.FixtureRequest) -> Release:
    return Release(request.param)


def _payload(blob: bytes) -> bytes:
    return blob[6 + blob[5] :] if blob[4] >= 3 else blob[5:]


def _globals(blob: bytes) -> set[tuple[str, str]]:
    """The globals an entry names (read with the real unpickler: test data is trusted)."""
    names: set[tuple[str, str]] = set()
    table = ALLOWED if blob[4] == FORMAT_VERSION else ALLOWED_LEGACY

    class Recording(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            names.add((module, name))
            return table[(module, name)]()

    Recording(io.BytesIO(_payload(blob))).load()
    return names


def _entry(payload: bytes, version: int = FORMAT_VERSION, river: str | None = None) -> bytes:
    if version < 3:
        return MAGIC + bytes([version]) + payload
    tag = (river or river_version()).encode()
    return MAGIC + bytes([version, len(tag)]) + tag + payload


def _restore(blob: bytes, model: str = "m") -> PartitionDetectors:
    return PartitionDetectors.restore(DetectionSettings(), "in", 0, {model: blob})


@pytest.fixture(scope="module")
def live() -> PartitionDetectors:
    """State written by this build: the fixture's stream, every kind of tracker and detector."""
    settings = DetectionSettings.model_validate(make_fixture.SETTINGS)
    core = PartitionDetectors(settings, "in", 0)
    stream = make_fixture.events()
    core.process_batch(list(range(len(stream))), stream)
    return core


def _live_state(live: PartitionDetectors, model: str) -> Any:
    """A private copy of one model's state (tests tamper with it)."""
    return pickle.loads(pickle.dumps(live.models[model]))


class TestEarlierReleases:
    def test_entries_continue_with_the_recorded_detections(self, release: Release) -> None:
        """Entries written by an earlier release restore, and the restored state gives
        exactly the detections that release gave on the same continuation."""
        assert len(release.detections) >= 10
        assert release.continued(release.restore()) == release.detections

    def test_migrated_entries_continue_alike(self, release: Release) -> None:
        """Restored state written back in the current format (as the next checkpoint
        does) restores again and continues alike: migration loses nothing."""
        core = release.restore()
        entries = {model: encode_model(state) for model, state in core.models.items()}
        assert {blob[4] for blob in entries.values()} == {FORMAT_VERSION}
        assert release.continued(release.restore(entries)) == release.detections

    def test_version_2_fixture_exercises_the_migration(self) -> None:
        """The format 2 fixture holds what a version 2 entry holds: settings classes under
        their old module, every kind of River detector."""
        old = Release(FIXTURES / "v2")
        assert {blob[4] for blob in old.entries.values()} == {2}
        names = set().union(*map(_globals, old.entries.values()))
        assert ("detector.config", "DetectorSpec") in names
        assert {"ADWIN", "PageHinkley", "KSWIN"} <= {d["detector"] for d in old.detections}
        assert names <= set(ALLOWED_LEGACY)

    def test_version_3_fixture_exercises_the_adwin_migration(self) -> None:
        """The format 3 fixture holds River's ADWIN inside AdwinFast (read into the native
        ADWIN) and the trackers under detector.core._kernel."""
        old = Release(FIXTURES / "v3")
        assert {blob[4] for blob in old.entries.values()} == {3}
        names = set().union(*map(_globals, old.entries.values()))
        assert {("detector.core._kernel", "AdwinFast"), ("river.drift.adwin", "ADWIN")} <= names
        assert names <= set(ALLOWED_LEGACY)


def _labelled_state(settings: DetectionSettings, n: int, segment: bool = False) -> Any:
    """The state of model ``m`` after ``n`` labelled scored events (with ``segment.sex``)."""
    core = PartitionDetectors(settings, "in", 0)
    events = []
    for i in range(n):
        event: dict[str, Any] = {
            "event_id": f"e{i}",
            "model": "m",
            "timestamp": i,
            "features": {},
            "prediction": (i % 7) / 7,
            "label": i % 3 == 0,
        }
        if segment:
            event["segment"] = {"sex": "FM"[i % 2]}
        events.append(orjson.dumps(event))
    core.process_batch(list(range(n)), events)
    return core.models["m"]


def _performance_state(detector: str) -> Any:
    """A model's state whose performance tracker runs ``detector``, after labelled events."""
    spec = PerformanceDetectorSpec(name=detector)
    state = _labelled_state(DetectionSettings(performance=PerformanceSettings(detector=spec)), 3000)
    again = decode_model(encode_model(state), "m")
    assert again.performance.rate.detector.describe() == state.performance.rate.detector.describe()
    return state


def _fairness_state() -> Any:
    """A model's state with a fairness monitor (detection.segments.protected)."""
    settings = DetectionSettings(segments=SegmentSettings(protected=["sex"]))
    state = _labelled_state(settings, 600, segment=True)
    again = decode_model(encode_model(state), "m")
    assert again.fairness["sex"].__getstate__() == state.fairness["sex"].__getstate__()
    return state


class TestAllowList:
    def test_allow_list_is_exactly_what_state_holds(self, live: PartitionDetectors) -> None:
        """Every global that state written by this build names is allowed, and every
        allowed global (but the old names of earlier releases) is named by such state:
        the list is exact. The state covers every detector kind the config allows."""
        kinds = {"ADWIN"} | {
            spec["detector"]["name"]
            for model in make_fixture.SETTINGS["models"].values()
            for spec in [model, *model.get("features", {}).values()]
            if "detector" in spec
        }
        assert kinds == set(DETECTOR_NAMES)
        entries = {model: encode_model(state) for model, state in live.models.items()}
        # River's binary detectors: the performance detector only.
        for name in BINARY_DETECTOR_NAMES:
            entries[name] = encode_model(_performance_state(name))
        entries["fairness"] = encode_model(_fairness_state())
        names = set().union(*map(_globals, entries.values()))
        assert names == set(ALLOWED) - LEGACY

    def test_state_of_this_build_restores_and_resumes(self, live: PartitionDetectors) -> None:
        """A round trip through the current format (checkpoint, restore) resumes exactly."""
        settings = live.settings
        stream = make_fixture.events()
        cut = len(stream) // 2
        first = PartitionDetectors(settings, "in", 0)
        first.process_batch(list(range(cut)), stream[:cut])
        second = PartitionDetectors.restore(settings, "in", 0, first.snapshot())
        rest = list(range(cut, len(stream)))
        expected = first.process_batch(rest, stream[cut:]).detections
        assert make_fixture.found(second.process_batch(rest, stream[cut:]).detections) == (
            make_fixture.found(expected)
        )
        assert expected


class _Call:
    """Pickles as ``func(*args)``: what a hostile writer of the changelog puts in an entry."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func = func
        self.args = args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (self.func, self.args)


def _attacks(marker: Path) -> list[tuple[str, Any, str]]:
    """(id, object, the global the refusal names); each would create ``marker`` if run."""
    touch = f"touch {marker}"
    return [
        ("os.system", _Call(os.system, touch), f"{os.system.__module__}.system"),
        ("eval", _Call(builtins.eval, f"open({str(marker)!r}, 'w')"), "builtins.eval"),
        ("exec", _Call(builtins.exec, f"open({str(marker)!r}, 'w')"), "builtins.exec"),
        ("Popen", _Call(subprocess.Popen, ["touch", str(marker)]), "subprocess.Popen"),
        ("import", _Call(importlib.import_module, "os"), "importlib.import_module"),
        (
            "getattr",
            _Call(getattr, _Call(getattr, Counter, "__init__"), "__globals__"),
            "builtins.getattr",
        ),
        ("type", _Call(type, "Evil", (Counter,), {"fresh": 1}), "builtins.type"),
        ("object-array", np.array([touch, None], dtype=object), "numpy._core.multiarray"),
    ]


ATTACK_IDS = [a[0] for a in _attacks(Path("x"))]


class TestHostileEntries:
    @pytest.mark.parametrize("version", [2, FORMAT_VERSION])
    @pytest.mark.parametrize("attack", ATTACK_IDS)
    def test_refused_naming_model_and_global_and_not_run(
        self, tmp_path: Path, attack: str, version: int
    ) -> None:
        """A pickle that would run code is refused with StateFormatError naming the model
        and the refused global; the code does not run."""
        marker = tmp_path / "ran"
        _, obj, name = next(a for a in _attacks(marker) if a[0] == attack)
        blob = _entry(pickle.dumps(obj, protocol=5), version)
        with pytest.raises(StateFormatError, match="model 'm'") as caught:
            _restore(blob)
        assert name in str(caught.value)
        assert "refused" in str(caught.value)
        assert not marker.exists()

    def test_refused_deep_inside_real_state(self, tmp_path: Path, live: PartitionDetectors) -> None:
        """A hostile object anywhere in otherwise real state is refused the same way."""
        marker = tmp_path / "ran"
        state = _live_state(live, "fraud")
        state.features["evil"] = _Call(os.system, f"touch {marker}")
        with pytest.raises(StateFormatError, match=r"model 'fraud' refers to \w+\.system"):
            PartitionDetectors.restore(live.settings, "in", 0, {"fraud": encode_model(state)})
        assert not marker.exists()

    def test_tracker_class_cannot_be_built_without_its_state(self) -> None:
        """A tracker class is only usable as _restore's argument: building one with
        ``__new__`` alone (uninitialised buffers) is refused."""
        payload = (
            b"\x80\x05\x8c\x16detector.core.trackers\x94\x8c\x0bRateTracker\x94\x93\x94)\x81\x94."
        )
        with pytest.raises(StateFormatError, match="model 'm'"):
            _restore(_entry(payload))

    def test_a_refusal_stops_the_sidecar_with_exit_code_3(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``detector run`` stops with exit code 3 and one line naming the refused global
        when a restore meets a hostile entry (the restore the sidecar does on assignment)."""
        marker = tmp_path / "ran"
        blob = _entry(pickle.dumps(_Call(subprocess.Popen, ["touch", str(marker)])))

        def run(args: Any) -> int:
            _restore(blob, "m0")
            return 0

        monkeypatch.setattr(cli, "_cmd_run", run)
        assert cli.main(["run"]) == 3
        err = capsys.readouterr().err
        assert err.startswith("detector: StateFormatError: changelog entry for model 'm0'")
        assert "subprocess.Popen" in err
        assert not marker.exists()


def _tamper_tracker(tracker: Any, **changes: Any) -> None:
    state = tracker.__getstate__()
    state.update(changes)
    tracker.__setstate__(state)


class TestInconsistentState:
    """State that unpickles with allowed globals only, but that the compiled trackers
    could not have written: they would index or cast memory with it unchecked."""

    def _refused(self, live: PartitionDetectors, state: Any, match: str) -> None:
        with pytest.raises(StateFormatError, match=match):
            PartitionDetectors.restore(live.settings, "in", 0, {"fraud": encode_model(state)})

    def test_untouched_state_restores(self, live: PartitionDetectors) -> None:
        PartitionDetectors.restore(
            live.settings, "in", 0, {"fraud": encode_model(_live_state(live, "fraud"))}
        )

    def test_ring_position_out_of_range(self, live: PartitionDetectors) -> None:
        state = _live_state(live, "fraud")
        _tamper_tracker(state.features["score"].missing, recent_head=1 << 30)
        self._refused(live, state, "'score' missing rate window head")

    def test_tracker_of_the_wrong_kind(self, live: PartitionDetectors) -> None:
        state = _live_state(live, "fraud")
        state.features["score"].values = state.features["channel"].values
        self._refused(live, state, "'score' is numeric but holds a CategoricalTracker")

    def test_missing_detector(self, live: PartitionDetectors) -> None:
        state = _live_state(live, "fraud")
        _tamper_tracker(state.features["score"].missing, detector=None)
        self._refused(live, state, "has a detector that is a NoneType")

    def test_category_code_out_of_range(self, live: PartitionDetectors) -> None:
        state = _live_state(live, "fraud")
        tracker = state.features["channel"].values
        codes = dict.fromkeys(tracker.__getstate__()["codes"], 0)
        codes[next(iter(codes))] = 99
        _tamper_tracker(tracker, codes=codes)
        self._refused(live, state, "category codes")

    def test_river_detector_with_extra_attributes(self, live: PartitionDetectors) -> None:
        """An attribute that would shadow a River method is refused."""
        state = _live_state(live, "fraud")
        river = drift.PageHinkley()
        river.update = Counter  # type: ignore[method-assign]
        _tamper_tracker(
            state.features["score"].missing, detector=RiverDetector("PageHinkley", river)
        )
        self._refused(live, state, "PageHinkley with other attributes than River's")

    def test_invalid_detector_spec(self, live: PartitionDetectors) -> None:
        state = _live_state(live, "fraud")
        spec = state.features["score"].values.__getstate__()["spec"]
        spec.__dict__["name"] = "Evil"
        self._refused(live, state, "invalid DetectorSpec")

    @pytest.mark.parametrize("length", [-1, 6, 1 << 40])
    def test_adwin_row_length_out_of_range(self, live: PartitionDetectors, length: int) -> None:
        """ADWIN's row lengths index its bucket arrays unchecked."""
        state = _live_state(live, "fraud")
        adwin = state.features["score"].missing.__getstate__()["detector"]
        _cls, _params, window = adwin.__reduce__()
        window["lengths"] = window["lengths"].copy()
        window["lengths"][0] = length
        adwin.__setstate__(window)
        self._refused(live, state, "ADWIN row with other than 0 to 5 buckets")

    def test_adwin_width_not_its_buckets(self, live: PartitionDetectors) -> None:
        state = _live_state(live, "fraud")
        adwin = state.features["score"].missing.__getstate__()["detector"]
        _cls, _params, window = adwin.__reduce__()
        window["width"] += 1.0
        adwin.__setstate__(window)
        self._refused(live, state, "ADWIN whose width is not the sum of its buckets")

    def test_unknown_model_state_attribute_of_format_3(self) -> None:
        """A format 3 model state is a plain object: one with unknown attributes is refused."""
        payload = (
            b"\x80\x02cdetector.core.engine\nModelState\n)\x81}("
            b"X\x08\x00\x00\x00features}X\x05\x00\x00\x00extraK\x01ub."
        )
        with pytest.raises(StateFormatError, match=r"unknown attributes \['extra'\]"):
            _restore(_entry(payload, version=3))

    def test_not_model_state(self) -> None:
        with pytest.raises(StateFormatError, match="'m' is not valid detector state"):
            _restore(_entry(pickle.dumps({"any": "state"})))


class TestVersions:
    def test_entries_record_format_and_river_version(self, live: PartitionDetectors) -> None:
        from importlib.metadata import version

        blob = encode_model(live.models["fraud"])
        assert blob[:5] == MAGIC + bytes([FORMAT_VERSION])
        assert blob[6 : 6 + blob[5]].decode() == version("river")

    def test_another_river_series_is_refused_naming_both(self, live: PartitionDetectors) -> None:
        """State holding River objects (churn's PageHinkley) is River's series' only."""
        payload = _payload(encode_model(live.models["churn"]))
        with pytest.raises(StateFormatError) as caught:
            _restore(_entry(payload, river="0.25.3"), "churn")
        message = str(caught.value)
        assert "model 'churn' was written with River 0.25.3" in message
        assert f"this build runs River {river_version()}" in message

    def test_state_without_river_objects_is_read_under_any_river(
        self, live: PartitionDetectors
    ) -> None:
        """fraud's detectors are all ADWIN, native since format 4: no River object inside."""
        payload = _payload(encode_model(live.models["fraud"]))
        state = decode_model(_entry(payload, river="0.25.3"), "fraud")
        assert set(state.features) == set(live.models["fraud"].features)

    def test_same_series_other_patch_release_is_read(self, live: PartitionDetectors) -> None:
        major, minor = river_version().split(".")[:2]
        payload = _payload(encode_model(live.models["fraud"]))
        state = decode_model(_entry(payload, river=f"{major}.{minor}.99"), "fraud")
        assert set(state.features) == set(live.models["fraud"].features)

    def test_a_proven_upgrade_is_read(
        self, live: PartitionDetectors, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        running = ".".join(river_version().split(".")[:2])
        monkeypatch.setattr(state_format, "RIVER_UPGRADES", frozenset({("0.25", running)}))
        payload = _payload(encode_model(live.models["churn"]))
        decode_model(_entry(payload, river="0.25.3"), "churn")

    @pytest.mark.parametrize("tag", [b"", b"x.y", b"0.26\xff"])
    def test_corrupt_river_version_header(self, tag: bytes) -> None:
        blob = MAGIC + bytes([FORMAT_VERSION, len(tag)]) + tag + pickle.dumps(1)
        with pytest.raises(StateFormatError, match=r"'m' is corrupt \(no River version"):
            _restore(blob)

    def test_version_2_entry_of_an_older_river_is_refused_with_a_hint(self) -> None:
        """River 0.25 moved its Rust state (river.stats._rust_stats before): a version 2
        entry does not say which River wrote it, so the refusal says what this build reads."""
        payload = b"\x80\x05\x8c\x17river.stats._rust_stats\x94\x8c\x13RsAdaptiveWindowing\x94\x93."
        with pytest.raises(StateFormatError) as caught:
            _restore(_entry(payload, version=2))
        message = str(caught.value)
        assert "river.stats._rust_stats.RsAdaptiveWindowing" in message
        assert f"this build runs River {river_version()}" in message

    def test_version_1_is_refused(self) -> None:
        with pytest.raises(
            StateFormatError,
            match=f"format version 1; this build reads version {FORMAT_VERSION} "
            r"\(and migrates version 2, 3, 4\)",
        ):
            _restore(MAGIC + b"\x01" + pickle.dumps(1))

    def test_panic_in_river_state_is_a_format_error(self, live: PartitionDetectors) -> None:
        """River's Rust state (ADWIN's, in format 3 entries) that does not decode panics (a
        BaseException): still a StateFormatError, so still exit code 3 and one line."""
        adwin = drift.ADWIN()
        for x in range(100):
            adwin.update(float(x % 7))
        rust_state = adwin._helper.__reduce_ex__(5)[2]
        blob = _entry(pickle.dumps(adwin, protocol=5), version=3)
        assert blob.count(rust_state) == 1
        blob = blob.replace(rust_state, b"\xff" * len(rust_state))
        with pytest.raises(StateFormatError, match=r"'fraud' is corrupt \(PanicException"):
            PartitionDetectors.restore(live.settings, "in", 0, {"fraud": blob})
