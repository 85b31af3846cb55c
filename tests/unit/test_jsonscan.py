"""The event reader's JSON cursor (detector/core/jsonscan.py) against orjson.

The cursor reads a subset of JSON and gives up on the rest (the engine then parses with
orjson, the parser of record). What must hold, compiled and uncompiled alike:

- whatever it reads, it reads as orjson does: the same value, of the same type, to the bit;
- it never takes a document orjson refuses (a mutation fuzz of valid documents);
- it does not give up on what events are made of: printable ASCII strings, numbers as
  producers write them, true/false/null, nested unknown fields.
"""

from __future__ import annotations

import json
import math
import random
import struct
from typing import Any

import orjson
import pure
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.core import jsonscan

MODULES = {"compiled": jsonscan, "uncompiled": pure.core().jsonscan}


def test_compiled() -> None:
    assert pure.is_compiled(jsonscan)


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return jsonscan.GIVE_UP


def _same(got: Any, expected: Any) -> bool:
    """Equal, of the same types all the way down; floats to the bit."""
    if type(got) is not type(expected):
        return False
    if isinstance(got, float):
        return struct.pack("<d", got) == struct.pack("<d", expected)
    if isinstance(got, dict):
        return list(got) == list(expected) and all(_same(got[k], expected[k]) for k in got)
    if isinstance(got, list):
        return len(got) == len(expected) and all(map(_same, got, expected))
    return bool(got == expected)


def _check(module: Any, raw: bytes) -> Any:
    """Read ``raw``: what the cursor read must be orjson's (or a valid document it
    stepped over); returns what it read."""
    got = module.read(raw)
    if got is module.GIVE_UP:
        return got
    expected = _loads(raw)
    assert expected is not jsonscan.GIVE_UP, f"took what orjson refuses: {raw!r}"
    if got is not module.SKIPPED:
        assert _same(got, expected), (raw, got, expected)
    return got


@pytest.fixture(params=list(MODULES))
def module(request: pytest.FixtureRequest) -> Any:
    return MODULES[request.param]


class TestNumbers:
    EXACT = [
        b"0",
        b"-0",
        b"7",
        b"-12",
        b"123456789012345678",
        b"-123456789012345678",
        b"0.0",
        b"-0.0",
        b"0.5",
        b"-1.25",
        b"0.1",
        b"1.23456",
        b"-0.00001",
        b"3.141592653589793",
        b"0.8444218515250481",
        b"0.12345678901234567",
        b"9007199254740993.0",
        b"1e3",
        b"1E3",
        b"1e+22",
        b"1e23",
        b"2.5e-7",
        b"1.7976931348623157e308",
        b"2.2250738585072014e-308",
        b"123456789012345678901234.5",
        b"0.000000000000000000000000000001",
        b"1.00000000000000000000000000001",
        b"4.9406564584124654e-300",
    ]
    GIVE_UP = [
        b"1234567890123456789",  # more digits than a C long long is sure to hold
        b"123456789012345678901234",  # orjson's float
        b"1e400",  # orjson refuses
        b"-1e400",
        b"1e-400",  # underflow
        b"4.9e-324",  # subnormal
        b"01",
        b"-01",
        b"1.",
        b".5",
        b"-",
        b"+1",
        b"1e",
        b"1e+",
        b"0x10",
        b"NaN",
        b"Infinity",
        b"1_000",
    ]

    @pytest.mark.parametrize("text", EXACT)
    def test_read_as_orjson(self, module: Any, text: bytes) -> None:
        assert _check(module, text) is not module.GIVE_UP, text

    @pytest.mark.parametrize("text", GIVE_UP)
    def test_gives_up(self, module: Any, text: bytes) -> None:
        assert module.read(text) is module.GIVE_UP

    @settings(max_examples=3000, deadline=None)
    @given(st.floats(allow_nan=False, allow_infinity=False))
    def test_any_double_as_python_writes_it(self, x: float) -> None:
        """Every double written by repr, orjson and in exponent form reads back to the
        bit; only subnormals give up."""
        for module in MODULES.values():
            for text in (repr(x).encode(), orjson.dumps(x), f"{x:.17e}".encode()):
                got = _check(module, text)
                if x != 0 and abs(x) < 2.2250738585072014e-308:
                    continue
                assert got is not module.GIVE_UP, text

    @settings(max_examples=3000, deadline=None)
    @given(
        st.booleans(),
        st.text("0123456789", min_size=1, max_size=30),
        st.one_of(st.none(), st.text("0123456789", min_size=1, max_size=30)),
        st.one_of(st.none(), st.integers(-400, 400)),
    )
    def test_any_decimal(
        self, negative: bool, whole: str, fraction: str | None, exponent: int | None
    ) -> None:
        """Decimals of any length and exponent, leading zeros too: read as orjson does or
        given up."""
        text = ("-" if negative else "") + whole
        if fraction is not None:
            text += "." + fraction
        if exponent is not None:
            text += f"e{exponent:+d}"
        for module in MODULES.values():
            _check(module, text.encode())

    @settings(max_examples=1000, deadline=None)
    @given(st.integers(-(10**18) + 1, 10**18 - 1))
    def test_integers_are_ints(self, n: int) -> None:
        for module in MODULES.values():
            got = module.read(str(n).encode())
            assert type(got) is int and got == n


