"""Slack incoming webhooks with Block Kit.

The message: ``text`` (the one-line fallback Slack shows in notifications), a ``header``
block (the :func:`~detector.router.notify.evidence.title`), then

* firing: one ``section`` per alert (feature, drift type, severity, reference vs current,
  effect size, trigger coordinates; ``new`` when no earlier notification named it);
* resolved: one ``section`` saying which alerts are resolved;
* acknowledged (people acknowledged every alert: ``detector review ack``): one ``section``
  naming who acknowledged and why, one line per reviewer and reason;

and ``context`` blocks naming every alert id (``alert ids: a, b, c``). Slack's limits are
kept: at most 50 blocks (alerts beyond what fits are summarised in one section, their ids
still named in the context), header text 150 characters, section text 3000, context at
most 10 elements of at most 2000 characters each. Only beyond some 24,000 alerts do the
ids outgrow 48 context blocks: then the last element says how many are not named.

Answers (https://api.slack.com/messaging/webhooks#handling_errors): 200 ``ok`` is
accepted; 200 with another body is ``invalid_response`` (permanent); 429 is retryable
after ``Retry-After``; 5xx retryable; 400 ``invalid_payload``, 403 ``invalid_token``,
404 ``no_service``, 410 ``channel_is_archived`` and other codes are permanent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from detector.router.model import Integration, Notification, RoutedAlert
from detector.router.notify.base import JsonNotifier
from detector.router.notify.evidence import (
    clip,
    digest,
    effect_text,
    evidence_row,
    headline,
    one_line,
    severity_counts,
    title,
)

MAX_BLOCKS = 50
MAX_HEADER_CHARS = 150
MAX_SECTION_CHARS = 3000
MAX_CONTEXT_ELEMENTS = 10
MAX_CONTEXT_ELEMENT_CHARS = 2000
#: The one-line fallback ``text``.
MAX_TEXT_CHARS = 1000

_IDS_PREFIX = "alert ids: "


def escape(text: str) -> str:
    """Slack's mrkdwn control characters (``&``, ``<``, ``>``) escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": clip(text, MAX_SECTION_CHARS)}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text)}


def alert_section(alert: RoutedAlert, *, new: bool) -> dict[str, Any]:
    """One firing alert as a section block."""
    row = evidence_row(alert)
    first = f"*{escape(row.feature)}* · {escape(row.drift_type)} drift · {escape(row.severity)}"
    if new:
        first += " · new"
    return _section(
        f"{first}\n"
        f"reference {escape(row.reference)} → current {escape(row.current)}\n"
        f"effect size {effect_text(row.effect_size)} · trigger `{escape(row.trigger)}`"
    )


def _id_texts(ids: Sequence[str]) -> list[tuple[str, int]]:
    """(text, number of ids in it) of each context element naming the ids."""
    texts: list[tuple[str, int]] = []
    current, count = "", 0
    for raw in ids:
        alert_id = clip(raw, MAX_CONTEXT_ELEMENT_CHARS - len(_IDS_PREFIX) - 1)
        candidate = f"{current}, {alert_id}" if current else alert_id
        room = MAX_CONTEXT_ELEMENT_CHARS - 1 - (0 if texts else len(_IDS_PREFIX))
        if current and len(candidate) > room:
            texts.append((current + ",", count))
            current, count = alert_id, 1
        else:
            current, count = candidate, count + 1
    texts.append((current, count))
    texts[0] = (_IDS_PREFIX + texts[0][0], texts[0][1])
    return texts


def id_elements(ids: Sequence[str]) -> list[str]:
    """The ids as ``alert ids: a, b, c`` split into texts of at most 2000 characters, each
    but the last ending in ``,`` (an id too long for an element on its own is cut, which a
    schema-valid uuid never is)."""
    return [text for text, _ in _id_texts(ids)]


