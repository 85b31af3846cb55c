"""The changelog format of detector state: one versioned, self-describing entry per model.

An entry (format version 4) is::

    b"DDST"  version byte (4)  length byte n  River's version (n ASCII bytes)  pickle

The pickle (protocol 5) holds the model's :class:`~detector.core.engine.ModelState`: its
feature monitors and trackers (:mod:`detector.core.trackers`, each pickled as
``_restore(class, state dict)``), the detectors (:class:`~detector.core.detectors.Adwin`,
the native port of River's ADWIN, as its parameters and window; other detectors as River's
own objects), numpy arrays and plain containers.

**Reading is safe.** Entries are read by a restricted unpickler, not ``pickle.loads``: it
resolves exactly the globals in the table of the entry's format version (:data:`ALLOWED`
for version 4, :data:`ALLOWED_LEGACY` for versions 2 and 3; the classes and functions real
state holds, listed by pickling the state of every detector kind the config allows;
``tests/unit/test_state_format.py`` keeps the list exact) and refuses any other with
:class:`StateFormatError`, naming the model and the global, without importing or calling
it. The callables that could be misused with other arguments are wrapped: ``getattr`` only
gives PageHinkley's drift tests, numpy's reconstructors only build 1-D float64/int64 arrays
and scalars (from the canonical dtypes, never a dtype built from the entry), a tracker or
monitor can only be built from a state dictionary, and ADWIN only from its validated
parameters. After loading, the whole model state is checked (:func:`_check_model`): exact
types everywhere, and every value the compiled code indexes memory with in range (bucket
row lengths, ring heads, category codes), since it does so without bounds checks. Whoever
can write the changelog topic can still make a restore fail (the sidecar then stops, exit
code 3), but cannot run code in the sidecar.

**Upgrades keep the changelog.** Each entry records the River version that wrote it. State
holding River objects (PageHinkley, KSWIN) is read by the River minor series that wrote it
(``0.26.x`` reads ``0.26.x``); :data:`RIVER_UPGRADES` lists other (written, running) pairs
once a fixture test proves them, and any other entry holding River objects is refused with
:class:`StateFormatError` naming both versions. State without River objects (the default
ADWIN detectors are native since format 4) restores under any River version.

Older formats are migrated on read, and the next checkpoint writes them as version 4:

* **3** (River's version recorded; trackers under ``detector.core._kernel``; ADWIN as
  River's object inside ``AdwinFast``). ADWIN's window is read from River's own state
  (:func:`_adwin_from_river`, River 0.26's layout, checked against River's getters) into a
  native :class:`~detector.core.detectors.Adwin` that continues exactly as River would;
  the model's shape ``signatures`` are dropped (admission no longer keeps them).
* **2** (commit 6af747b; no River version; settings classes under ``detector.config``): as 3.

A release that moves a class keeps its old name in the tables; one that changes what a
tracker or the model state holds updates :func:`_check_model` and migrates older entries.
``tests/fixtures/state/`` holds entries written by earlier releases, with the detections
they must give when continued.
"""

from __future__ import annotations

import io
import pickle
import re
import struct
import types
from collections import Counter, deque
from collections.abc import Callable
from functools import cache
from importlib import import_module
from typing import Any, NoReturn

MAGIC = b"DDST"
#: 4: native ADWIN, trackers under detector.core.trackers. 3 (commit 45d95e5) and 2 (commit
#: 6af747b): read and migrated. Version 1 entries are refused, not guessed at.
FORMAT_VERSION = 5
MIGRATED_VERSIONS = (2, 3, 4)
#: (written, running) River minor series whose state is proven (by a fixture test) to
#: restore, besides the same series. Empty: River state is read by the series that wrote it.
RIVER_UPGRADES: frozenset[tuple[str, str]] = frozenset()

_RIVER_NAMES = ("PageHinkley", "KSWIN")  # held as River objects (ADWIN is native)
#: River's binary detectors (performance drift only), by config name.
_BINARY_NAMES = ("DDM", "EDDM", "HDDM_A", "HDDM_W", "FHDDM")


class StateFormatError(Exception):
    """A changelog entry cannot be restored (unknown format version, another River series,
    a refused global, corrupt or inconsistent state)."""


# -- writing ----------------------------------------------------------------------------


def encode_model(state: Any) -> bytes:
    river = river_version().encode("ascii")
    return MAGIC + bytes([FORMAT_VERSION, len(river)]) + river + pickle.dumps(state, protocol=5)


@cache
def river_version() -> str:
    """The running River's version (read from the installed package, River not imported)."""
    from importlib.metadata import version

    return version("river")


def _series(version: str) -> str:
    match = re.match(r"(\d+)\.(\d+)", version)
    return f"{match[1]}.{match[2]}" if match else version


# -- reading ----------------------------------------------------------------------------


def decode_model(blob: bytes, key: str) -> Any:
    """The model state of a changelog entry; raises StateFormatError (never starts fresh)."""
    if len(blob) < 5 or blob[:4] != MAGIC:
        raise StateFormatError(
            f"changelog entry for model {key!r} is not detector state (bad header); "
            "refusing to start fresh over it"
        )
    version = blob[4]
    written_by: str | None
    if version in (FORMAT_VERSION, 4, 3):
        written_by, payload = _river_header(blob, key)
    elif version == 2:
        written_by, payload = None, blob[5:]
    else:
        raise StateFormatError(
            f"changelog entry for model {key!r} has state format version {version}; "
            f"this build reads version {FORMAT_VERSION} (and migrates version "
            f"{', '.join(map(str, MIGRATED_VERSIONS))})"
        )
    table = ALLOWED if version in (FORMAT_VERSION, 4) else ALLOWED_LEGACY
    try:
        state = _Unpickler(payload, key, written_by, table).load()
        if version < 4:
            state = _migrate_model(state)
    except StateFormatError:
        raise
    except _Refused as exc:
        raise StateFormatError(
            f"changelog entry for model {key!r} calls {exc.name} with arguments detector "
            f"state never uses ({exc.why}): refused, not run"
        ) from None
    except _Invalid as exc:
        raise StateFormatError(
            f"changelog entry for model {key!r} is not valid detector state: {exc}"
        ) from None
    except BaseException as exc:  # River's Rust code panics (PanicException, a BaseException)
        if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
            raise
        raise StateFormatError(
            f"changelog entry for model {key!r} is corrupt ({type(exc).__name__}"
            f"{_river_hint(written_by)})"
        ) from None
    _check_model(state, key)
    return state


