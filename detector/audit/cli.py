"""``detector audit verify`` (check the audit topic's hash chains) and ``detector review``
(people's decisions on alerts, recorded in it): docs/audit.md."""

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
    verify.add_argument(
        "--public-key",
        metavar="FILE",
        help="check the signature records with this Ed25519 public key (PEM) and say how far "
        "each chain is signed",
    )
    verify.set_defaults(func=_cmd_verify)
    export = commands.add_parser(
        "export",
        help="write an evidence bundle: the records, their verification, an HTML and PDF report",
        description="Read the audit topic and write into DIR: audit.jsonl (the records of "
        "the period as stored), verification.json (the chains' check over the whole log), "
        "report.html (self-contained: per model its configuration, alerts with their "
        "evidence, notifications, decisions, silences, suspensions, performance and gaps "
        "in monitoring) and report.pdf (printed by headless Chromium). Exit 1 when a chain "
        "is broken (the bundle is written and says where).",
    )
    _connection_flags(export)
    export.add_argument("--from", dest="start", metavar="TIME", help="records at or after it")
    export.add_argument("--to", dest="end", metavar="TIME", help="records before it")
    export.add_argument("--model", help="only this model (and the records about no model)")
    export.add_argument("--output", required=True, metavar="DIR", help="the bundle's directory")
    export.add_argument("--no-pdf", action="store_true", help="write no report.pdf")
    export.add_argument(
        "--public-key",
        metavar="FILE",
        help="check the signature records with this Ed25519 public key (PEM), as verify does",
    )
    export.set_defaults(func=_cmd_export)
    _add_review(sub)
    reproduce = sub.add_parser(
        "reproduce",
        help="re-derive an alert from Kafka: archived state, recorded config, input events",
        description="Find ALERT_ID in the audit log, take the config in force at it (by its "
        "hash), restore the newest archived state of its input partition at or before the "
        "trigger (audit.archive_topic), replay the input partition (and its labels partition) "
        "up to the trigger, and compare the alert that comes out with the recorded one "
        "(every field but emitted_at). Exit 0 when it is the same alert, 1 when it differs "
        "or does not come out, 2 when something the replay needs is missing (the message "
        "says what).",
    )
    reproduce.add_argument("alert_id", metavar="ALERT_ID")
    _connection_flags(reproduce)
    reproduce.add_argument("--json", action="store_true", help="print the outcome as JSON")
    reproduce.set_defaults(func=_cmd_reproduce)


def _connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file, as for `detector run`")
    parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers")


def _add_review(sub: Any) -> None:
    from detector.audit.review import ACTIONS, STATES

    review = sub.add_parser(
        "review",
        help="record a person's decision on an alert in the audit log; list alerts and states",
    )
    commands = review.add_subparsers(dest="review_command", required=True)
    helps = {
        "ack": "acknowledge: someone is looking into it",
        "resolve": "resolve: understood and acted on, or dismissed (the reason says which)",
        "comment": "add a note; the state does not change",
        "reopen": "reopen an acknowledged or resolved alert",
    }
    for action in ACTIONS:
        command = commands.add_parser(action, help=helps[action])
        command.add_argument("alert_id", metavar="ALERT_ID")
        command.add_argument("--by", required=True, metavar="NAME", help="who decides")
        command.add_argument("--reason", required=True, metavar="TEXT", help="why")
        _connection_flags(command)
        command.set_defaults(func=_cmd_decide, action=action)
    for action, text in (
        ("suspend", "stop serving MODEL: a control event for its model servers; pages"),
        ("resume", "serve MODEL again after a suspend"),
    ):
        command = commands.add_parser(
            action,
            help=text,
            description="Publish a control event on the control topic (audit.control_topic, "
            "default <alert_topic>.control; compacted, keyed by model) that model servers "
            "watch, and record it in the audit log in the same transaction. The router pages "
            "for a suspension (severity critical) and resolves the page at the resume.",
        )
        command.add_argument("model", metavar="MODEL")
        command.add_argument("--by", required=True, metavar="NAME", help="who decides")
        command.add_argument("--reason", required=True, metavar="TEXT", help="why")
        _connection_flags(command)
        command.set_defaults(func=_cmd_control, action=action)
    listing = commands.add_parser("list", help="the alerts of the audit log and their state")
    listing.add_argument("--model", help="only this model's alerts")
    listing.add_argument("--state", choices=STATES, help="only alerts in this state")
    _connection_flags(listing)
    listing.set_defaults(func=_cmd_list)


def _settings(args: argparse.Namespace) -> Any:
    """The config, as ``detector run`` reads it."""
    from detector.config import load_settings

    overrides: dict[tuple[str, ...], Any] = {("kafka", "bootstrap_servers"): args.bootstrap_servers}
    return load_settings(args.config, overrides=overrides)