def context_blocks(ids: Sequence[str], max_blocks: int = MAX_BLOCKS) -> list[dict[str, Any]]:
    """Context blocks naming every id, at most 10 elements each. Beyond ``max_blocks``
    blocks (some 24,000 ids for 48 blocks) the last element says how many ids are not named."""
    texts = _id_texts(ids)
    room = max_blocks * MAX_CONTEXT_ELEMENTS
    if len(texts) > room:
        kept = texts[: room - 1]
        missing = len(ids) - sum(count for _, count in kept)
        texts = [*kept, (f"… and {missing} more alert ids (Slack's 50-block limit)", 0)]
    elements = [{"type": "plain_text", "text": text} for text, _ in texts]
    return [
        {"type": "context", "elements": elements[start : start + MAX_CONTEXT_ELEMENTS]}
        for start in range(0, len(elements), MAX_CONTEXT_ELEMENTS)
    ]


class SlackNotifier(JsonNotifier):
    """POST ``integration.url`` (the secret webhook URL); option ``channel``."""

    def __init__(self, integration: Integration) -> None:
        channel = integration.options.get("channel")
        if channel is not None and not isinstance(channel, str):
            raise ValueError(f"{integration.id}: channel must be a string")
        # The URL is the secret: scrub it (and its token) from answers even if the config
        # forgot to list it.
        token = urlsplit(integration.url).path.rstrip("/").rsplit("/", 1)[-1]
        extra = [integration.url] + ([token] if len(token) >= 8 else [])
        super().__init__(integration, extra_secrets=extra)
        self.channel: str | None = channel or None

    def payload(self, notification: Notification) -> dict[str, Any]:
        ids = notification.alert_ids
        header = {
            "type": "header",
            "text": {"type": "plain_text", "text": clip(title(notification), MAX_HEADER_CHARS)},
        }
        contexts = context_blocks(ids, MAX_BLOCKS - 2)  # header, one section
        if notification.status == "resolved":
            body = [self._resolved_section(notification)]
        elif notification.status == "acknowledged":
            body = [self._acknowledged_section(notification)]
        else:
            body = self._firing_sections(notification, MAX_BLOCKS - 1 - len(contexts))
        payload: dict[str, Any] = {
            "text": headline(notification, MAX_TEXT_CHARS),
            "blocks": [header, *body, *contexts],
        }
        if self.channel:
            payload["channel"] = self.channel
        return payload

    @staticmethod
    def _resolved_section(notification: Notification) -> dict[str, Any]:
        n = len(notification.alerts)
        return _section(
            f"*Resolved*: {n} alert{'s' if n != 1 else ''} no longer firing: "
            f"{escape(digest(notification.alerts))}"
        )

    @staticmethod
    def _acknowledged_section(notification: Notification) -> dict[str, Any]:
        """``*Acknowledged* by ana: on it (2 alerts)``: each reviewer and reason once."""
        counts: dict[tuple[str, str], int] = {}
        for review in notification.reviews.values():
            key = (one_line(review.by), one_line(review.reason))
            counts[key] = counts.get(key, 0) + 1
        lines = [
            f"*Acknowledged* by {escape(by)}: {escape(reason)}"
            + (f" ({n} alerts)" if n > 1 else "")
            for (by, reason), n in counts.items()
        ]
        return _section("\n".join(lines) or "*Acknowledged*")

    @staticmethod
    def _firing_sections(notification: Notification, room: int) -> list[dict[str, Any]]:
        alerts = notification.alerts
        # Room for every alert, or for room - 1 of them and a section summing up the rest.
        cut = len(alerts) if len(alerts) <= room else max(room - 1, 0)
        shown, rest = alerts[:cut], alerts[cut:]
        sections = [
            alert_section(alert, new=alert.alert_id in notification.new_ids) for alert in shown
        ]
        if rest:
            sections.append(
                _section(
                    f"*…and {len(rest)} more alert{'s' if len(rest) != 1 else ''}* "
                    f"({severity_counts(rest)}): {escape(digest(rest))}"
                )
            )
        return sections

    def accepts(self, status: int, body: bytes) -> bool:
        return status == 200 and body.strip() == b"ok"


__all__ = ["SlackNotifier", "alert_section", "context_blocks", "escape", "id_elements"]