def _river_header(blob: bytes, key: str) -> tuple[str, bytes]:
    size = blob[5] if len(blob) > 5 else 0
    raw = blob[6 : 6 + size]
    if size == 0 or len(raw) < size or not re.fullmatch(rb"\d+\.\d+[0-9A-Za-z.+-]*", raw):
        raise StateFormatError(
            f"changelog entry for model {key!r} is corrupt (no River version in its header)"
        )
    return raw.decode("ascii"), blob[6 + size :]


def _check_river(written_by: str, key: str) -> None:
    running = river_version()
    pair = (_series(written_by), _series(running))
    if pair[0] != pair[1] and pair not in RIVER_UPGRADES:
        raise StateFormatError(
            f"changelog entry for model {key!r} was written with River {written_by}; this "
            f"build runs River {running}, which does not read River {pair[0]}.x state "
            f"(run a build with River {pair[0]}.x on this changelog)"
        )


def _river_hint(written_by: str | None) -> str:
    if written_by is not None:
        return ""
    return (
        f"; a version 2 entry does not say which River wrote it, this build runs River "
        f"{river_version()} and reads River state written by River {_series(river_version())}.x"
    )


class _Unpickler(pickle.Unpickler):
    def __init__(
        self,
        payload: bytes,
        key: str,
        written_by: str | None,
        table: dict[tuple[str, str], Callable[[], Any]],
    ) -> None:
        super().__init__(io.BytesIO(payload))
        self.key = key
        self.written_by = written_by
        self.table = table

    def find_class(self, module: str, name: str) -> Any:
        found = self.table.get((module, name))
        is_river = module.split(".")[0] == "river"
        if found is None:
            hint = _river_hint(self.written_by) if is_river else ""
            raise StateFormatError(
                f"changelog entry for model {self.key!r} refers to {module}.{name}, which "
                f"detector state never holds: refused, not run{hint}"
            )
        if is_river and self.written_by is not None:
            _check_river(self.written_by, self.key)  # River's objects: River's series only
        return found()

    def persistent_load(self, pid: Any) -> NoReturn:
        raise pickle.UnpicklingError("persistent ids are not detector state")


# -- the allow-list ---------------------------------------------------------------------


class _Refused(Exception):
    """An allowed global called as detector state never calls it."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(name, why)
        self.name = name
        self.why = why


def _attr(module: str, name: str) -> Callable[[], Any]:
    """The object ``module.name``; the module is imported only once an entry names it."""

    def resolve() -> Any:
        return getattr(import_module(module), name)

    return resolve


def _is(value: Any) -> Callable[[], Any]:
    return lambda: value


#: The classes built from a state dictionary (``_restore(class, state)``), by name.
_RESTORED = {
    "RateTracker": "detector.core.trackers",
    "NumericTracker": "detector.core.trackers",
    "CategoricalTracker": "detector.core.trackers",
    "FeatureMonitor": "detector.core.engine",
    "ModelState": "detector.core.engine",
    "PerformanceTracker": "detector.core.performance",
    "EstimatedPerformance": "detector.core.estimation",
    "FairnessMonitor": "detector.core.fairness",
}


class _Token:
    """What an entry gets for a class built from a state dictionary: only
    :func:`_restore` builds from it, so such an object is never made without its state."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self) -> NoReturn:
        raise pickle.PicklingError("a class token is not state")


def _token(name: str) -> Callable[[], Any]:
    token = _Token(name)
    return lambda: token


def _restore(cls: Any, state: Any) -> Any:
    """``trackers._restore`` for a class token and a state dictionary only."""
    if type(cls) is not _Token or type(state) is not dict:
        raise _Refused("detector.core.trackers._restore", "a tracker class and a dict only")
    real = getattr(import_module(_RESTORED[cls.name]), cls.name)
    obj = real.__new__(real)
    obj.__setstate__(state)
    return obj


def _adwin(*args: Any) -> Any:
    """``Adwin(delta, clock, max_buckets, min_window_length, grace_period)``: plain numbers
    only (its constructor validates their ranges); its window is set by ``__setstate__``
    and checked by :class:`_Checker`."""
    if (
        len(args) != 5
        or type(args[0]) not in (float, int)
        or any(type(a) is not int for a in args[1:])
    ):
        raise _Refused("detector.core.detectors.Adwin", "its five numeric parameters only")
    if args[2] > _MAX_BUCKETS:
        raise _Refused("detector.core.detectors.Adwin", f"max_buckets of at most {_MAX_BUCKETS}")
    return import_module("detector.core.detectors").Adwin(*args)


_MAX_BUCKETS = 1 << 16  # a window row's buckets; River's default is 5


def _river_detector(name: Any, det: Any) -> Any:
    if name not in _RIVER_NAMES or type(det) is not _river_classes()[name]:
        raise _Refused("detector.core.detectors.RiverDetector", "a known River detector only")
    return import_module("detector.core.detectors").RiverDetector(name, det)


def _binary_detector(name: Any, det: Any) -> Any:
    if name not in _BINARY_NAMES or type(det) is not _binary_classes()[name]:
        raise _Refused("detector.core.detectors.BinaryDetector", "a River binary detector only")
    return import_module("detector.core.detectors").BinaryDetector(name, det)