class TestStrings:
    @settings(max_examples=1000, deadline=None)
    @given(st.text())
    def test_any_text(self, text: str) -> None:
        """Any text, as orjson writes it (UTF-8, escapes only where JSON needs them) and as
        the standard library does (every non-ASCII character escaped, surrogate pairs
        included): read, to the same str."""
        for raw in (orjson.dumps(text), json.dumps(text).encode()):
            for module in MODULES.values():
                assert _check(module, raw) == text, raw

    @settings(max_examples=3000, deadline=None)
    @given(st.binary(max_size=12))
    def test_any_bytes(self, body: bytes) -> None:
        """Any bytes between quotes: read as orjson reads them (UTF-8 is checked as it
        checks it: overlong forms, surrogates, truncated sequences refused), or refused
        where orjson refuses them."""
        raw = b'"' + body + b'"'
        for module in MODULES.values():
            got = _check(module, raw)
            if _loads(raw) is not jsonscan.GIVE_UP:
                assert got is not module.GIVE_UP, raw

    @pytest.mark.parametrize(
        ("raw", "text"),
        [
            (b'"\\u00e9"', "é"),
            (b'"\\ud83d\\ude00"', "\U0001f600"),
            (b'"a\\"b\\\\c\\/d\\n"', 'a"b\\c/d\n'),
            ('"é模型😀"'.encode(), "é模型😀"),
            (b'"\x7f"', "\x7f"),
        ],
    )
    def test_reads(self, module: Any, raw: bytes, text: str) -> None:
        assert module.read(raw) == text

    @pytest.mark.parametrize(
        "raw",
        [
            b'"abc',
            b'"a\x01b"',
            b'"\\"',
            b'"\xff"',
            b'"\xc0\xaf"',  # overlong
            b'"\xed\xa0\x80"',  # an encoded surrogate
            b'"\xe2\x82"',  # truncated
            b'"\xf4\x90\x80\x80"',  # past U+10FFFF
            b'"\\ud800"',  # a lone surrogate escape
            b'"\\x"',
        ],
    )
    def test_refused(self, module: Any, raw: bytes) -> None:
        assert _loads(raw) is jsonscan.GIVE_UP
        assert module.read(raw) is module.GIVE_UP


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=8),
    st.text(max_size=4),
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


