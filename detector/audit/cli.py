"""``detector audit verify``: check the audit topic's hash chains (docs/audit.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from detector.errors import UsageError


def add_commands(sub: Any) -> None:
    audit = sub.add_parser("audit", help="the audit log: verify its hash chains")
    commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = commands.add_parser(
        "verify",
        help="check every chain of the audit topic; report the first break",
        description="Read the audit topic (read_committed) and check each chain: every "
        "record's hash against its content, its prev against the record before it, its seq "
        "against the count. Exit 0 when intact, 1 at the first break (named by partition, "
        "offset, chain and seq).",
    )
    verify.add_argument("--config", help="YAML config file, as for `detector run`")
    verify.add_argument("--bootstrap-servers", help="Kafka bootstrap servers")
    verify.add_argument("--topic", help="the audit topic (default: the config's)")
    verify.add_argument(
        "--from",
        dest="start",
        metavar="TIME",
        help="only records at or after this RFC 3339 time (the first one of each chain is "
        "taken as it is)",
    )
    verify.add_argument("--to", dest="end", metavar="TIME", help="only records before this time")
    verify.set_defaults(func=_cmd_verify)


def _time(flag: str, text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        stamp = None
    if stamp is None or stamp.tzinfo is None:
        raise UsageError(f"{flag}: expected an RFC 3339 time with an offset, got {text!r}")
    return stamp


def within(
    records: Iterable[tuple[int, int, bytes | None]],
    start: datetime | None,
    end: datetime | None,
) -> Iterator[tuple[int, int, bytes | None]]:
    """The records whose ``at`` is in [start, end); unreadable ones are kept (to be
    reported)."""
    import orjson

    for partition, offset, value in records:
        if start is not None or end is not None:
            try:
                at = datetime.fromisoformat(orjson.loads(value or b"")["at"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                at = None
            if at is not None and (
                (start is not None and at < start) or (end is not None and at >= end)
            ):
                continue
        yield partition, offset, value


def _cmd_verify(args: argparse.Namespace) -> int:
    from detector.audit.chain import verify
    from detector.config import load_settings
    from detector.kafka.audit import AuditLogError, read_log

    overrides: dict[tuple[str, ...], Any] = {("kafka", "bootstrap_servers"): args.bootstrap_servers}
    settings = load_settings(args.config, overrides=overrides)
    topic = args.topic or settings.audit.topic_for(settings.kafka)
    start, end = _time("--from", args.start), _time("--to", args.end)
    try:
        records = read_log(settings.kafka, topic, group_id=settings.kafka.group_id)
        result = verify(within(records, start, end))
    except AuditLogError as exc:
        raise UsageError(str(exc)) from None
    for summary in sorted(result.chains.values(), key=lambda c: (c.partition, c.name)):
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(summary.kinds.items()))
        origin = "" if summary.first_seq == 0 else " (earlier records are gone: retention)"
        print(
            f"{summary.name} (partition {summary.partition}): {summary.records} records, "
            f"seq {summary.first_seq}-{summary.last_seq}{origin}, {summary.first_at} to "
            f"{summary.last_at}; {kinds}"
        )
    if result.broken is not None:
        print(f"audit chain broken at {result.broken}", file=sys.stderr)
        return 1
    print(f"audit log {topic}: intact, {result.records} records in {len(result.chains)} chains")
    return 0


__all__ = ["add_commands", "within"]
