"""The changelog format of detector state: one versioned, self-describing entry per model.

An entry (format version 3) is::

    b"DDST"  version byte (3)  length byte n  River's version (n ASCII bytes)  pickle

The pickle (protocol 5) holds the model's :class:`~detector.core.engine.ModelState`: its
trackers (compiled, :mod:`detector.core._kernel`), River's detector objects, numpy arrays
and plain containers. River's objects are kept as River objects, so restored state is River
state.

**Reading is safe.** Entries are read by a restricted unpickler, not ``pickle.loads``: the
choice over an explicit encoding, because it keeps River's own state (a Rust object for
ADWIN) River's business and is the smaller change. It resolves exactly the globals in
:data:`ALLOWED` (the classes and functions real state holds, listed by pickling the state
of every detector kind the config allows; ``tests/unit/test_state_format.py`` keeps the
list exact) and refuses any other with :class:`StateFormatError`, naming the model and the
global, without importing or calling it. The callables that could be misused with other
arguments are wrapped: ``getattr`` only gives PageHinkley's drift tests, ``type`` only
``type(None)``, numpy's reconstructors only build 1-D float64/int64 arrays and scalars (from
the canonical dtypes, never a dtype built from the entry), and a tracker can only be built
from a state dictionary. After loading, the whole model state is checked
(:func:`_check_model`): exact types everywhere, and every value the compiled trackers
index memory with in range, since they do so without bounds checks. Whoever can write the
changelog topic can still make a restore fail (the sidecar then stops, exit code 3), but
cannot run code in the sidecar.

**Upgrades keep the changelog.** Each entry records the River version that wrote it. River
state is read by the River minor series that wrote it (``0.26.x`` reads ``0.26.x``);
:data:`RIVER_UPGRADES` lists other (written, running) pairs once a fixture test proves
them, and any other entry is refused with :class:`StateFormatError` naming both versions.
Version 2 entries (before River's version was recorded; the same pickle with settings
classes under ``detector.config``) are migrated on read: :data:`ALLOWED` maps their names to
where the classes live now, and the next checkpoint writes them as version 3. A release
that moves a class keeps its old name in :data:`ALLOWED`; one that changes what a tracker
or the model state holds updates :func:`_check_model` and migrates older entries.
``tests/fixtures/state/`` holds entries written by earlier releases, with the detections
they must give when continued.
"""

from __future__ import annotations

import io
import pickle
import re
import types
from collections import Counter, deque
from collections.abc import Callable
from functools import cache
from importlib import import_module
from typing import Any, NoReturn

MAGIC = b"DDST"
#: 3: the River version is recorded after the version byte. 2 (commit 6af747b): no River
#: version; read and migrated. Version 1 entries are refused, not guessed at.
FORMAT_VERSION = 3
MIGRATED_VERSIONS = (2,)
#: (written, running) River minor series whose state is proven (by a fixture test) to
#: restore, besides the same series. Empty: River state is read by the series that wrote it.
RIVER_UPGRADES: frozenset[tuple[str, str]] = frozenset()

_DETECTOR_NAMES = ("ADWIN", "PageHinkley", "KSWIN")


class StateFormatError(Exception):
    """A changelog entry cannot be restored (unknown format version, another River series,
    a refused global, corrupt or inconsistent state)."""


# -- writing ----------------------------------------------------------------------------


def encode_model(state: Any) -> bytes:
    river = river_version().encode("ascii")
    return MAGIC + bytes([FORMAT_VERSION, len(river)]) + river + pickle.dumps(state, protocol=5)