def _adwin_fast(adwin: Any, detected: Any = False, pending: Any = 0, zeros_only: Any = None) -> Any:
    """Format 3's ``AdwinFast(river_adwin, detected, pending, zeros_only)``: a native Adwin
    holding River's window, with the ``pending`` zeros it had not yet handed to River."""
    from river.drift import ADWIN

    if (
        type(adwin) is not ADWIN
        or type(detected) is not bool
        or type(pending) is not int
        or pending < 0
        or zeros_only not in (None, True, False)
    ):
        raise _Refused("detector.core._kernel.AdwinFast", "a river.drift.ADWIN and its flags")
    empty = adwin.width == 0 if zeros_only is None else zeros_only
    return _adwin_from_river(adwin, detected, pending, empty)


def _adwin_from_river(adwin: Any, detected: bool, pending: int, zeros_only: bool) -> Any:
    """A native Adwin with River's ADWIN window: River's ``AdaptiveWindowing`` state, read
    from its serialized form (River 0.26: little-endian bincode of the Rust struct) and
    checked against River's own getters; then the ``pending`` zeros River had not seen."""
    import numpy as np

    _check_river_object(adwin, "an ADWIN detector")
    helper = adwin._helper
    blob = helper.__getstate__()
    reader = _Reader(blob)
    delta = reader.f64()
    clock = reader.i32()
    max_buckets = reader.u64()
    min_window_length = reader.f64()
    grace_period = reader.f64()
    total, variance, width, total_width = (reader.f64() for _ in range(4))
    n_buckets, max_n_buckets, tick, n_detections = (reader.i32() for _ in range(4))
    params = (delta, clock, max_buckets, min_window_length, grace_period)
    expected = (
        adwin.delta,
        adwin.clock,
        adwin.max_buckets,
        float(adwin.min_window_length),
        float(adwin.grace_period),
    )
    if params != expected or not 1 <= max_buckets <= _MAX_BUCKETS:
        _fail("an ADWIN detector", "has River state that does not match its parameters")
    rows = reader.u64()
    if not 1 <= rows <= 64:
        _fail("an ADWIN detector", "has River state with an impossible number of rows")
    slots = max_buckets + 1
    lengths = np.zeros(rows, dtype=np.int64)
    totals = np.zeros((rows, slots), dtype=np.float64)
    variances = np.zeros((rows, slots), dtype=np.float64)
    for row in range(rows):
        if reader.u64() != max_buckets:
            _fail("an ADWIN detector", "has River state with a bucket of another size")
        lengths[row] = reader.u64()
        for values in (totals, variances):
            if reader.u64() != slots:
                _fail("an ADWIN detector", "has River state with a bucket of another size")
            values[row] = [reader.f64() for _ in range(slots)]
    if (
        not (lengths <= max_buckets).all()
        or (width, total, variance)
        != (helper.get_width(), helper.get_total(), helper.get_variance())
        or n_detections != helper.get_n_detections()
    ):
        _fail("an ADWIN detector", "has River state that its own getters contradict")
    native = import_module("detector.core.detectors").Adwin(
        adwin.delta, adwin.clock, adwin.max_buckets, adwin.min_window_length, adwin.grace_period
    )
    native.__setstate__(
        {
            "detected": detected,
            "total": total,
            "variance": variance,
            "width": width,
            "total_width": total_width,
            "n_buckets": n_buckets,
            "max_n_buckets": max_n_buckets,
            "tick": tick,
            "n_detections": n_detections,
            "zeros_only": bool(zeros_only),
            "lengths": lengths,
            "totals": totals.ravel(),
            "variances": variances.ravel(),
        }
    )
    _Checker().detector(native, "an ADWIN detector")  # before any step: it indexes unchecked
    for _ in range(pending):  # zeros River had not been shown; they cannot fire
        native.step(0.0)
    return native


class _Reader:
    """Little-endian fixed-width fields of a bytes object, refusing to read past its end."""

    __slots__ = ("at", "blob")

    def __init__(self, blob: Any) -> None:
        if type(blob) is not bytes:
            _fail("an ADWIN detector", "has River state that is not bytes")
        self.blob = blob
        self.at = 0

    def _take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.at + size > len(self.blob):
            _fail("an ADWIN detector", "has truncated River state")
        (value,) = struct.unpack_from(fmt, self.blob, self.at)
        self.at += size
        return value

    def f64(self) -> float:
        return float(self._take("<d"))

    def i32(self) -> int:
        return int(self._take("<i"))

    def u64(self) -> int:
        return int(self._take("<Q"))


def _getattr(obj: Any, name: Any) -> Any:
    """``getattr`` as River's PageHinkley pickles its drift test (a bound method), only."""
    from river.drift import PageHinkley

    if type(obj) is not PageHinkley or name not in _PAGE_HINKLEY_TESTS:
        raise _Refused("builtins.getattr", "PageHinkley's drift test only")
    return getattr(obj, name)


_PAGE_HINKLEY_TESTS = ("_test_increase", "_test_decrease", "_test_both")