_DONE = {"ack": "acknowledged", "resolve": "resolved", "comment": "commented", "reopen": "reopened"}


def _cmd_decide(args: argparse.Namespace) -> int:
    from detector.audit.review import PARTITION, ReviewError
    from detector.kafka.audit import AuditLogError, append_decision

    settings = _settings(args)
    topic = settings.audit.topic_for(settings.kafka)
    if not args.by.strip():
        raise UsageError("--by: name who decides")
    try:
        offset, _ = append_decision(
            settings.kafka, topic, args.action, args.alert_id, args.reason, args.by
        )
    except (ReviewError, AuditLogError) as exc:
        raise UsageError(str(exc)) from None
    print(
        f"alert {args.alert_id} {_DONE[args.action]} by {args.by} "
        f"(audit {topic}[{PARTITION}] offset {offset})"
    )
    return 0


def _cmd_control(args: argparse.Namespace) -> int:
    from detector.audit.control import PARTITION, ControlError
    from detector.kafka.audit import AuditLogError, append_suspension

    settings = _settings(args)
    topic = settings.audit.topic_for(settings.kafka)
    control_topic = settings.audit.control_topic_for(settings.kafka)
    if not args.by.strip():
        raise UsageError("--by: name who decides")
    try:
        offset, _ = append_suspension(
            settings.kafka, topic, control_topic, args.action, args.model, args.reason, args.by
        )
    except (ControlError, AuditLogError) as exc:
        raise UsageError(str(exc)) from None
    done = "suspended" if args.action == "suspend" else "resumed"
    print(
        f"model {args.model} {done} by {args.by} (control topic {control_topic}; "
        f"audit {topic}[{PARTITION}] offset {offset})"
    )
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from detector.audit.review import fold
    from detector.kafka.audit import AuditLogError, read_log

    settings = _settings(args)
    topic = settings.audit.topic_for(settings.kafka)
    try:
        reviews = fold(value for _, _, value in read_log(settings.kafka, topic))
    except AuditLogError as exc:
        raise UsageError(str(exc)) from None
    rows = [("alert_id", "model", "feature", "drift type", "detected at", "state", "last")]
    for review in reviews.values():
        alert = review.alert
        if args.model and alert.get("model") != args.model:
            continue
        if args.state and review.state != args.state:
            continue
        last = review.decisions[-1] if review.decisions else None
        rows.append(
            (
                review.alert_id,
                str(alert.get("model")),
                str(alert.get("feature")),
                str(alert.get("drift_type")),
                str(alert.get("detected_at")),
                review.state,
                "-" if last is None else f"{last.action} by {last.by}: {last.reason}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())
    print(f"{len(rows) - 1} alerts")
    return 0


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


def _signed(summary: Any, checker: Any) -> str:
    if checker is None:
        return ""
    if summary.signed_seq is None:
        return "; not signed"
    after = summary.last_seq - summary.signed_seq - 1  # the signature record itself
    tail = f", {after} records after it" if after > 0 else ""
    return f"; signed up to seq {summary.signed_seq} (key {checker.key_id}){tail}"


def _checker(public_key: str | None) -> Any:
    """The signature checker of ``--public-key`` (None without one)."""
    if not public_key:
        return None
    from detector.audit.signing import Checker, SigningKeyError

    try:
        return Checker.from_file(public_key)
    except SigningKeyError as exc:
        raise UsageError(f"--public-key {exc}") from None


def _cmd_verify(args: argparse.Namespace) -> int:
    from detector.audit.chain import verify
    from detector.kafka.audit import AuditLogError, read_log

    settings = _settings(args)
    topic = args.topic or settings.audit.topic_for(settings.kafka)
    start, end = _time("--from", args.start), _time("--to", args.end)
    checker = _checker(args.public_key)
    try:
        records = read_log(settings.kafka, topic, group_id=settings.kafka.group_id)
        result = verify(within(records, start, end), checker)
    except AuditLogError as exc:
        raise UsageError(str(exc)) from None
    for summary in sorted(result.chains.values(), key=lambda c: (c.partition, c.name)):
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(summary.kinds.items()))
        origin = "" if summary.first_seq == 0 else " (earlier records are gone: retention)"
        print(
            f"{summary.name} (partition {summary.partition}): {summary.records} records, "
            f"seq {summary.first_seq}-{summary.last_seq}{origin}, {summary.first_at} to "
            f"{summary.last_at}; {kinds}{_signed(summary, checker)}"
        )
    if result.broken is not None:
        print(f"audit chain broken at {result.broken}", file=sys.stderr)
        return 1
    print(f"audit log {topic}: intact, {result.records} records in {len(result.chains)} chains")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from datetime import UTC
    from pathlib import Path

    import orjson

    from detector.audit.chain import verify
    from detector.audit.export import Period, print_pdf, render, select, verification_doc
    from detector.audit.history import history_of
    from detector.kafka.audit import AuditLogError, read_log

    settings = _settings(args)
    topic = settings.audit.topic_for(settings.kafka)
    start, end = _time("--from", args.start), _time("--to", args.end)
    if start is not None and end is not None and start >= end:
        raise UsageError(f"--from {args.start} is not before --to {args.end}")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output {out}: not a directory")
    try:
        records = list(read_log(settings.kafka, topic, group_id=settings.kafka.group_id))
    except AuditLogError as exc:
        raise UsageError(str(exc)) from None
    history = history_of(value for _, _, value in records)
    if args.model is not None and args.model not in history.models():
        known = ", ".join(history.models()) or "none"
        raise UsageError(f"--model {args.model}: not in the audit log (its models: {known})")
    checker = _checker(args.public_key)
    result = verify(records, checker)
    verification = verification_doc(result, topic, signatures_checked=checker is not None)
    chosen = select(records, history, start, end, args.model)
    period = Period(start, end, args.model, topic, datetime.now(UTC))
    out.mkdir(parents=True, exist_ok=True)
    (out / "audit.jsonl").write_bytes(b"".join(value + b"\n" for value in chosen))
    (out / "verification.json").write_bytes(
        orjson.dumps(verification, option=orjson.OPT_INDENT_2) + b"\n"
    )
    page = out / "report.html"
    page.write_text(render(history, verification, period), encoding="utf-8")
    if not args.no_pdf:
        print_pdf(page, out / "report.pdf")
    print(f"{out}: {len(chosen)} records of {topic}, {len(history.models())} models")
    if result.broken is not None:
        print(f"audit chain broken at {result.broken}", file=sys.stderr)
        return 1
    print(f"audit log {topic}: intact, {result.records} records in {len(result.chains)} chains")
    return 0


__all__ = ["add_commands", "within"]


def _cmd_reproduce(args: argparse.Namespace) -> int:
    import orjson

    from detector.audit.reproduce import ReproduceError
    from detector.core.state import river_version
    from detector.kafka.archive import ArchiveError, reproduce
    from detector.kafka.audit import AuditLogError

    try:
        outcome = reproduce(_settings(args), args.alert_id)
    except (ReproduceError, ArchiveError, AuditLogError) as exc:
        raise UsageError(f"cannot reproduce {args.alert_id}: {exc}") from None
    found = outcome.plan
    origin = found.origin
    alert = found.alert
    river_now = river_version()
    if args.json:
        doc = {
            "alert_id": alert["alert_id"],
            "reproduced": outcome.reproduced,
            "differences": list(outcome.differences),
            "partition": found.partition,
            "trigger_offset": found.trigger_offset,
            "config_hash": found.config_hash,
            "origin": {
                "snapshot": origin.snapshot,
                "input_offset": origin.input_offset,
                "labels_offset": origin.labels_offset,
                "entries": origin.entries,
            },
            "events": outcome.events,
            "labels": outcome.labels,
            "river": {"recorded": found.river, "now": river_now},
            "replayed": outcome.replayed,
        }
        print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        return 0 if outcome.reproduced else 1
    print(
        f"alert    {alert['alert_id']}: {alert['drift_type']} drift on "
        f"{alert['model']}/{alert['feature']}, input partition {found.partition} offset "
        f"{found.trigger_offset}"
    )
    print(f"config   {found.config_hash} (in force at the alert)")
    print(f"from     {origin.describe()}" + (", digest verified" if origin.digest else ""))
    print(
        f"replayed {outcome.events} events from input offset {origin.input_offset}"
        + (f" and {outcome.labels} labels" if outcome.labels else "")
    )
    if found.river is not None and found.river != river_now:
        print(f"note     recorded with River {found.river}, replayed with River {river_now}")
    if outcome.replayed is None:
        print("result   NOT reproduced: no alert with this id came out of the replay")
        return 1
    if outcome.differences:
        print("result   NOT reproduced: differs in " + ", ".join(outcome.differences))
        for name in outcome.differences:
            print(f"  recorded {name}: {orjson.dumps(alert.get(name)).decode()}")
            print(f"  replayed {name}: {orjson.dumps(outcome.replayed.get(name)).decode()}")
        return 1
    print("result   reproduced: the same alert_id and evidence (every field but emitted_at)")
    return 0