class TestDocuments:
    @settings(max_examples=2000, deadline=None)
    @given(_json, st.sampled_from([None, 0, 2]))
    def test_any_document(self, value: Any, indent: int | None) -> None:
        """Any JSON value, compact or indented (whitespace everywhere): read as orjson
        reads it, stepped over (a valid nested document), or given up."""
        raw = json.dumps(value, indent=indent, ensure_ascii=False).encode()
        for module in MODULES.values():
            _check(module, raw)

    def test_event_shapes_are_read(self, module: Any) -> None:
        """What events are made of is in the subset."""
        doc = {
            "event_id": "e-1",
            "model": "fraud",
            "timestamp": "2026-01-01T00:00:00.123Z",
            "features": {"amount": 12.5, "n": 3, "country": "DE", "new": True, "gone": None},
            "prediction": {"0": 0.25, "1": 0.75},
            "label": 1,
            "segment": {"region": "eu"},
            "trace": {"span": "a1", "tags": ["x", 1.5, [None, False]], "deep": {"a": {}}},
            "empty": [],
        }
        for raw in (orjson.dumps(doc), json.dumps(doc, indent=2).encode()):
            assert module.read(raw) is module.SKIPPED
            assert _check(module, orjson.dumps(doc["features"])) == doc["features"]
            assert _check(module, orjson.dumps(doc["prediction"])) == doc["prediction"]

    def test_nesting_beyond_64_gives_up(self, module: Any) -> None:
        assert module.read(b"[" * 64 + b"]" * 64) is module.SKIPPED
        assert module.read(b"[" * 65 + b"]" * 65) is module.GIVE_UP

    def test_repeated_key_of_a_flat_object_gives_up(self, module: Any) -> None:
        """orjson keeps the last of repeated keys; the cursor leaves that to it."""
        assert module.read(b'{"a": 1, "a": 2}') is module.SKIPPED  # stepped over, not read

    @pytest.mark.parametrize(
        "raw",
        [
            b"",
            b" ",
            b"{",
            b"{}}",
            b'{"a" 1}',
            b'{"a":}',
            b'{"a":1 "b":2}',
            b"[1,]",
            b"[1 2]",
            b"{,}",
            b"truex",
            b"nulll",
            b"[1]\x00",
            b"\xef\xbb\xbf{}",
            b"{}\x0b",
        ],
    )
    def test_refuses_invalid(self, module: Any, raw: bytes) -> None:
        assert _loads(raw) is jsonscan.GIVE_UP
        assert module.read(raw) is module.GIVE_UP


class TestMutations:
    """Random edits of valid documents: the cursor never takes one orjson refuses, and
    reads every one it takes as orjson does."""

    SEEDS = [
        orjson.dumps(
            {
                "event_id": "ev-1",
                "model": "m",
                "timestamp": 1767225600000,
                "features": {"a": -1.5e-3, "b": 12, "c": "x", "d": None, "e": False},
                "prediction": {"0": 0.4, "1": 0.6},
                "extra": [1, {"k": [True, "v"]}],
            }
        ),
        b'{ "a" : [ 1 , 2.5 , "s" ] , "b" : { } , "c" : [ ] }',
        b'{"x":{"y":{"z":[0,-0,0.0,1E+2]}}}',
    ]
    ALPHABET = b'{}[]:,"\\ 0123456789-+.eE\ttrufalsn\x00\x80\xff'

    @pytest.mark.parametrize("seed", range(len(SEEDS)))
    def test_mutations(self, seed: int) -> None:
        rng = random.Random(seed)
        base = self.SEEDS[seed]
        taken = 0
        for _ in range(4000):
            raw = bytearray(base)
            for _ in range(rng.randint(1, 3)):
                at = rng.randrange(len(raw))
                edit = rng.random()
                if edit < 0.4:
                    raw[at] = rng.choice(self.ALPHABET)
                elif edit < 0.7:
                    del raw[at]
                else:
                    raw.insert(at, rng.choice(self.ALPHABET))
            for module in MODULES.values():
                if _check(module, bytes(raw)) is not module.GIVE_UP:
                    taken += 1
        assert taken > 500  # the fuzz reaches documents the cursor takes


def test_exact_fast_path_boundaries() -> None:
    """Clinger's fast path (one exact operation) meets CPython's reader at 2**53 and at
    10**22: both sides of each are read to the bit."""
    for text in (
        b"9007199254740992.5",
        b"9007199254740993.5",
        b"1.5e22",
        b"1.5e23",
        b"12345e-22",
        b"12345e-23",
    ):
        for module in MODULES.values():
            got = module.read(text)
            assert struct.pack("<d", got) == struct.pack("<d", float(text)), text
    assert math.isclose(jsonscan.read(b"1.5e22"), 1.5e22)