class _DType:
    """What an entry gets for ``numpy.dtype(...)``: a name, checked against the canonical
    dtype. The arrays and scalars are made with the canonical dtype, never with a dtype
    built from the entry's state."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __setstate__(self, state: Any) -> None:
        import numpy as np

        if state != np.dtype(self.name).__reduce__()[2]:
            raise _Refused("numpy.dtype", f"the plain {self.name} dtype only")

    def __reduce__(self) -> NoReturn:
        raise pickle.PicklingError("a dtype token is not state")


_DTYPES = ("f8", "i8")  # float64 (samples, ring buffers), int64 (block counts)


def _dtype(name: Any, align: Any = False, copy: Any = True) -> _DType:
    if name not in _DTYPES or align is not False or copy is not True:
        raise _Refused("numpy.dtype", "float64 and int64 only")
    return _DType(name)


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> Any:
    import numpy as np

    if (
        type(buf) not in (bytes, bytearray)
        or type(dtype) is not _DType
        or type(shape) is not tuple
        or len(shape) != 1
        or type(shape[0]) is not int
        or order not in ("C", "F")
    ):
        raise _Refused("numpy._core.numeric._frombuffer", "1-D float64 and int64 arrays only")
    canonical = np.dtype(dtype.name)
    if len(buf) != shape[0] * canonical.itemsize:
        raise _Refused("numpy._core.numeric._frombuffer", "data of the array's size only")
    return np.frombuffer(buf, dtype=canonical).copy()


def _scalar(dtype: Any, data: Any) -> Any:
    import numpy as np

    if type(dtype) is not _DType or type(data) is not bytes:
        raise _Refused("numpy._core.multiarray.scalar", "float64 and int64 scalars only")
    canonical = np.dtype(dtype.name)
    if len(data) != canonical.itemsize:
        raise _Refused("numpy._core.multiarray.scalar", "data of the scalar's size only")
    return np.frombuffer(data, dtype=canonical)[0]


def _settings_class(name: str) -> Callable[[], Any]:
    return _attr("detector.core.settings", name)


_SETTINGS = {
    ("detector.core.settings", name): _settings_class(name)
    for name in (
        "DetectionSettings",
        "DetectorSpec",
        "ModelSettings",
        "FeatureSettings",
        "LabelSettings",
        "PerformanceSettings",
        "PerformanceDetectorSpec",
        "EstimationSettings",
        "SegmentSettings",
    )
}

_BINARY = {
    # River's binary detectors (performance drift) and their parts.
    ("river.drift.binary.ddm", "DDM"): _attr("river.drift.binary.ddm", "DDM"),
    ("river.drift.binary.eddm", "EDDM"): _attr("river.drift.binary.eddm", "EDDM"),
    ("river.drift.binary.hddm_a", "HDDMA"): _attr("river.drift.binary.hddm_a", "HDDMA"),
    ("river.drift.binary.hddm_w", "HDDMW"): _attr("river.drift.binary.hddm_w", "HDDMW"),
    ("river.drift.binary.hddm_w", "SampleInfo"): _attr("river.drift.binary.hddm_w", "SampleInfo"),
    ("river.drift.binary.fhddm", "FHDDM"): _attr("river.drift.binary.fhddm", "FHDDM"),
    ("river.stats.var", "Var"): _attr("river.stats.var", "Var"),
    ("river.stats.ewmean", "EWMean"): _attr("river.stats.ewmean", "EWMean"),
    ("river._river_rust.stats", "RsEWMean"): _attr("river._river_rust.stats", "RsEWMean"),
}

_PLAIN = {
    # PageHinkley and KSWIN (the River detectors the config allows) and their parts.
    ("river.drift.page_hinkley", "PageHinkley"): _attr("river.drift.page_hinkley", "PageHinkley"),
    ("river.stats.mean", "Mean"): _attr("river.stats.mean", "Mean"),
    ("river.drift.kswin", "KSWIN"): _attr("river.drift.kswin", "KSWIN"),
    ("random", "Random"): _attr("random", "Random"),
    ("collections", "deque"): _is(deque),
    ("builtins", "getattr"): _is(_getattr),
    # numpy arrays and scalars as numpy pickles them (numpy.core: numpy 1.x's name).
    ("numpy", "dtype"): _is(_dtype),
    ("numpy._core.numeric", "_frombuffer"): _is(_frombuffer),
    ("numpy.core.numeric", "_frombuffer"): _is(_frombuffer),
    ("numpy._core.multiarray", "scalar"): _is(_scalar),
    ("numpy.core.multiarray", "scalar"): _is(_scalar),
    # Plain values: reference counts.
    ("collections", "Counter"): _is(Counter),
}

#: Every global a format 4 entry may name (module, name as pickled) and what it resolves
#: to: what state pickles hold, for every detector kind the config allows.
ALLOWED: dict[tuple[str, str], Callable[[], Any]] = {
    # Trackers, feature monitors and the model state: built by _restore(class, dict) only.
    ("detector.core.trackers", "_restore"): _is(_restore),
    **{(module, name): _token(name) for name, module in _RESTORED.items()},
    ("detector.core.hits", "Rearm"): _attr("detector.core.hits", "Rearm"),
    ("detector.core.detectors", "Adwin"): _is(_adwin),
    ("detector.core.detectors", "RiverDetector"): _is(_river_detector),
    ("detector.core.detectors", "BinaryDetector"): _is(_binary_detector),
    **_SETTINGS,
    **_BINARY,
    **_PLAIN,
}


class _LegacyModel:
    """A format 2/3 ``ModelState`` as pickled (its attribute dictionary), to migrate."""


class _LegacyMonitor:
    """A format 2/3 ``FeatureMonitor`` as pickled (its attribute dictionary), to migrate."""


def _legacy_type(*args: Any) -> type:
    """``type`` as format 2/3 pickled ``type(None)`` (a value type in the signatures), only."""
    if args != (None,):
        raise _Refused("builtins.type", "type(None) only")
    return type(None)


#: The globals of format 2 and 3 entries: the trackers under ``detector.core._kernel``,
#: ADWIN as River's object inside ``AdwinFast``, the model state and monitors as plain
#: objects (migrated by :func:`_migrate_model`), settings also under ``detector.config``.
ALLOWED_LEGACY: dict[tuple[str, str], Callable[[], Any]] = {
    ("detector.core.engine", "ModelState"): _is(_LegacyModel),
    ("detector.core.engine", "FeatureMonitor"): _is(_LegacyMonitor),
    ("detector.core.hits", "Rearm"): _attr("detector.core.hits", "Rearm"),
    ("detector.core._kernel", "_restore"): _is(_restore),
    **{("detector.core._kernel", name): _token(name) for name in _RESTORED if "Tracker" in name},
    ("detector.core._kernel", "AdwinFast"): _is(_adwin_fast),
    ("detector.core._kernel", "RiverDetector"): _is(_river_detector),
    **_SETTINGS,
    **{("detector.config", name): found for (_, name), found in _SETTINGS.items()},
    ("river.drift.adwin", "ADWIN"): _attr("river.drift.adwin", "ADWIN"),
    ("river._river_rust.drift", "AdaptiveWindowing"): _attr(
        "river._river_rust.drift", "AdaptiveWindowing"
    ),
    **_PLAIN,
    # Feature value types in the signatures (dropped by the migration).
    ("builtins", "str"): _is(str),
    ("builtins", "int"): _is(int),
    ("builtins", "float"): _is(float),
    ("builtins", "bool"): _is(bool),
    ("builtins", "type"): _is(_legacy_type),
}

_LEGACY_MODEL_KEYS = frozenset(
    (
        "features",
        "signatures",
        "prediction_kind",
        "prediction",
        "error",
        "latest_ms",
        "events",
        "refused",
    )
)
_LEGACY_MONITOR_KEYS = frozenset(("fingerprint", "kind", "last_seen_ms", "missing", "values"))


def _migrate_model(legacy: Any) -> Any:
    """A format 2/3 model state as this build's: attributes added since get their defaults,
    the shape ``signatures`` are dropped. A monitor whose kind is known but which has no
    value tracker yet (format 3 made it at the first value) gets one when the engine
    adopts its settings (``PartitionDetectors.reconfigure``)."""
    engine = import_module("detector.core.engine")
    if type(legacy) is not _LegacyModel:
        _fail("the entry", "is not model state")
    attrs = vars(legacy)
    if not attrs.keys() <= _LEGACY_MODEL_KEYS:
        _fail(
            "the model state", f"has unknown attributes {sorted(attrs.keys() - _LEGACY_MODEL_KEYS)}"
        )
    if type(attrs.get("signatures", set())) is not set:
        _fail("signatures", "is not a set")
    state = engine.ModelState()
    fields = state.__getstate__()
    fields.update({name: attrs[name] for name in fields.keys() & attrs.keys()})
    if "error" in attrs:  # the error-rate tracker: the performance tracker's (engine.py)
        fields["performance"] = attrs["error"]
    features = fields["features"]
    if type(features) is not dict:
        _fail("features", "is not a dict")
    fields["features"] = {name: _migrate_monitor(m) for name, m in features.items()}
    if fields["prediction"] is not None:
        fields["prediction"] = _migrate_monitor(fields["prediction"])
    state.__setstate__(fields)
    return state


def _migrate_monitor(legacy: Any) -> Any:
    engine = import_module("detector.core.engine")
    if type(legacy) is not _LegacyMonitor:
        _fail("a feature", "is not a feature monitor")
    attrs = vars(legacy)
    if attrs.keys() != _LEGACY_MONITOR_KEYS:
        _fail("a feature monitor", "does not have a monitor's attributes")
    monitor = engine.FeatureMonitor.__new__(engine.FeatureMonitor)
    monitor.__setstate__(dict(attrs))
    return monitor


# -- checking what was loaded -----------------------------------------------------------


class _Invalid(Exception):
    pass


def _fail(where: str, what: str) -> NoReturn:
    raise _Invalid(f"{where} {what}")


def _check_model(state: Any, key: str) -> None:
    """Exact types and in-range indices everywhere: the compiled code casts and indexes
    without checks, so state it runs on must be state it could have written."""
    try:
        _Checker().model(state)
    except _Invalid as exc:
        raise StateFormatError(
            f"changelog entry for model {key!r} is not valid detector state: {exc}"
        ) from None
    except Exception as exc:  # a check itself failing on a malformed object
        raise StateFormatError(
            f"changelog entry for model {key!r} is not valid detector state ({type(exc).__name__})"
        ) from None


@cache
def _binary_classes() -> dict[str, type]:
    from river.drift import binary

    return {
        "DDM": binary.DDM,
        "EDDM": binary.EDDM,
        "HDDM_A": binary.HDDMA,
        "HDDM_W": binary.HDDMW,
        "FHDDM": binary.FHDDM,
    }


@cache
def _river_classes() -> dict[str, type]:
    from river import drift

    return {"ADWIN": drift.ADWIN, "PageHinkley": drift.PageHinkley, "KSWIN": drift.KSWIN}


_FRESH: dict[type, frozenset[str]] = {}


def _fresh_attributes(cls: type) -> frozenset[str]:
    """The attributes of a River detector or statistic made with its defaults."""
    if cls not in _FRESH:
        _FRESH[cls] = frozenset(vars(cls()))
    return _FRESH[cls]


def _check_river_object(det: Any, where: str) -> None:
    """A River detector holds exactly the attributes a fresh one has (none shadowing a
    method), and its parts are of River's own types."""
    from random import Random

    from river.stats import Mean

    cls = type(det)
    if frozenset(vars(det)) != _fresh_attributes(cls):
        _fail(where, f"holds a {cls.__name__} with other attributes than River's")
    parts = vars(det)
    if cls.__name__ == "ADWIN":
        from river._river_rust.drift import AdaptiveWindowing

        if type(parts["_helper"]) is not AdaptiveWindowing:
            _fail(where, "holds an ADWIN without River's AdaptiveWindowing")
    elif cls.__name__ == "PageHinkley":
        mean, test = parts["_x_mean"], parts["_test_drift"]
        if type(mean) is not Mean or set(vars(mean)) != {"n", "_mean"}:
            _fail(where, "holds a PageHinkley without River's Mean")
        if (
            type(test) is not types.MethodType
            or test.__self__ is not det
            or test.__func__ not in [getattr(cls, n) for n in _PAGE_HINKLEY_TESTS]
        ):
            _fail(where, "holds a PageHinkley whose drift test is not its own")
    elif cls.__name__ in ("DDM", "HDDMA"):
        names = ("_p",) if cls.__name__ == "DDM" else ("_x_min", "_x_max", "_z")
        for name in names:
            if type(parts[name]) is not Mean or set(vars(parts[name])) != {"n", "_mean"}:
                _fail(where, f"holds a {cls.__name__} without River's Mean")
    elif cls.__name__ == "EDDM":
        from river.stats import Var

        var = parts["_error_distances"]
        if type(var) is not Var or type(vars(var).get("mean")) is not Mean:
            _fail(where, "holds an EDDM without River's Var")
    elif cls.__name__ == "HDDMW":
        from river._river_rust.stats import RsEWMean
        from river.drift.binary.hddm_w import SampleInfo
        from river.stats import EWMean

        for name in ("_total", "_s1_decr", "_s1_incr", "_s2_decr", "_s2_incr"):
            info = parts[name]
            ewma = vars(info).get("_ewma") if type(info) is SampleInfo else None
            if (
                type(ewma) is not EWMean
                or set(vars(info)) != {"_ewma", "_is_init", "_ibc", "_lambd_sq", "_c_lambd_sq"}
                or type(vars(ewma).get("_ewmean")) is not RsEWMean
            ):
                _fail(where, "holds an HDDM_W without River's SampleInfo")
    elif cls.__name__ == "FHDDM":
        if type(parts["_sliding_window"]) is not deque:
            _fail(where, "holds an FHDDM without its window")
    elif cls.__name__ == "KSWIN":
        rng = parts["_rng"]
        if type(parts["window"]) is not deque or type(rng) is not Random:
            _fail(where, "holds a KSWIN without its window and random generator")
        if not set(vars(rng)) <= {"gauss_next"}:
            _fail(where, "holds a KSWIN whose random generator has other attributes")


