"""Helpers the four notifiers share (pure functions, no I/O).

* Evidence: one short table row (:func:`evidence_row`) or text line (:func:`evidence_line`)
  per alert, from its ``evidence`` (statistic, effect size, reference and current count,
  mean and std, category shares or rates) and its trigger coordinates
  (``topic/partition@offset (event id)``); :func:`compact_evidence` for the full evidence
  as one compact JSON string.
* Titles: :func:`title` (``[FIRING:2] fraud (model version 2026-11-01): drift``) and
  :func:`headline` (the title and which features drifted), for Slack's header and fallback
  text and PagerDuty's summary.
* Encoding and time: :func:`dumps`, :func:`format_ms`, :func:`detected_ms`, :func:`clip`.
* Responses: :func:`retry_after_seconds` (``Retry-After`` as seconds or an HTTP date) and
  :func:`classify_http`, the status-code table every notifier's ``classify`` starts from.

Alerts are read defensively: the router only guarantees ``alert_id``, ``model`` and
``emitted_at``; a field missing or of the wrong type shows as ``?`` or ``n/a``, never as an
exception (a notification must not fail because one alert is odd).
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import orjson

from detector.core.events import InvalidEvent, timestamp_ms
from detector.router.model import (
    ACCEPTED,
    Notification,
    Outcome,
    RoutedAlert,
    scrub,
)

#: Headers of every notifier request (the sender adds its User-Agent).
JSON_HEADERS: Mapping[str, str] = {"Content-Type": "application/json"}

#: Longest feature, category or other free-text cell in an evidence row or line.
MAX_CELL_CHARS = 200

#: How much of a response body is decoded before scrubbing (the outcome keeps 2 KiB).
_DECODE_BYTES = 64 * 1024

_WHITESPACE = re.compile(r"\s+")


# --- encoding, text and time ---------------------------------------------------------------


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON. Falls back to :mod:`json` (``default=str``) for what orjson
    refuses (integers beyond 64 bits, non-string keys) rather than fail a notification."""
    try:
        return orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
        return text.encode("utf-8", errors="replace")


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in ``…`` when cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + "…" if limit > 0 else ""


def one_line(text: str) -> str:
    """Whitespace runs (newlines included) collapsed to one space."""
    return _WHITESPACE.sub(" ", text).strip()


def detected_ms(alert: RoutedAlert) -> int:
    """The alert's ``detected_at`` (event time of the trigger) in epoch ms; its
    ``emitted_at`` when ``detected_at`` is missing or unreadable."""
    raw = alert.body.get("detected_at")
    if isinstance(raw, str):
        try:
            return timestamp_ms(raw)
        except InvalidEvent:
            pass
    return alert.emitted_at_ms


def _text(value: Any, limit: int = MAX_CELL_CHARS) -> str:
    return clip(one_line(str(value)), limit) if value is not None and value != "" else "?"


def _number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "n/a"
    return _text(value, 40)


def _finite(value: Any) -> float | None:
    """A finite number as a float, else None (null, NaN from a lenient parser, a string)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _percent(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:.1%}"
    return "n/a"


# --- evidence ------------------------------------------------------------------------------


def trigger_text(body: Mapping[str, Any]) -> str:
    """``predictions/3@918273 (e-99812)``: where the triggering event was read."""
    trigger = body.get("trigger")
    if not isinstance(trigger, Mapping):
        return "?"
    where = (
        f"{_text(trigger.get('topic'))}/{_text(trigger.get('partition'), 20)}"
        f"@{_text(trigger.get('offset'), 20)}"
    )
    event_id = trigger.get("event_id")
    return f"{where} ({_text(event_id)})" if event_id not in (None, "") else where


def window_text(window: Any, category: Any = None) -> str:
    """One window summary in a few words: ``n=512 mean=41.2 std=38`` (numbers),
    ``n=512 share(US)=41.0%`` (categories), ``rate=1.2%`` (rates)."""
    if not isinstance(window, Mapping):
        return "n/a"
    parts: list[str] = []
    if "count" in window:
        parts.append(f"n={_number(window['count'])}")
    for name in ("mean", "std"):
        if name in window:
            parts.append(f"{name}={_number(window[name])}")
    frequencies = window.get("frequencies")
    if isinstance(frequencies, Mapping) and category not in (None, ""):
        parts.append(f"share({_text(category, 40)})={_percent(frequencies.get(category, 0.0))}")
    if "rate" in window:
        parts.append(f"rate={_percent(window['rate'])}")
    return " ".join(parts) or "n/a"


def effect_text(effect_size: float | None) -> str:
    return _number(effect_size)


@dataclass(frozen=True, slots=True)
class EvidenceRow:
    """One alert as a short table row (PagerDuty's ``custom_details.evidence``)."""

    alert_id: str
    feature: str
    drift_type: str
    severity: str
    reference: str
    current: str
    effect_size: float | None
    trigger: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "feature": self.feature,
            "drift_type": self.drift_type,
            "severity": self.severity,
            "reference": self.reference,
            "current": self.current,
            "effect_size": self.effect_size,
            "trigger": self.trigger,
        }


def evidence_row(alert: RoutedAlert) -> EvidenceRow:
    evidence = alert.body.get("evidence")
    if not isinstance(evidence, Mapping):
        evidence = {}
    category = evidence.get("category")
    effect = _finite(evidence.get("effect_size"))
    labels = alert.labels
    return EvidenceRow(
        alert_id=alert.alert_id,
        feature=_text(labels.get("feature")),
        drift_type=_text(labels.get("drift_type")),
        severity=_text(labels.get("severity")),
        reference=window_text(evidence.get("reference"), category),
        current=window_text(evidence.get("current"), category),
        effect_size=effect,
        trigger=trigger_text(alert.body),
    )


