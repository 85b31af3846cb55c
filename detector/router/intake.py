"""The router's first stages, pure: read an alert record, drop it if too old or silenced,
then hand it to the aggregation groups (which drop duplicates).

Each record gets exactly one verdict, so every alert read is accounted for in the metrics
and the logs: ``grouped``, ``duplicate``, ``too_old``, ``silenced`` or ``invalid`` (the
record goes to the router's dead-letter topic with the reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import orjson

from detector.router.groups import Dispatcher
from detector.router.model import InvalidAlert, RoutedAlert
from detector.router.silences import Silence, SilenceSet

VerdictKind = Literal["grouped", "duplicate", "too_old", "silenced", "invalid"]


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: VerdictKind
    alert: RoutedAlert | None = None
    detail: str = ""  # why an alert is invalid (one line, no payload)
    silence: Silence | None = None


class Intake:
    """Alert records in, verdicts out; the groups it feeds live in ``dispatcher``."""

    def __init__(self, dispatcher: Dispatcher, silences: SilenceSet, max_alert_age_ms: int) -> None:
        self.dispatcher = dispatcher
        self.silences = silences
        self.max_alert_age_ms = max_alert_age_ms

    def ingest(self, value: bytes | None, partition: int, offset: int, now_ms: int) -> Verdict:
        if not value:
            return Verdict("invalid", detail="empty record")
        try:
            alert = RoutedAlert.from_json(orjson.loads(value), partition, offset)
        except orjson.JSONDecodeError:
            return Verdict("invalid", detail="not JSON")
        except InvalidAlert as exc:
            return Verdict("invalid", detail=str(exc))
        if alert.emitted_at_ms < now_ms - self.max_alert_age_ms:
            return Verdict("too_old", alert)
        silence = self.silences.silencing(alert.labels, now_ms)
        if silence is not None:
            return Verdict("silenced", alert, silence=silence)
        if not self.dispatcher.add(alert, now_ms):
            return Verdict("duplicate", alert)
        return Verdict("grouped", alert)
