"""Durations as Prometheus and Alertmanager write them: ``30s``, ``5m``, ``4h``, ``1h30m``.

Syntax (Prometheus ``model.ParseDuration``): ``0``, or one or more ``<integer><unit>`` with
the units in descending order, each at most once: ``y`` (365 days), ``w``, ``d``, ``h``,
``m``, ``s``, ``ms``. No sign, no fractions, no spaces. Values are milliseconds.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator

#: Milliseconds per unit, largest first (the order they must be written in).
UNITS: tuple[tuple[str, int], ...] = (
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
)

#: The longest duration Prometheus accepts (a Go time.Duration: 2^63-1 nanoseconds).
MAX_MS = (2**63 - 1) // 1_000_000

EXAMPLE = "a duration such as 30s, 5m, 4h"

_PATTERN = re.compile("".join(f"(?:([0-9]+){unit})?" for unit, _ in UNITS))


class DurationError(ValueError):
    """Not a duration. The message says what was expected (and not the text itself)."""


def parse_duration(text: str) -> int:
    """Milliseconds in ``text`` (``"1h30m"`` -> 5_400_000). Raises DurationError."""
    if text == "0":
        return 0
    if not text:
        raise DurationError(f"expected {EXAMPLE}, not an empty string")
    match = _PATTERN.fullmatch(text)
    if match is None:
        raise DurationError(f"expected {EXAMPLE} (units y, w, d, h, m, s, ms, largest first)")
    total = 0
    for (_, unit_ms), digits in zip(UNITS, match.groups(), strict=True):
        if digits is not None:
            total += int(digits) * unit_ms
    if total > MAX_MS:
        raise DurationError("expected a duration shorter than 292y")
    return total


def format_duration(ms: int) -> str:
    """The shortest Prometheus form of ``ms`` milliseconds (``5_400_000`` -> ``"1h30m"``).

    As Prometheus prints durations: ``0s`` for zero; years and weeks only when they divide
    the value exactly (``90d``, not ``12w6d``). ``parse_duration`` reads it back.
    """
    if ms < 0:
        raise ValueError("a duration cannot be negative")
    if ms == 0:
        return "0s"
    parts: list[str] = []
    rest = ms
    for unit, unit_ms in UNITS:
        if unit in ("y", "w") and rest % unit_ms:
            continue
        count, rest = divmod(rest, unit_ms)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def _validate(value: Any) -> int:
    # YAML reads a bare 0 as an integer; Alertmanager accepts it, and it is unambiguous.
    if value == 0 and type(value) is int:
        return 0
    if not isinstance(value, str):
        raise ValueError(f"expected {EXAMPLE}")
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise ValueError(str(exc)) from None


#: A config field holding a duration: milliseconds in Python, a string such as ``"30s"`` in
#: the config (numbers are rejected: is ``30`` seconds or minutes?), the same string again
#: when the settings are dumped.
Duration = Annotated[
    int, PlainValidator(_validate), PlainSerializer(format_duration, return_type=str)
]