def evidence_line(alert: RoutedAlert) -> str:
    """``amount mean (warning): n=512 mean=41.2 std=38 → n=512 mean=64.5 std=40.1,
    effect 0.61, trigger predictions/3@918273 (e-99812)``."""
    row = evidence_row(alert)
    return (
        f"{row.feature} {row.drift_type} ({row.severity}): {row.reference} → {row.current}, "
        f"effect {effect_text(row.effect_size)}, trigger {row.trigger}"
    )


def compact_evidence(alert: RoutedAlert) -> str:
    """The alert's whole ``evidence`` object as compact JSON (``{}`` when absent)."""
    evidence = alert.body.get("evidence")
    return dumps({} if evidence is None else evidence).decode("utf-8", errors="replace")


# --- titles --------------------------------------------------------------------------------


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(value for value in values if value))


def title(notification: Notification) -> str:
    """``[FIRING:3] fraud (model version 2026-11-01): drift``, ``[ACKNOWLEDGED:3] ...`` or
    ``[RESOLVED] ...``."""
    alerts = notification.alerts
    models = _unique(alert.labels.get("model", "") for alert in alerts) or _unique(
        [notification.group_labels.get("model", "")]
    )
    versions = _unique(alert.labels.get("model_version", "") for alert in alerts)
    state = {
        "firing": f"[FIRING:{len(alerts)}]",
        "acknowledged": f"[ACKNOWLEDGED:{len(alerts)}]",
    }.get(notification.status, "[RESOLVED]")
    text = f"{state} {', '.join(models) or '?'}"
    if len(versions) == 1:
        text += f" (model version {versions[0]})"
    elif versions:
        text += f" (model versions {', '.join(versions)})"
    return one_line(text + ": drift")


def digest(alerts: Sequence[RoutedAlert]) -> str:
    """Which features drifted how, in order: ``amount (mean), country (categorical) x2``."""
    counts: dict[tuple[str, str], int] = {}
    for alert in alerts:
        key = (alert.labels.get("feature", ""), alert.labels.get("drift_type", ""))
        counts[key] = counts.get(key, 0) + 1
    parts = []
    for (feature, drift_type), n in counts.items():
        part = f"{_text(feature)} ({_text(drift_type)})"
        parts.append(part if n == 1 else f"{part} x{n}")
    return ", ".join(parts)


def headline(notification: Notification, limit: int) -> str:
    """The title and the digest on one line, at most ``limit`` characters."""
    text = title(notification)
    if notification.alerts:
        text += f" on {digest(notification.alerts)}"
    return clip(one_line(text), limit)


def severity_counts(alerts: Iterable[RoutedAlert]) -> str:
    """``critical: 2, warning: 5`` (most severe first)."""
    counts: dict[str, int] = {}
    for alert in alerts:
        counts[alert.severity or "?"] = counts.get(alert.severity or "?", 0) + 1
    order = {"critical": 0, "warning": 1}
    ranked = sorted(counts.items(), key=lambda item: (order.get(item[0], 2), item[0]))
    return ", ".join(f"{_text(name, 40)}: {n}" for name, n in ranked)


# --- responses -----------------------------------------------------------------------------


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, candidate in headers.items():
        if key.lower() == wanted:
            return candidate
    return None


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """``Retry-After`` in seconds from ``now`` (epoch seconds, default the wall clock):
    delay-seconds (``120``) or an HTTP date (``Wed, 21 Oct 2026 07:28:00 GMT``, 0 when
    past). None when absent or unreadable. Header names are matched case-insensitively."""
    raw = _header(headers, "Retry-After")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        moment = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # "-0000": UTC, by RFC 5322
        moment = moment.replace(tzinfo=UTC)
    now_s = time.time() if now is None else now
    return max(moment.timestamp() - now_s, 0.0)


def response_text(body: bytes, secrets: Collection[str]) -> str:
    """A response body as an outcome keeps it: decoded, secrets scrubbed, cut to 2 KiB."""
    text = body[:_DECODE_BYTES].decode("utf-8", errors="replace")
    return scrub(text, tuple(secrets))


def classify_http(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    secrets: Collection[str],
    *,
    accepted: Callable[[int, bytes], bool],
) -> Outcome:
    """The shared status table: ``accepted(status, body)`` -> accepted; other 2xx ->
    permanent ``invalid_response``; 429 -> retryable ``rate_limited``; 5xx -> retryable
    ``http_5xx``; other 4xx -> permanent ``http_4xx``; anything else (1xx, 3xx) ->
    permanent ``invalid_response``. ``Retry-After`` is kept on 429 and 5xx answers."""
    if accepted(status, body):
        return ACCEPTED
    text = response_text(body, secrets)
    if status == 429 or 500 <= status <= 599:
        return Outcome(
            accepted=False,
            retryable=True,
            reason="rate_limited" if status == 429 else "http_5xx",
            status=status,
            body=text,
            retry_after_s=retry_after_seconds(headers),
        )
    reason = "http_4xx" if 400 <= status <= 499 else "invalid_response"
    return Outcome(accepted=False, retryable=False, reason=reason, status=status, body=text)


__all__ = [
    "JSON_HEADERS",
    "MAX_CELL_CHARS",
    "EvidenceRow",
    "classify_http",
    "clip",
    "compact_evidence",
    "detected_ms",
    "digest",
    "dumps",
    "effect_text",
    "evidence_line",
    "evidence_row",
    "headline",
    "one_line",
    "response_text",
    "retry_after_seconds",
    "severity_counts",
    "title",
    "trigger_text",
    "window_text",
]