def _int(value: Any, where: str, low: int, high: int | None = None) -> int:
    if type(value) is not int or value < low or (high is not None and value > high):
        bounds = f"from {low}" if high is None else f"from {low} to {high}"
        _fail(where, f"is not an integer {bounds}")
    return value


def _float(value: Any, where: str) -> float:
    if type(value) is not float:
        _fail(where, "is not a float")
    return value


def _array(value: Any, where: str, dtype: str, min_len: int, max_len: int | None = None) -> Any:
    import numpy as np

    if (
        type(value) is not np.ndarray
        or value.dtype != np.dtype(dtype)
        or value.ndim != 1
        or not value.flags.c_contiguous
        or value.shape[0] < min_len
        or (max_len is not None and value.shape[0] > max_len)
    ):
        most = "" if max_len is None else f" and at most {max_len}"
        _fail(where, f"is not a 1-D {np.dtype(dtype)} array of at least {min_len}{most} values")
    return value


def _strs(value: Any, where: str, max_len: int) -> None:
    if type(value) is not list or len(value) > max_len or any(type(v) is not str for v in value):
        _fail(where, f"is not a list of at most {max_len} strings")


def _fill_defaults(model: Any) -> bool:
    """Give a settings object restored from an older entry the defaults of the fields added
    since (and those of the settings objects inside it); False if it holds attributes that
    are not fields."""
    from pydantic import BaseModel

    fields = type(model).model_fields
    held = vars(model)
    if not set(held) <= set(fields):
        return False
    for name in set(fields) - set(held):  # written before the field existed
        held[name] = fields[name].get_default(call_default_factory=True)
    for value in held.values():
        inner = value.values() if isinstance(value, dict) else [value]
        for item in inner:
            if isinstance(item, BaseModel) and not _fill_defaults(item):
                return False
    return True


