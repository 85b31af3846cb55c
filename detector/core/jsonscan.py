"""A reader of the plain JSON most events are written in, straight from the message bytes.

:class:`Cursor` walks one JSON document without building it: the engine reads an event's
known fields from it and matches its features against the model's layout in the same pass
(:meth:`detector.core.engine.PartitionDetectors._scan`), so that an event needs no dict of
its features, no Python float per number and no second loop over them.

It reads a subset of JSON and gives up (a method returns ``False``, ``-1``, ``OTHER`` or
:data:`GIVE_UP`) on anything outside it; the engine then parses the event with orjson, the
parser of record. Within the subset every value is the one orjson gives (tests hold the two
to that on generated documents, numbers, texts and bytes):

* strings: UTF-8 checked as orjson checks it (no overlong form, no surrogate, nothing past
  U+10FFFF); a string with an escape is decoded by orjson itself, that string alone;
* numbers in JSON's grammar: integers of up to 18 digits (orjson's int); other numbers
  exactly rounded to the nearest double (orjson's float), for the common ones by one exact
  multiplication or division (Clinger's fast path), else by CPython's correctly rounded
  ``PyOS_string_to_double``; no overflow, underflow or subnormal;
* ``true``, ``false``, ``null``, and objects and arrays of these, nested 64 deep at most;
* JSON's four whitespace bytes.

Compiled (Cython's pure-Python mode, C types and the C helpers in ``jsonscan.pxd``), and
plain Python too, with the same results (the tests run both).
"""

from __future__ import annotations

from typing import Any

import cython
import numpy as np
import orjson

# What a value is (Cursor.token).
OTHER = 0  # an object, an array, or something outside the subset
STRING = 1
NUMBER = 2
TRUE = 3
FALSE = 4
NULL = 5
KEY = 6  # (Cursor.member) a key other than the expected one

#: What the readers of a value return when they give up.
GIVE_UP: Any = object()
#: What :func:`read` returns for an object or array it stepped over.
SKIPPED: Any = object()

# Compiled: C constants (jsonscan.pxd).
_OTHER = OTHER
_STRING = STRING
_NUMBER = NUMBER
_TRUE = TRUE
_FALSE = FALSE
_NULL = NULL
_KEY = KEY
_GIVE_UP = GIVE_UP

_MAX_DEPTH = 64
_WORDS = 64  # how many distinct keys and values of flat objects a cursor reuses
_EXACT = 9007199254740992  # 2 ** 53: integers up to this are exact doubles
_MAX_DIGITS = 18  # any integer of this many digits fits a C long long
_MAX_EXPONENT = 100_000
_SMALLEST = 2.2250738585072014e-308  # the smallest normal double
_LARGEST = 1.7976931348623157e308
_POW10 = tuple(float(10**k) for k in range(23))  # exact doubles
_TENS: tuple[int, ...] = tuple(10**k for k in range(19))


def _pow10(k: int) -> float:
    """10 ** k, exactly, for 0 <= k <= 22 (compiled: a C table)."""
    if cython.compiled:
        return dd_pow10(k)  # type: ignore[no-any-return, name-defined]  # noqa: F821 (jsonscan.pxd)
    return _POW10[k]


def _ten_to(k: int) -> int:
    """10 ** k, for 0 <= k <= 18 (compiled: a C table)."""
    if cython.compiled:
        return dd_ten_to(k)  # type: ignore[no-any-return, name-defined]  # noqa: F821 (jsonscan.pxd)
    return _TENS[k]


def _eight_digits(raw: bytes, pos: int) -> tuple[int, int]:
    """How many of the (up to) eight bytes from ``pos`` are digits, from the first, and
    the number they write. Compiled, ``dd_eight_digits`` (jsonscan.pxd) does the same
    with the eight bytes as one word, as simdjson and fast_float do."""
    n = 0
    run = 0
    for c in raw[pos : pos + 8]:
        if c < 48 or c > 57:
            break
        run = run * 10 + (c - 48)
        n += 1
    return n, run


