"""Dead-letter records: the original bytes, unchanged, with headers saying why."""

from __future__ import annotations

from dataclasses import dataclass

from detector.alerts import rfc3339
from detector.core.records import Rejection

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    value: bytes | None
    headers: Headers


def dead_letter(rejection: Rejection, now_ms: int, max_bytes: int) -> DeadLetter:
    """The record to produce for ``rejection``; payloads over ``max_bytes`` are truncated."""
    record = rejection.record
    headers: Headers = [
        ("reason", rejection.reason.encode()),
        ("detail", rejection.detail.encode("utf-8", "replace")),
        ("original_topic", record.topic.encode()),
        ("original_partition", str(record.partition).encode()),
        ("original_offset", str(record.offset).encode()),
        ("dead_lettered_at", rfc3339(now_ms).encode()),
    ]
    value = record.value
    # "oversized" records, and anything else too large to produce, are cut to max_bytes.
    if value is not None and len(value) > max_bytes:
        value = value[:max_bytes]
        headers.append(("truncated", b"true"))
    return DeadLetter(value=value, headers=headers)