class _Checker:
    def __init__(self) -> None:
        self.trackers = import_module("detector.core.trackers")
        self.detectors = import_module("detector.core.detectors")
        self.engine = import_module("detector.core.engine")
        self.settings = import_module("detector.core.settings")
        self.done: set[int] = set()

    def _once(self, obj: Any) -> bool:
        if id(obj) in self.done:
            return False
        self.done.add(id(obj))
        return True

    def model(self, state: Any) -> None:
        if type(state) is not self.engine.ModelState:
            _fail("the entry", "is not model state")
        features = state.features
        if type(features) is not dict:
            _fail("features", "is not a dict")
        for name, monitor in features.items():
            if type(name) is not str:
                _fail("a feature name", "is not a string")
            self.monitor(monitor, f"feature {name[:64]!r}")
        if state.prediction is not None:
            self.monitor(state.prediction, "the prediction")
        if state.prediction_kind not in (None, "numeric", "categorical"):
            _fail("the prediction kind", f"is {state.prediction_kind!r}")
        perf = state.performance
        if type(perf) is self.trackers.RateTracker:  # format 4: the error-rate tracker
            self.rate(perf, "the error rate")
        elif perf is not None:
            self.performance(perf, "the performance tracker")
        if state.estimation is not None:
            self.estimation(state.estimation, "the estimated performance")
        fairness = state.fairness
        if type(fairness) is not dict:
            _fail("fairness", "is not a dict")
        for key, monitor in fairness.items():
            if type(key) is not str:
                _fail("a protected key", "is not a string")
            self.fairness(monitor, f"fairness on {key[:64]!r}")
        for name in ("events", "refused"):
            _int(getattr(state, name), name, 0)

    def monitor(self, monitor: Any, where: str) -> None:
        if type(monitor) is not self.engine.FeatureMonitor:
            _fail(where, "is not a feature monitor")
        if type(monitor.fingerprint) is not str:
            _fail(where, "has no fingerprint")
        self.rate(monitor.missing, f"{where} missing rate")
        kind, values = monitor.kind, monitor.values
        expected = {
            None: type(None),
            "numeric": self.trackers.NumericTracker,
            "categorical": self.trackers.CategoricalTracker,
        }.get(kind)
        if expected is None:
            _fail(where, f"has kind {kind!r}")
        if values is not None and type(values) is not expected:
            _fail(where, f"is {kind} but holds a {type(values).__name__}")
        if type(values) is self.trackers.NumericTracker:
            self.numeric(values, f"{where} values")
        elif type(values) is self.trackers.CategoricalTracker:
            self.categorical(values, f"{where} values")

    def common(self, state: dict[str, Any], where: str) -> int:
        k = _int(state["k"], f"{where} block size", 1)
        _int(state["cnt"], f"{where} block count", 0, k - 1)
        _int(state["seen"], f"{where} seen", 0)
        self.rearm(state["rearm"], where)
        return k

    def rate(self, tracker: Any, where: str) -> None:
        if type(tracker) is not self.trackers.RateTracker:
            _fail(where, "is not a rate tracker")
        if not self._once(tracker):
            return
        state = tracker.__getstate__()
        k = self.common(state, where)
        if state["drift_type"] not in ("missing_rate", "error_rate", "performance"):
            _fail(where, f"has drift type {state['drift_type']!r}")
        self.detector(state["detector"], where)
        blocks = _int(state["ref_blocks"], f"{where} reference blocks", 1)
        _int(state["ref_len"], f"{where} reference length", 0, blocks)
        _int(state["ref_sum"], f"{where} reference sum", 0, blocks * k)
        _int(state["acc"], f"{where} block sum", 0, k)
        recent = _array(state["recent"], f"{where} window", "i8", 1)
        _int(state["recent_head"], f"{where} window head", 0, recent.shape[0] - 1)
        _int(state["recent_len"], f"{where} window length", 0, recent.shape[0])

    def performance(self, perf: Any, where: str) -> None:
        if type(perf) is not import_module("detector.core.performance").PerformanceTracker:
            _fail(where, "is not a performance tracker")
        state = perf.__getstate__()
        if type(state["fingerprint"]) is not str:
            _fail(where, "has no fingerprint")
        self.rate(state["rate"], f"{where} error rate")
        _float(state["threshold"], f"{where} threshold")
        _float(state["quantile"], f"{where} error quantile")
        size = _int(state["reference_size"], f"{where} reference size", 1)
        window = _int(state["window_size"], f"{where} window size", 1)
        _int(state["labelled"], f"{where} labelled count", 0)
        if state["cutoff"] is not None:
            _float(state["cutoff"], f"{where} error cut-off")
        building = state["building"]
        if len(building) >= size or any(type(v) is not float for v in building):
            _fail(where, "has a regression reference that is not a list of floats")
        for name, most in (("reference", size), ("current", window)):
            rows = state[name]
            if len(rows) > most or any(
                len(row) != 3
                or row[0] not in (0, 1)
                or type(row[1]) is not float
                or type(row[2]) is not int
                or row[2] not in (-1, 0, 1)
                for row in rows
            ):
                _fail(where, f"has a {name} window that is not (error, score, label) rows")

    def estimation(self, est: Any, where: str) -> None:
        from detector.core.estimation import TABLE, EstimatedPerformance

        if type(est) is not EstimatedPerformance:
            _fail(where, "is not an estimated performance")
        state = est.__getstate__()
        if type(state["fingerprint"]) is not str:
            _fail(where, "has no fingerprint")
        size = _int(state["reference_size"], f"{where} calibration size", 1)
        ref = _int(state["ref_size"], f"{where} reference size", 1)
        window = _int(state["window_size"], f"{where} window size", 1)
        k = _int(state["k"], f"{where} block size", 1)
        _int(state["cnt"], f"{where} block count", 0, k - 1)
        _int(state["seen"], f"{where} seen", 0)
        _float(state["threshold"], f"{where} threshold")
        _float(state["acc"], f"{where} block sum")
        self.detector(state["detector"], where)
        self.rearm(state["rearm"], where)
        scores, labels = state["calibrating_scores"], state["calibrating_labels"]
        if (
            len(scores) != len(labels)
            or len(scores) >= size
            or any(type(s) is not float for s in scores)
            or any(y not in (0, 1) or type(y) is not int for y in labels)
        ):
            _fail(where, "has calibration data that is not scores and 0/1 labels")
        if state["table"] is not None:
            _array(state["table"], f"{where} calibration table", "f8", TABLE, TABLE)
        if state["realized_reference"] is not None:
            _float(state["realized_reference"], f"{where} realized accuracy")
        for name, most in (("reference", ref), ("current", window)):
            values = state[name]
            if len(values) > most or any(type(v) is not float for v in values):
                _fail(where, f"has a {name} window that is not scores")

    def fairness(self, monitor: Any, where: str) -> None:
        from detector.core.fairness import FairnessMonitor

        if type(monitor) is not FairnessMonitor:
            _fail(where, "is not a fairness monitor")
        if type(monitor.key) is not str or type(monitor.outside) is not bool:
            _fail(where, "has no key or band state")
        window = _int(monitor.window, f"{where} window", 1)
        _int(monitor.min_group_size, f"{where} minimum group size", 1)
        most = _int(monitor.max_values, f"{where} maximum values", 1)
        _int(monitor.decisions, f"{where} decisions", 0)
        groups = monitor.groups
        if type(groups) is not dict or len(groups) > most:
            _fail(where, "has groups that are not a bounded dict")
        for value, group in groups.items():
            if type(value) is not str:
                _fail(where, "has a group value that is not a string")
            if len(group.decisions) > window or len(group.labelled) > window:
                _fail(where, "has a group window longer than the window")
            if any(d not in (0, 1) or type(d) is not int for d in group.decisions):
                _fail(where, "has decisions that are not 0/1")
            if any(
                type(d) is not int or type(y) is not int or d not in (0, 1) or y not in (0, 1)
                for d, y in group.labelled
            ):
                _fail(where, "has labelled decisions that are not 0/1 pairs")
        _int(monitor.pending_at, f"{where} pending position", 0)
        for name in ("reference", "pending"):
            snapshot = getattr(monitor, name)
            if snapshot is not None and (
                type(snapshot) is not dict
                or type(snapshot.get("disparate_impact")) not in (float, int)
            ):
                _fail(where, f"has a {name} that is not a disparity snapshot")

    def numeric(self, tracker: Any, where: str) -> None:
        from detector.core.hits import RANK_WINDOW

        if not self._once(tracker):
            return
        state = tracker.__getstate__()
        self.common(state, where)
        self.spec(state["spec"], where)
        size = _int(state["ref_size"], f"{where} reference size", 1)
        window = _int(state["window"], f"{where} window size", 1)
        if state["drift_type"] is not None and type(state["drift_type"]) is not str:
            _fail(where, "has a drift type that is not a string")
        building = state["building"]
        if type(building) is not list or len(building) > size:
            _fail(where, "has a reference sample being built that is not a list")
        if any(type(v) is not float for v in building):
            _fail(where, "has a reference sample being built with non-float values")
        if state["reference"] is not None:
            _array(state["reference"], f"{where} reference", "f8", 1)
        _array(state["recent"], f"{where} window", "f8", 0, max(window, RANK_WINDOW))
        _int(state["since"], f"{where} ranks since learning", 0, RANK_WINDOW)
        for name in ("sum_a", "sum_b"):
            if type(state[name]) is not int:
                _fail(where, f"has a non-integer {name}")
        self.detector(state["mean_det"], where)
        self.detector(state["spread_det"], where)

    def categorical(self, tracker: Any, where: str) -> None:
        if not self._once(tracker):
            return
        state = tracker.__getstate__()
        self.common(state, where)
        self.spec(state["spec"], where)
        self.detection_settings(state["settings"], where)
        size = _int(state["ref_size"], f"{where} reference size", 1)
        window = _int(state["window"], f"{where} window size", 1)
        if type(state["drift_type"]) is not str:
            _fail(where, "has a drift type that is not a string")
        _strs(state["building"], f"{where} reference sample being built", size)
        _strs(state["recent"], f"{where} window", window)
        ref_counts = state["ref_counts"]
        if ref_counts is not None and (
            type(ref_counts) is not Counter
            or vars(ref_counts)
            or any(type(c) is not str or type(n) is not int for c, n in ref_counts.items())
        ):
            _fail(where, "has reference counts that are not counts of categories")
        codes = state["codes"]
        if (
            type(codes) is not dict
            or any(type(c) is not str for c in codes)
            or sorted(codes.values()) != list(range(len(codes)))
        ):
            _fail(where, "has category codes that are not 0..n-1")
        width = len(codes) + 1
        _array(state["counts"], f"{where} block counts", "i8", width, width)
        detectors = state["detectors"]
        if type(detectors) is not list or len(detectors) not in (
            (width,) if ref_counts is not None else (0, width)
        ):
            _fail(where, f"does not have one detector per category code and one more ({width})")
        for det in detectors:
            self.detector(det, where)

    def detector(self, det: Any, where: str) -> None:
        if type(det) is self.detectors.Adwin:
            self.adwin(det, where)
        elif type(det) is self.detectors.BinaryDetector:
            name, river_det = det.__reduce__()[1]
            if name not in _BINARY_NAMES or type(river_det) is not _binary_classes()[name]:
                _fail(where, f"has a {name!r} binary detector that is not River's")
            _check_river_object(river_det, where)
        elif type(det) is self.detectors.RiverDetector:
            name, river_det = det.__reduce__()[1]
            if name not in _RIVER_NAMES or type(river_det) is not _river_classes()[name]:
                _fail(where, f"has a {name!r} detector that is not River's")
            _check_river_object(river_det, where)
        else:
            _fail(where, f"has a detector that is a {type(det).__name__}")

    def adwin(self, det: Any, where: str) -> None:
        """The window rows index the bucket arrays unchecked: every row length within a
        row's buckets, at least one row, and the counts the rows add up to."""
        import numpy as np

        if not self._once(det):
            return
        _cls, params, state = det.__reduce__()
        max_buckets = params[2]
        lengths = _array(state["lengths"], f"{where} ADWIN rows", "i8", 1, 64)
        if not ((lengths >= 0) & (lengths <= max_buckets)).all():
            _fail(where, f"has an ADWIN row with other than 0 to {max_buckets} buckets")
        if lengths.shape[0] > 1 and lengths[-1] == 0:
            _fail(where, "has an ADWIN whose oldest row is empty")
        rows = lengths.shape[0]
        for name in ("totals", "variances"):
            _array(state[name], f"{where} ADWIN {name}", "f8", rows * (max_buckets + 1))
        width = float(np.dot(lengths, np.ldexp(1.0, np.arange(rows))))
        if _float(state["width"], f"{where} ADWIN width") != width:
            _fail(where, "has an ADWIN whose width is not the sum of its buckets")
        for name in ("total", "variance", "total_width"):
            _float(state[name], f"{where} ADWIN {name}")
        for name in ("n_buckets", "max_n_buckets", "tick", "n_detections"):
            _int(state[name], f"{where} ADWIN {name}", 0)
        if state["zeros_only"] and state["totals"].any():
            _fail(where, "has an ADWIN marked all zeros that holds other values")

    def rearm(self, rearm: Any, where: str) -> None:
        from detector.core.hits import Rearm

        if type(rearm) is not Rearm:
            _fail(where, "has no re-arm bookkeeping")
        _int(rearm.window, f"{where} re-arm window", 0)
        last = rearm.last
        if type(last) is not dict or any(
            type(k) is not str or type(v) is not int for k, v in last.items()
        ):
            _fail(where, "has re-arm bookkeeping that is not drift type -> count")

    def spec(self, spec: Any, where: str) -> None:
        if type(spec) is not self.settings.DetectorSpec:
            _fail(where, "has a detector spec that is not a DetectorSpec")
        self._valid(spec, where)

    def detection_settings(self, settings: Any, where: str) -> None:
        if type(settings) is not self.settings.DetectionSettings:
            _fail(where, "has settings that are not DetectionSettings")
        self._valid(settings, where)

    def _valid(self, model: Any, where: str) -> None:
        """Settings objects are restored without validation: validate them again."""
        if not self._once(model):
            return
        cls = type(model)
        if not _fill_defaults(model):
            _fail(where, f"has a {cls.__name__} with other attributes than its fields")
        try:
            clean = cls.model_validate(model.model_dump(warnings=False))
        except Exception:
            _fail(where, f"has an invalid {cls.__name__}")
        if clean != model:
            _fail(where, f"has an invalid {cls.__name__}")


__all__ = [
    "ALLOWED",
    "ALLOWED_LEGACY",
    "FORMAT_VERSION",
    "MAGIC",
    "StateFormatError",
    "decode_model",
    "encode_model",
    "river_version",
]