class Texts:
    """Up to ``room`` strs read from the bytes and read again (a feature's categories, the
    model names), each with its first eight bytes (UTF-8, as one little-endian word,
    zeros after a shorter one) and its byte length: :meth:`Cursor.cached` finds the one a
    string's bytes are by a loop over these two small arrays, not through each str."""

    def __init__(self, room: int) -> None:
        self.items: list[str] = []
        self.prints = np.zeros(room, dtype=np.uint64)
        self.sizes = np.zeros(room, dtype=np.int64)
        self.room = room

    def add(self, text: str) -> None:
        """Keep ``text`` (valid UTF-8), unless ``room`` are kept already."""
        n = len(self.items)
        if n >= self.room:
            return
        raw = text.encode()
        self.prints[n] = int.from_bytes(raw[:8], "little")
        self.sizes[n] = len(raw)
        self.items.append(text)


class Cursor:
    """A position in one JSON document (the bytes of one message). ``start`` sets it on a
    new document; the readers advance ``pos``. Reused for every event."""

    def __init__(self) -> None:
        self.raw = b""
        self.buf = self.raw
        self.pos = 0
        self.end = 0
        self.mark = 0
        self.stop = 0
        self.x = 0.0
        self.i = 0
        self.integer = False
        self.ascii = True
        self.escaped = False
        self.decoded: Any = None
        self.after = 0  # (value_then) the byte after the value
        # A number being read (number, _digits): its digits, the power of ten they take,
        # and whether a digit did not fit.
        self.mantissa = 0
        self.exponent = 0
        self.cut = False
        #: The keys and string values of flat objects (class names, segments) seen first.
        self.words = Texts(_WORDS)

    def start(self, raw: Any, max_bytes: int) -> bool:
        """Take ``raw``; True if it is bytes of at most ``max_bytes`` and its first byte
        but whitespace opens an object (``pos`` is then on the brace)."""
        if not self.load(raw) or self.end > max_bytes:
            return False
        return self.ws() == 123

    def load(self, raw: Any) -> bool:
        """Take ``raw``, at its start; True if it is bytes, and not empty."""
        if type(raw) is not bytes or len(raw) == 0:
            return False
        self.raw = raw
        self.buf = raw
        self.end = len(raw)
        self.pos = 0
        return True

    def ws(self) -> int:
        """Skip whitespace: the byte there (``pos`` is on it), -1 at the end."""
        buf = self.buf
        pos = self.pos
        end = self.end
        while pos < end:
            c = buf[pos]
            if c != 32 and c != 10 and c != 13 and c != 9:
                self.pos = pos
                return c
            pos += 1
        self.pos = pos
        return -1

    def step(self) -> int:
        """Skip whitespace and the byte after it: that byte, -1 at the end."""
        c = self.ws()
        if c >= 0:
            self.pos += 1
        return c

    def token(self) -> int:
        """Skip whitespace and read the scalar there: what it is (STRING: its text from
        ``mark`` to ``stop``; NUMBER: ``x``, and ``i`` if ``integer``). OTHER leaves ``pos``
        on an object's or array's opening byte, or wherever the subset ends."""
        c = self.ws()
        if c == 34:
            return _STRING if self.string() else _OTHER
        if c == 45 or (48 <= c <= 57):
            return _NUMBER if self.number() else _OTHER
        if c == 116:
            return _TRUE if self._word(b"true") else _OTHER
        if c == 102:
            return _FALSE if self._word(b"false") else _OTHER
        if c == 110:
            return _NULL if self._word(b"null") else _OTHER
        return _OTHER

    def string(self) -> bool:
        """At an opening quote: read a string (its bytes from ``mark`` to ``stop``) and
        step past its closing quote. Text that is not ASCII must be valid UTF-8; a string
        with an escape is decoded by orjson (``decoded``; ``escaped`` says so)."""
        buf = self.buf
        end = self.end
        pos = self.pos + 1
        self.mark = pos
        self.ascii = True
        self.escaped = False
        while pos < end:
            c = buf[pos]
            if c == 34:
                self.stop = pos
                self.pos = pos + 1
                if self.escaped:
                    return self._unescape()
                return self.ascii or self._utf8(self.mark, pos)
            if c < 32:
                return False
            if c == 92:
                self.escaped = True
                pos += 1  # the escaped byte cannot close the string
            elif c >= 128:
                self.ascii = False
            pos += 1
        return False

    def member(self, head: bytes) -> int:
        """An object's next member, up to its value: skip whitespace, read the key and the
        colon after it. If the member starts with the bytes ``head`` (``"key":`` for a key
        that JSON writes as is, see :func:`plain`; nothing is checked twice, the bytes are
        the key's), then read the value as :meth:`value_then` does and return its token;
        for another key (read as ``string`` reads it) return KEY, the value not read yet;
        OTHER where the subset ends. An empty ``head`` matches nothing."""
        if self.ws() != 34:
            return _OTHER
        if self.expect(head):
            return self.value_then()
        if not self.string() or self.step() != 58:
            return _OTHER
        return _KEY

    def expect(self, head: bytes) -> bool:
        """At an opening quote: whether the bytes here are ``head``, a key that JSON writes
        as is in its quotes (and its colon, if ``head`` ends with one); then step past them,
        the key read (``mark`` to ``stop``) as ``string`` reads it. Nothing is checked
        twice: the bytes are the key's. An empty ``head`` matches nothing."""
        pos = self.pos
        stop = pos + len(head)
        if stop == pos or stop > self.end or not self.same(pos, stop, head):
            return False
        self.mark = pos + 1
        self.stop = stop - 2 if head[len(head) - 1] == 58 else stop - 1
        self.pos = stop
        self.escaped = False
        self.ascii = False  # (not looked at: text() would decode the bytes as UTF-8)
        return True

    def value_then(self) -> int:
        """Read a scalar value (:meth:`token`: its kind), then step past the byte after it
        (``after``: a comma, a closing brace, or another byte or -1 for the caller to
        refuse)."""
        kind = self.token()
        self.after = self.step()
        return kind

    def _utf8(self, pos: int, stop: int) -> bool:
        """Whether the bytes from ``pos`` to ``stop`` are well-formed UTF-8 (the Unicode
        standard's table 3-7: no overlong forms, no surrogates, nothing past U+10FFFF),
        as orjson requires."""
        buf = self.buf
        while pos < stop:
            c = buf[pos]
            if c < 128:
                pos += 1
                continue
            if c < 0xC2:
                return False
            if c < 0xE0:
                n = 1
                low = 0x80
                high = 0xBF
            elif c < 0xF0:
                n = 2
                low = 0xA0 if c == 0xE0 else 0x80
                high = 0x9F if c == 0xED else 0xBF
            elif c < 0xF5:
                n = 3
                low = 0x90 if c == 0xF0 else 0x80
                high = 0x8F if c == 0xF4 else 0xBF
            else:
                return False
            if pos + n >= stop:
                return False
            c = buf[pos + 1]
            if c < low or c > high:
                return False
            for k in range(2, n + 1):
                c = buf[pos + k]
                if c < 0x80 or c > 0xBF:
                    return False
            pos += n + 1
        return True

    def _unescape(self) -> bool:
        """The string just read has an escape: orjson decodes it (and refuses a lone
        surrogate or a bad escape)."""
        try:
            self.decoded = orjson.loads(self.raw[self.mark - 1 : self.stop + 1])
        except orjson.JSONDecodeError:
            return False
        return True

    def number(self) -> bool:
        """At ``-`` or a digit: read a number into ``x`` (and ``i``, ``integer``)."""
        buf = self.buf
        end = self.end
        pos = self.pos
        first = pos
        negative = False
        if buf[pos] == 45:
            negative = True
            pos += 1
            if pos >= end:
                return False
        self.mantissa = 0
        self.exponent = 0
        self.cut = False
        c = buf[pos]
        if c == 48:
            pos += 1
            c = buf[pos] if pos < end else 0
            if 48 <= c <= 57:
                return False  # a leading zero
        elif 49 <= c <= 57:
            pos = self._digits(pos, False)
            c = buf[pos] if pos < end else 0
        else:
            return False
        integer = True
        if c == 46:
            integer = False
            pos += 1
            c = buf[pos] if pos < end else 0
            if c < 48 or c > 57:
                return False
            pos = self._digits(pos, True)
        mantissa = self.mantissa
        exponent = self.exponent
        if pos < end and (buf[pos] == 101 or buf[pos] == 69):
            integer = False
            pos += 1
            sign = 1
            if pos < end and (buf[pos] == 43 or buf[pos] == 45):
                if buf[pos] == 45:
                    sign = -1
                pos += 1
            if pos >= end or not 48 <= buf[pos] <= 57:
                return False
            power = 0
            while pos < end and 48 <= buf[pos] <= 57:
                if power < _MAX_EXPONENT:
                    power = power * 10 + (buf[pos] - 48)
                pos += 1
            exponent += sign * power
        if integer:
            if self.cut:
                return False  # orjson's int or float: the slow path decides
            self.i = -mantissa if negative else mantissa
            self.x = self.i
        elif mantissa == 0:
            self.x = -0.0 if negative else 0.0
        elif not self.cut and mantissa <= _EXACT and -22 <= exponent <= 22:
            x = mantissa * _pow10(exponent) if exponent >= 0 else mantissa / _pow10(-exponent)
            self.x = -x if negative else x
        else:
            if cython.compiled:  # noqa: SIM108 (Cython drops the other branch)
                x = dd_strtod(self.buf, first, pos)  # type: ignore[name-defined]  # noqa: F821 (jsonscan.pxd)
            else:
                x = float(self.raw[first:pos])
            if not _SMALLEST <= abs(x) <= _LARGEST:
                return False  # overflow, underflow, subnormal (or NaN: not read)
            self.x = x
        self.integer = integer
        self.pos = pos
        return True

    def _digits(self, pos: int, fraction: bool) -> int:
        """Read the run of digits at ``pos`` into ``mantissa`` (and ``exponent``), and
        return the position after it. The mantissa takes the digits while it has fewer
        than 18 significant ones (``_MAX_DIGITS``: it fits a C long long), up to eight at a
        time; past that, a digit of the integer part raises the exponent, one of a fraction
        is dropped, and either sets ``cut`` (unless a fraction's 0)."""
        mantissa = self.mantissa
        exponent = self.exponent
        run = 0
        while True:
            if cython.compiled:
                n = dd_eight_digits(self.buf, pos, self.end, cython.address(run))  # type: ignore[name-defined]  # noqa: F821 (jsonscan.pxd)
            else:
                n, run = _eight_digits(self.raw, pos)
            if n == 0:
                break
            if mantissa < _ten_to(_MAX_DIGITS - n):  # the n digits fit
                mantissa = mantissa * _ten_to(n) + run
                if fraction:
                    exponent -= n
                pos += n
                if n < 8:
                    break
                continue
            digit = self.buf[pos] - 48  # the mantissa is nearly full: one digit at a time
            if mantissa < _ten_to(_MAX_DIGITS - 1):
                mantissa = mantissa * 10 + digit
                if fraction:
                    exponent -= 1
            elif not fraction:
                exponent += 1
                self.cut = True
            elif digit:
                self.cut = True
            pos += 1
        self.mantissa = mantissa
        self.exponent = exponent
        return pos

    def _word(self, word: bytes) -> bool:
        """``word`` (true, false, null) here: step past it."""
        n = len(word)
        if self.pos + n > self.end or not self.same(self.pos, self.pos + n, word):
            return False
        self.pos += n
        return True

    def same(self, start: int, stop: int, key: bytes) -> bool:
        """Whether the bytes from ``start`` to ``stop`` are ``key``."""
        if cython.compiled:
            return dd_same(self.buf, start, stop, key)  # type: ignore[no-any-return, name-defined]  # noqa: F821 (jsonscan.pxd)
        return self.raw[start:stop] == key

    def is_key(self, key: bytes) -> bool:
        """Whether the last string read, written without an escape, is ``key`` (UTF-8)."""
        return not self.escaped and self.same(self.mark, self.stop, key)

    def text(self) -> str:
        """The last string read, as a str."""
        if self.escaped:
            return self.decoded  # type: ignore[no-any-return]
        if cython.compiled:
            return dd_text(self.buf, self.mark, self.stop, self.ascii)  # type: ignore[no-any-return, name-defined]  # noqa: F821 (jsonscan.pxd)
        return self.raw[self.mark : self.stop].decode("utf-8")

    def cached(self, texts: Texts) -> str:
        """``text()``, or the equal str among ``texts`` (which keeps the first few): the
        values of a category or a model's name are few, and come back."""
        if self.escaped:
            return self.decoded  # type: ignore[no-any-return]
        items = texts.items
        if cython.compiled:
            found: int = dd_find_print(  # type: ignore[name-defined]  # noqa: F821 (jsonscan.pxd)
                self.buf,
                self.mark,
                self.stop,
                cython.address(texts.prints[0]),
                cython.address(texts.sizes[0]),
                items,
            )
        else:
            raw = self.raw[self.mark : self.stop]
            found = next((i for i, known in enumerate(items) if known.encode() == raw), -1)
        if found >= 0:
            return items[found]
        text = self.text()
        texts.add(text)
        return text

    def word(self) -> str:
        """``cached`` over the cursor's own few: keys and values of flat objects, labels."""
        return self.cached(self.words)

    def value(self, kind: int) -> Any:
        """The value of the token just read, as orjson gives it."""
        if kind == _STRING:
            return self.text()
        if kind == _NUMBER:
            if self.integer:
                return self.i
            return self.x
        if kind == _TRUE:
            return True
        if kind == _FALSE:
            return False
        if kind == _NULL:
            return None
        return _GIVE_UP

    def scalar(self) -> Any:
        """Read a scalar: its value, or GIVE_UP."""
        return self.value(self.token())

    def flat(self) -> Any:
        """Read null (None) or an object of scalars (a dict), or GIVE_UP (also on a
        repeated key, where orjson keeps the last value)."""
        kind = self.token()
        if kind == _NULL:
            return None
        if kind != _OTHER or self.ws() != 123:
            return _GIVE_UP
        self.pos += 1
        out: dict[str, Any] = {}
        if self.ws() == 125:
            self.pos += 1
            return out
        while True:
            if self.ws() != 34 or not self.string():
                return _GIVE_UP
            key = self.word()
            if key in out or self.step() != 58:
                return _GIVE_UP
            kind = self.token()
            if kind == _STRING:
                out[key] = self.word()
            elif kind == _OTHER:
                return _GIVE_UP
            else:
                out[key] = self.value(kind)
            c = self.step()
            if c == 125:
                return out
            if c != 44:
                return _GIVE_UP

    def skip(self, depth: int) -> bool:
        """Step over any value in the subset (an unknown field's)."""
        kind = self.token()
        if kind != _OTHER:
            return True
        c = self.ws()
        if c != 123 and c != 91:
            return False
        if depth >= _MAX_DEPTH:
            return False
        close = c + 2  # } after {, ] after [
        self.pos += 1
        if self.ws() == close:
            self.pos += 1
            return True
        while True:
            if c == 123 and (self.ws() != 34 or not self.string() or self.step() != 58):
                return False
            if not self.skip(depth + 1):
                return False
            d = self.step()
            if d == close:
                return True
            if d != 44:
                return False

    def finished(self) -> bool:
        """Whether only whitespace is left."""
        return self.ws() < 0


