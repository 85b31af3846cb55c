"""A one-line progress bar on a terminal (stderr), silent when stderr is not a terminal.

Hand-written rather than a dependency: one line, rewritten at most five times a second,
is all the replay and the calibration need.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

REFRESH_S = 0.2


class Progress:
    """``update(done, alerts=..)`` as work proceeds; ``close()`` ends the line.

    ``total`` (in the unit of ``done``) gives a percentage when known; ``unit`` names what
    ``done`` counts in the rate shown.
    """

    def __init__(
        self,
        label: str,
        *,
        total: int = 0,
        unit: str = "events",
        stream: TextIO | None = None,
        enabled: bool | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.started = time.monotonic()
        self._shown = 0.0
        self._width = 0

    def update(self, done: int, *, fraction: float | None = None, note: str = "") -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._shown < REFRESH_S:
            return
        self._shown = now
        self._draw(done, fraction, note, now)

    def _draw(self, done: int, fraction: float | None, note: str, now: float) -> None:
        if fraction is None and self.total:
            fraction = done / self.total
        elapsed = max(now - self.started, 1e-9)
        bar = ""
        if fraction is not None:
            fraction = min(max(fraction, 0.0), 1.0)
            filled = int(fraction * 24)
            bar = f"[{'#' * filled}{'.' * (24 - filled)}] {fraction:4.0%} "
        line = f"{self.label} {bar}{done:,} {self.unit}, {done / elapsed:,.0f}/s"
        if note:
            line += f", {note}"
        pad = max(0, self._width - len(line))
        self._width = len(line)
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()

    def close(self, done: int, *, note: str = "") -> None:
        if not self.enabled:
            return
        self._draw(done, 1.0 if self.total else None, note, time.monotonic())
        self.stream.write("\n")
        self.stream.flush()


__all__ = ["Progress"]
