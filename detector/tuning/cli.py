"""The tuning commands: ``detector replay`` (the backtest), ``detector calibrate`` and
``detector config explain``. Argument parsing and terminal output only; the work is in
:mod:`detector.tuning.backtest`, :mod:`detector.tuning.calibrate` and
:mod:`detector.tuning.explain`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from detector.config import Settings, load_settings
from detector.errors import TuningError


def add_commands(sub: Any) -> None:
    """Register ``replay``, ``calibrate`` and ``config`` on the ``detector`` parser."""
    replay = sub.add_parser(
        "replay",
        help="backtest: replay recorded events (file, directory or kafka:// range) through "
        "the sidecar's core",
        description="Replay a JSON-lines file (plain or .gz), a directory of them, or a Kafka "
        "topic range kafka://TOPIC?partitions=0,1&from=OFFSET|TIME&to=OFFSET|TIME through the "
        "very detection core `detector run` uses, and report the alerts.",
    )
    replay.add_argument("source", help="events.jsonl[.gz], a directory, or kafka://TOPIC?...")
    _add_source_flags(replay)
    replay.add_argument(
        "--json", metavar="FILE", help="write the alerts as JSON lines ('-': standard output)"
    )
    replay.add_argument("--summary", metavar="FILE", help="write the end-of-run summary as JSON")
    replay.add_argument(
        "--inject",
        metavar="SPEC",
        action="append",
        default=[],
        help="inject a change into a copy of the stream, e.g. "
        "'model=fraud,feature=amount,kind=mean,shift=0.5sd,at=0.6' (repeatable)",
    )
    replay.add_argument("--seed", type=int, default=0, help="seed of the injected changes")
    replay.set_defaults(func=_cmd_replay)
    from detector.tuning.explain import add_parser as add_explain

    add_explain(sub)


def _add_source_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file, as for `detector run`")
    parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers (kafka:// sources)")


def settings_for(args: argparse.Namespace) -> Settings:
    overrides: dict[tuple[str, ...], Any] = {
        ("kafka", "bootstrap_servers"): getattr(args, "bootstrap_servers", None)
    }
    return load_settings(args.config, overrides=overrides)


def _cmd_replay(args: argparse.Namespace) -> int:
    from detector.tuning.backtest import run_backtest
    from detector.tuning.inject import InjectionError, parse_injection
    from detector.tuning.progress import Progress
    from detector.tuning.sources import SourceError, open_source

    settings = settings_for(args)
    try:
        injections = [parse_injection(spec) for spec in args.inject]
        source = open_source(args.source, settings.kafka)
        progress = Progress("replay")
        backtest = run_backtest(
            source,
            settings,
            injections=injections,
            seed=args.seed,
            progress=progress,
        )
    except (InjectionError, SourceError) as exc:
        raise TuningError(str(exc)) from None
    import orjson

    if args.json:
        _write_lines(args.json, [orjson.dumps(alert) for alert in backtest.alerts])
    if args.summary:
        Path(args.summary).write_bytes(
            orjson.dumps(backtest.summary(), option=orjson.OPT_INDENT_2) + b"\n"
        )
    out = sys.stderr if args.json == "-" else sys.stdout
    print_tables(backtest, out)
    return 0


def _write_lines(target: str, lines: list[bytes]) -> None:
    """JSON lines to a file, or to standard output for "-"."""
    data = b"".join(line + b"\n" for line in lines)
    if target == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        Path(target).write_bytes(data)


def _effect(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_tables(backtest: Any, out: TextIO) -> None:
    """Per model: one row per alert (feature, drift type, position, event time, effect size,
    severity), then the injected changes' outcomes and the totals."""
    alerts_by_model: dict[str, list[dict[str, Any]]] = {}
    for alert in backtest.alerts:
        alerts_by_model.setdefault(alert["model"], []).append(alert)
    models = sorted(set(backtest.processed) | set(alerts_by_model))
    for model in models:
        alerts = alerts_by_model.get(model, [])
        print(
            f"\nmodel {model}: {backtest.processed.get(model, 0):,} events, "
            f"{len(alerts)} alert{'s' if len(alerts) != 1 else ''}",
            file=out,
        )
        if not alerts:
            continue
        rows = [("feature", "drift type", "position", "event time", "effect", "severity")]
        for alert in alerts:
            trigger = alert["trigger"]
            position = backtest.positions.get(alert["alert_id"])
            where = f"p{trigger['partition']}@{trigger['offset']}"
            if position is not None:
                where += f" (#{position})"
            rows.append(
                (
                    alert["feature"],
                    alert["drift_type"],
                    where,
                    alert["detected_at"],
                    _effect(alert["evidence"].get("effect_size")),
                    alert["severity"],
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print(
                "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)),
                file=out,
            )
    if backtest.injections:
        print("\ninjected changes:", file=out)
        for outcome in backtest.injections:
            found = (
                f"found after {outcome.delay:,} events"
                if outcome.delay is not None
                else "not found"
            )
            print(
                f"  {outcome.plan.injection.spec}: starts at #{outcome.plan.start}, {found}, "
                f"{outcome.false_alarms_before} alert(s) of the model before it",
                file=out,
            )
    rejected = sum(backtest.rejected.values())
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(backtest.rejected.items()))
    rate = backtest.records / backtest.elapsed_s if backtest.elapsed_s else 0.0
    print(
        f"\n{backtest.records:,} records, {sum(backtest.processed.values()):,} events, "
        f"{len(backtest.alerts)} alerts, {rejected} rejected{f' ({reasons})' if reasons else ''}"
        f" in {backtest.elapsed_s:.1f} s ({rate:,.0f} records/s)",
        file=out,
    )


__all__ = ["TuningError", "add_commands", "print_tables", "settings_for"]
