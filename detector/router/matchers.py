r"""Label matchers in Alertmanager's syntax: ``severity="critical"``, ``model=~"fraud.*"``.

A matcher is ``<label> <op> <value>`` with ``op`` one of ``=``, ``!=``, ``=~`` (regex
matches) and ``!~`` (regex does not match); whitespace around the parts is ignored. The
value is double-quoted (``\"`` is a quote, ``\\`` a backslash, ``\n`` a newline; any
other backslash is kept as it is, so ``"amount\d+"`` is the regex ``amount\d+``) or
unquoted, in which case it may not contain whitespace, quotes, commas or braces (nor start
with ``=`` or ``~``: ``model==x`` is a typo, not the value ``=x``). The label
must be one of :data:`~detector.router.model.LABEL_NAMES`; an absent label matches as ``""``.
Regexes are fully anchored, as in Alertmanager: ``=~"fraud"`` matches ``fraud`` only.

A list of matchers is ``{a="1", b=~"2"}`` or the same without the braces.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from detector.router.model import LABEL_NAMES

Op = Literal["=", "!=", "=~", "!~"]

OPS: tuple[Op, ...] = ("=", "!=", "=~", "!~")

EXAMPLE = 'a matcher such as severity="critical" or model=~"fraud.*"'

# Longest operators first, so "=~" is not read as "=" followed by "~...".
_HEAD = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*")
#: Characters that end an unquoted value.
_UNQUOTED_STOP = frozenset(' \t\r\n\f\v",{}')
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n"}


class MatcherError(ValueError):
    """Not a matcher. The one-line message says what was expected."""


@dataclass(frozen=True, slots=True)
class Matcher:
    """One parsed matcher. ``str()`` gives the canonical form, which parses back to it."""

    name: str
    op: Op
    value: str
    regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this matcher (an absent label is ``""``)."""
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self.regex is not None
        found = self.regex.fullmatch(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        return f"{self.name}{self.op}{quote(self.value)}"


def quote(value: str) -> str:
    """``value`` double-quoted, with backslashes, quotes and newlines escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def make_matcher(name: str, op: str, value: str) -> Matcher:
    """A matcher from its parts; the regex of ``=~``/``!~`` is compiled here."""
    if name not in LABEL_NAMES:
        raise MatcherError(f"expected a label name (one of {', '.join(LABEL_NAMES)}), not {name!r}")
    if op not in OPS:
        raise MatcherError(f"expected an operator (one of {', '.join(OPS)}), not {op!r}")
    regex = None
    if op in ("=~", "!~"):
        try:
            re.compile(value)  # alone first: "a)|(b" must not escape the anchoring group
            regex = re.compile(f"^(?:{value})$")
        except re.error as exc:
            raise MatcherError(f"expected a valid regular expression ({exc})") from None
    return Matcher(name, op, value, regex)


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher such as ``model="fraud"``. Raises MatcherError."""
    matcher, rest = _parse_one(text, 0)
    if text[rest:].strip():
        raise MatcherError('expected a single matcher, such as severity="critical"')
    return matcher


def parse_matchers(text: str) -> list[Matcher]:
    """Parse ``{a="1", b=~"2"}`` or ``a="1", b=~"2"`` (``{}`` is no matchers).

    A trailing comma is allowed. Raises MatcherError.
    """
    body = text.strip()
    if body.startswith("{"):
        if not body.endswith("}"):
            raise MatcherError("expected a closing brace after the matchers")
        body = body[1:-1]
    elif body.endswith("}"):
        raise MatcherError("expected an opening brace before the matchers")
    matchers: list[Matcher] = []
    pos = 0
    while body[pos:].strip():
        matcher, pos = _parse_one(body, pos)
        matchers.append(matcher)
        rest = body[pos:].lstrip()
        if not rest:
            break
        if not rest.startswith(","):
            raise MatcherError("expected a comma between matchers")
        pos = len(body) - len(rest) + 1
    return matchers


def _parse_one(text: str, pos: int) -> tuple[Matcher, int]:
    """The matcher starting at ``text[pos:]`` and the position just after its value."""
    if not text[pos:].strip():
        raise MatcherError(f"expected {EXAMPLE}, not an empty string")
    head = _HEAD.match(text, pos)
    if head is None:
        raise MatcherError(f"expected {EXAMPLE} (a label, one of =, !=, =~, !~, and a value)")
    name, op = head.group(1), head.group(2)
    pos = head.end()
    if text.startswith('"', pos):
        value, pos = _quoted(text, pos + 1)
    else:
        end = pos
        while end < len(text) and text[end] not in _UNQUOTED_STOP:
            end += 1
        after = text[end:].lstrip()
        if (after and after[0] != ",") or text[pos : pos + 1] in ("=", "~"):
            raise MatcherError(
                "expected the value in double quotes (an unquoted value has no spaces, quotes,"
                " commas or braces, and does not start with = or ~)"
            )
        value, pos = text[pos:end], end
    return make_matcher(name, op, value), pos


def _quoted(text: str, pos: int) -> tuple[str, int]:
    """The unescaped value of the quoted string whose opening quote ends at ``pos``."""
    chars: list[str] = []
    while pos < len(text):
        char = text[pos]
        if char == '"':
            return "".join(chars), pos + 1
        if char == "\\" and pos + 1 < len(text):
            following = text[pos + 1]
            chars.append(_ESCAPES.get(following, "\\" + following))
            pos += 2
            continue
        chars.append(char)
        pos += 1
    raise MatcherError("expected a closing double quote after the value")
