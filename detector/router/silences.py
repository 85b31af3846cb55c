"""Silences, as in Alertmanager: matchers and a time window during which matching alerts
are not notified. Plain data and their JSON records; no I/O here.

A silence is *pending* before ``starts_at``, *active* from ``starts_at`` until
``ends_at`` (exclusive), then *expired*. Expiring one early sets ``ends_at`` to now and
records who did it; the record stays (``detector silence list --all`` shows it).

Records (``to_json``) are JSON objects with ``"version": 1``, keyed by silence id in a
compacted topic; a later record of the same id replaces the earlier one.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import orjson

from detector.router.matchers import Matcher, MatcherError, parse_matcher

RECORD_VERSION = 1

State = Literal["pending", "active", "expired"]


class SilenceError(ValueError):
    """An invalid silence, an impossible change, or an unreadable record. One line."""


@dataclass(frozen=True, slots=True)
class Silence:
    """One silence. ``matchers`` are canonical matcher strings (``model="fraud"``)."""

    id: str
    matchers: tuple[str, ...]
    starts_at_ms: int
    ends_at_ms: int
    created_by: str
    comment: str
    created_at_ms: int
    expired_at_ms: int | None = None
    expired_by: str | None = None
    _parsed: tuple[Matcher, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.matchers:
            raise SilenceError("expected at least one matcher")
        parsed = tuple(_parse(text) for text in self.matchers)
        object.__setattr__(self, "_parsed", parsed)

    def state(self, now_ms: int) -> State:
        if now_ms < self.starts_at_ms:
            return "pending"
        if now_ms < self.ends_at_ms:
            return "active"
        return "expired"

    def is_active(self, now_ms: int) -> bool:
        return self.state(now_ms) == "active"

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether every matcher matches ``labels`` (whatever the silence's state)."""
        return all(matcher.matches(labels) for matcher in self._parsed)

    def to_json(self) -> bytes:
        """The silence as a versioned JSON record."""
        return orjson.dumps(
            {
                "version": RECORD_VERSION,
                "id": self.id,
                "matchers": list(self.matchers),
                "starts_at_ms": self.starts_at_ms,
                "ends_at_ms": self.ends_at_ms,
                "created_by": self.created_by,
                "comment": self.comment,
                "created_at_ms": self.created_at_ms,
                "expired_at_ms": self.expired_at_ms,
                "expired_by": self.expired_by,
            }
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> Silence:
        """The silence in a record. Raises SilenceError naming what is wrong."""
        try:
            record = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise SilenceError("silence record is not JSON") from None
        if not isinstance(record, dict):
            raise SilenceError("silence record is not a JSON object")
        if record.get("version") != RECORD_VERSION:
            version = record.get("version")
            raise SilenceError(f"silence record: version: expected 1 (got {version!r})")
        matchers = record.get("matchers")
        if not isinstance(matchers, list) or not all(isinstance(m, str) for m in matchers):
            raise SilenceError("silence record: matchers: expected a list of strings")
        try:
            silence = cls(
                id=_field(record, "id", str),
                matchers=tuple(matchers),
                starts_at_ms=_field(record, "starts_at_ms", int),
                ends_at_ms=_field(record, "ends_at_ms", int),
                created_by=_field(record, "created_by", str),
                comment=_field(record, "comment", str),
                created_at_ms=_field(record, "created_at_ms", int),
                expired_at_ms=_field(record, "expired_at_ms", int, optional=True),
                expired_by=_field(record, "expired_by", str, optional=True),
            )
        except SilenceError as exc:
            message = str(exc)
            if not message.startswith("silence record"):
                message = f"silence record: {message}"
            raise SilenceError(message) from None
        if not silence.id:
            raise SilenceError("silence record: id: expected a non-empty string")
        if silence.ends_at_ms < silence.starts_at_ms:
            raise SilenceError("silence record: ends_at_ms: expected at least starts_at_ms")
        return silence


def _parse(text: str) -> Matcher:
    try:
        return parse_matcher(text)
    except MatcherError as exc:
        raise SilenceError(f"matcher {text!r}: {exc}") from None


def _field(record: dict[str, Any], key: str, kind: type, *, optional: bool = False) -> Any:
    value = record.get(key)
    if value is None and optional:
        return None
    # bool is an int in Python, not in a silence record.
    if not isinstance(value, kind) or isinstance(value, bool):
        what = "a string" if kind is str else "an integer"
        raise SilenceError(f"silence record: {key}: expected {what}")
    return value


def new_silence(
    matchers: list[str], duration_ms: int, author: str, comment: str, now_ms: int
) -> Silence:
    """A silence starting now for ``duration_ms``. Raises SilenceError for no matchers, a
    bad matcher, a duration not above zero, or an empty author or comment."""
    if not matchers:
        raise SilenceError("expected at least one matcher")
    canonical = tuple(str(_parse(text)) for text in matchers)
    if duration_ms <= 0:
        raise SilenceError("expected a duration longer than 0")
    if not author.strip():
        raise SilenceError("expected an author (who creates the silence)")
    if not comment.strip():
        raise SilenceError("expected a comment (why alerts are silenced)")
    return Silence(
        id=str(uuid.uuid4()),
        matchers=canonical,
        starts_at_ms=now_ms,
        ends_at_ms=now_ms + duration_ms,
        created_by=author,
        comment=comment,
        created_at_ms=now_ms,
    )


def expire(silence: Silence, now_ms: int, by: str) -> Silence:
    """The silence ended now (a pending one never starts). Raises SilenceError if it has
    already ended, or ``by`` is empty."""
    if silence.expired_at_ms is not None or silence.state(now_ms) == "expired":
        raise SilenceError(f"silence {silence.id} has already expired")
    if not by.strip():
        raise SilenceError("expected who expires the silence")
    ends = min(silence.ends_at_ms, now_ms)
    return replace(
        silence,
        starts_at_ms=min(silence.starts_at_ms, ends),
        ends_at_ms=ends,
        expired_at_ms=now_ms,
        expired_by=by,
    )


class SilenceSet:
    """The current silences, by id: what the silences topic holds after compaction."""

    def __init__(self) -> None:
        self._by_id: dict[str, Silence] = {}

    def put(self, silence: Silence) -> bool:
        """Keep the newest record of ``silence.id``: the one put last, except that an
        expired record is never replaced by one that is not (expiry is the only change a
        silence gets, so that one is older). True if the set changed."""
        current = self._by_id.get(silence.id)
        if current == silence:
            return False
        undoes_expiry = current is not None and current.expired_at_ms is not None
        if undoes_expiry and silence.expired_at_ms is None:
            return False
        self._by_id[silence.id] = silence
        return True

    def remove(self, silence_id: str) -> None:
        """Forget a silence (a tombstone on the topic)."""
        self._by_id.pop(silence_id, None)

    def get(self, silence_id: str) -> Silence | None:
        return self._by_id.get(silence_id)

    def silencing(self, labels: Mapping[str, str], now_ms: int) -> Silence | None:
        """The active silence that matches ``labels`` (the one ending last), or None."""
        found = [s for s in self._by_id.values() if s.is_active(now_ms) and s.matches(labels)]
        if not found:
            return None
        return max(found, key=lambda s: (s.ends_at_ms, s.id))

    def all(self) -> list[Silence]:
        """Every silence, expired ones included, oldest created first."""
        return sorted(self._by_id.values(), key=lambda s: (s.created_at_ms, s.id))

    def __len__(self) -> int:
        return len(self._by_id)