@cache
def river_version() -> str:
    """The running River's version (River is imported by then: the state holds its objects)."""
    from river import __version__  # type: ignore[attr-defined]

    return str(__version__)


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
    if version == FORMAT_VERSION:
        written_by, payload = _river_header(blob, key)
        _check_river(written_by, key)
    elif version in MIGRATED_VERSIONS:
        written_by, payload = None, blob[5:]
    else:
        raise StateFormatError(
            f"changelog entry for model {key!r} has state format version {version}; "
            f"this build reads version {FORMAT_VERSION} (and migrates version "
            f"{', '.join(map(str, MIGRATED_VERSIONS))})"
        )
    try:
        state = _Unpickler(payload, key, written_by).load()
    except StateFormatError:
        raise
    except _Refused as exc:
        raise StateFormatError(
            f"changelog entry for model {key!r} calls {exc.name} with arguments detector "
            f"state never uses ({exc.why}): refused, not run"
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
    def __init__(self, payload: bytes, key: str, written_by: str | None) -> None:
        super().__init__(io.BytesIO(payload))
        self.key = key
        self.written_by = written_by

    def find_class(self, module: str, name: str) -> Any:
        found = ALLOWED.get((module, name))
        if found is None:
            hint = _river_hint(self.written_by) if module.split(".")[0] == "river" else ""
            raise StateFormatError(
                f"changelog entry for model {self.key!r} refers to {module}.{name}, which "
                f"detector state never holds: refused, not run{hint}"
            )
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


class _Tracker:
    """What an entry gets for a tracker class: only :func:`_restore` builds from it, so a
    tracker is never made (``__new__``) without its state."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self) -> NoReturn:
        raise pickle.PicklingError("a tracker token is not state")


def _tracker(name: str) -> Callable[[], Any]:
    token = _Tracker(name)
    return lambda: token


def _restore(cls: Any, state: Any) -> Any:
    """``_kernel._restore`` for a tracker token and a state dictionary only."""
    if type(cls) is not _Tracker or type(state) is not dict:
        raise _Refused("detector.core._kernel._restore", "a tracker class and a dict only")
    real = getattr(import_module("detector.core._kernel"), cls.name)
    obj = real.__new__(real)
    obj.__setstate__(state)
    return obj


def _adwin_fast(adwin: Any, *args: Any) -> Any:
    from river.drift import ADWIN

    if type(adwin) is not ADWIN:
        raise _Refused("detector.core._kernel.AdwinFast", "a river.drift.ADWIN only")
    return import_module("detector.core._kernel").AdwinFast(adwin, *args)


def _river_detector(name: Any, det: Any) -> Any:
    if name not in _DETECTOR_NAMES or type(det) is not _river_classes()[name]:
        raise _Refused("detector.core._kernel.RiverDetector", "a known River detector only")
    return import_module("detector.core._kernel").RiverDetector(name, det)


def _getattr(obj: Any, name: Any) -> Any:
    """``getattr`` as River's PageHinkley pickles its drift test (a bound method), only."""
    from river.drift import PageHinkley

    if type(obj) is not PageHinkley or name not in _PAGE_HINKLEY_TESTS:
        raise _Refused("builtins.getattr", "PageHinkley's drift test only")
    return getattr(obj, name)


_PAGE_HINKLEY_TESTS = ("_test_increase", "_test_decrease", "_test_both")


def _type(*args: Any) -> type:
    """``type`` as pickle saves ``type(None)`` (a feature value type in signatures), only."""
    if args != (None,):
        raise _Refused("builtins.type", "type(None) only")
    return type(None)


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


#: Every global an entry may name (module, name as pickled) and what it resolves to. The
#: left column is what state pickles hold, for every detector kind the config allows;
#: entries of format version 2 also name the settings classes under ``detector.config``.
ALLOWED: dict[tuple[str, str], Callable[[], Any]] = {
    # The model state (detector.core.engine) and its parts.
    ("detector.core.engine", "ModelState"): _attr("detector.core.engine", "ModelState"),
    ("detector.core.engine", "FeatureMonitor"): _attr("detector.core.engine", "FeatureMonitor"),
    ("detector.core.hits", "Rearm"): _attr("detector.core.hits", "Rearm"),
    # Compiled trackers: built by _restore(class, state dict) only.
    ("detector.core._kernel", "_restore"): _is(_restore),
    ("detector.core._kernel", "RateTracker"): _tracker("RateTracker"),
    ("detector.core._kernel", "NumericTracker"): _tracker("NumericTracker"),
    ("detector.core._kernel", "CategoricalTracker"): _tracker("CategoricalTracker"),
    ("detector.core._kernel", "AdwinFast"): _is(_adwin_fast),
    ("detector.core._kernel", "RiverDetector"): _is(_river_detector),
    # Settings kept by trackers (their detector spec; categorical trackers their settings).
    **{
        (module, name): _settings_class(name)
        for module in ("detector.core.settings", "detector.config")  # config: version 2
        for name in ("DetectionSettings", "DetectorSpec", "ModelSettings", "FeatureSettings")
    },
    # River's drift detectors (river.drift, the ones the config allows) and their parts.
    ("river.drift.adwin", "ADWIN"): _attr("river.drift.adwin", "ADWIN"),
    ("river._river_rust.drift", "AdaptiveWindowing"): _attr(
        "river._river_rust.drift", "AdaptiveWindowing"
    ),
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
    # Plain values: reference counts, and feature value types in the signatures.
    ("collections", "Counter"): _is(Counter),
    ("builtins", "str"): _is(str),
    ("builtins", "int"): _is(int),
    ("builtins", "float"): _is(float),
    ("builtins", "bool"): _is(bool),
    ("builtins", "type"): _is(_type),
}


# -- checking what was loaded -----------------------------------------------------------


class _Invalid(Exception):
    pass


def _fail(where: str, what: str) -> NoReturn:
    raise _Invalid(f"{where} {what}")


def _check_model(state: Any, key: str) -> None:
    """Exact types and in-range indices everywhere: the compiled loop casts and indexes
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

    from river._river_rust.drift import AdaptiveWindowing
    from river.stats import Mean

    cls = type(det)
    if frozenset(vars(det)) != _fresh_attributes(cls):
        _fail(where, f"holds a {cls.__name__} with other attributes than River's")
    parts = vars(det)
    if cls.__name__ == "ADWIN":
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


class _Checker:
    def __init__(self) -> None:
        self.kernel = import_module("detector.core._kernel")
        self.engine = import_module("detector.core.engine")
        self.settings = import_module("detector.core.settings")
        self.done: set[int] = set()

    def _once(self, obj: Any) -> bool:
        if id(obj) in self.done:
            return False
        self.done.add(id(obj))
        return True

    def model(self, state: Any) -> None:
        engine = self.engine
        if type(state) is not engine.ModelState:
            _fail("the entry", "is not model state")
        fresh = vars(engine.ModelState())
        attrs = vars(state)
        for name in fresh.keys() - attrs.keys():  # added since: the default (migration)
            attrs[name] = fresh[name]
        if attrs.keys() != fresh.keys():
            _fail("the model state", f"has unknown attributes {sorted(attrs.keys() - fresh)}")
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
        if state.error is not None:
            self.rate(state.error, "the error rate")
        _int(state.latest_ms, "latest_ms", -(1 << 62))  # 6af747b took times before 1970
        for name in ("events", "refused"):
            _int(getattr(state, name), name, 0)
        self.signatures(state.signatures)

    def signatures(self, signatures: Any) -> None:
        plain = (str, int, float, bool, type(None))
        if type(signatures) is not set:
            _fail("signatures", "is not a set")
        for sig in signatures:
            if (
                type(sig) is not tuple
                or len(sig) != 2
                or type(sig[0]) is not tuple
                or type(sig[1]) is not tuple
                or any(type(n) is not str for n in sig[0])
                or any(t not in plain for t in sig[1])
            ):
                _fail("signatures", "hold something other than names and value types")

    def monitor(self, monitor: Any, where: str) -> None:
        if type(monitor) is not self.engine.FeatureMonitor:
            _fail(where, "is not a feature monitor")
        if type(monitor.fingerprint) is not str:
            _fail(where, "has no fingerprint")
        _int(monitor.last_seen_ms, f"{where} last_seen_ms", -(1 << 62))
        self.rate(monitor.missing, f"{where} missing rate")
        kind, values = monitor.kind, monitor.values
        expected = {
            None: type(None),
            "numeric": self.kernel.NumericTracker,
            "categorical": self.kernel.CategoricalTracker,
        }.get(kind)
        if expected is None:
            _fail(where, f"has kind {kind!r}")
        if values is not None and type(values) is not expected:
            _fail(where, f"is {kind} but holds a {type(values).__name__}")
        if type(values) is self.kernel.NumericTracker:
            self.numeric(values, f"{where} values")
        elif type(values) is self.kernel.CategoricalTracker:
            self.categorical(values, f"{where} values")

    def common(self, state: dict[str, Any], where: str) -> int:
        k = _int(state["k"], f"{where} block size", 1)
        _int(state["cnt"], f"{where} block count", 0, k - 1)
        _int(state["seen"], f"{where} seen", 0)
        self.rearm(state["rearm"], where)
        return k

    def rate(self, tracker: Any, where: str) -> None:
        if type(tracker) is not self.kernel.RateTracker:
            _fail(where, "is not a rate tracker")
        if not self._once(tracker):
            return
        state = tracker.__getstate__()
        k = self.common(state, where)
        if state["drift_type"] not in ("missing_rate", "error_rate"):
            _fail(where, f"has drift type {state['drift_type']!r}")
        self.detector(state["detector"], where)
        blocks = _int(state["ref_blocks"], f"{where} reference blocks", 1)
        _int(state["ref_len"], f"{where} reference length", 0, blocks)
        _int(state["ref_sum"], f"{where} reference sum", 0, blocks * k)
        _int(state["acc"], f"{where} block sum", 0, k)
        recent = _array(state["recent"], f"{where} window", "i8", 1)
        _int(state["recent_head"], f"{where} window head", 0, recent.shape[0] - 1)
        _int(state["recent_len"], f"{where} window length", 0, recent.shape[0])

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
        kernel = self.kernel
        if type(det) is kernel.AdwinFast:
            adwin, _detected, pending, _zeros_only = det.__reduce__()[1]
            _check_river_object(adwin, where)
            _int(pending, f"{where} pending zeros", 0)
        elif type(det) is kernel.RiverDetector:
            name, river_det = det.__reduce__()[1]
            if type(river_det) is not _river_classes().get(name):
                _fail(where, f"has a {name!r} detector that is not River's")
            _check_river_object(river_det, where)
        else:
            _fail(where, f"has a detector that is a {type(det).__name__}")

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
        if set(vars(model)) != set(cls.model_fields):
            _fail(where, f"has a {cls.__name__} with other attributes than its fields")
        try:
            clean = cls.model_validate(model.model_dump(warnings=False))
        except Exception:
            _fail(where, f"has an invalid {cls.__name__}")
        if clean != model:
            _fail(where, f"has an invalid {cls.__name__}")


__all__ = [
    "ALLOWED",
    "FORMAT_VERSION",
    "MAGIC",
    "StateFormatError",
    "decode_model",
    "encode_model",
    "river_version",
]