def plain(key: bytes) -> bool:
    """Whether JSON writes the UTF-8 text ``key`` as is: no quote, backslash or control
    character (:meth:`Cursor.member` matches only such keys)."""
    return all(c >= 32 and c != 34 and c != 92 for c in key)


def read(raw: bytes) -> Any:
    """The JSON document ``raw`` as a :class:`Cursor` reads it: a scalar or an object of
    scalars (as orjson gives them), SKIPPED for any other object or array it can step
    over, GIVE_UP where it gives up. For the tests, and for trying what the subset takes."""
    cursor = Cursor()
    if not cursor.load(raw):
        return _GIVE_UP
    c = cursor.ws()
    if c == 123:
        value = cursor.flat()
        if value is _GIVE_UP:
            cursor.pos = 0
            value = SKIPPED if cursor.skip(0) else _GIVE_UP
    elif c == 91:
        value = SKIPPED if cursor.skip(0) else _GIVE_UP
    else:
        value = cursor.scalar()
    if value is _GIVE_UP or not cursor.finished():
        return _GIVE_UP
    return value


__all__ = [
    "FALSE",
    "GIVE_UP",
    "KEY",
    "NULL",
    "NUMBER",
    "OTHER",
    "SKIPPED",
    "STRING",
    "TRUE",
    "Cursor",
    "Texts",
    "plain",
    "read",
]
