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
        "--html",
        metavar="FILE",
        help="write a self-contained HTML report: per alerting feature a plot, the evidence, "
        "the injected changes and the config (needs the 'tuning' extra: matplotlib)",
    )
    replay.add_argument(
        "--inject",
        metavar="SPEC",
        action="append",
        default=[],
        help="inject a change into a copy of the stream, e.g. "
        "'model=fraud,feature=amount,kind=mean,shift=0.5sd,at=0.6' (repeatable)",
    )
    replay.add_argument(
        "--labels",
        metavar="LABELS",
        help="label events (schemas/label-event.v1.json) to join, as `detector run "
        "--labels-topic` joins them: a JSON-lines file, a directory or kafka://TOPIC?... "
        "(co-partitioned with SOURCE; a file is partition 0), merged in time order",
    )
    replay.add_argument("--seed", type=int, default=0, help="seed of the injected changes")
    replay.set_defaults(func=_cmd_replay)
    _add_calibrate(sub)
    from detector.tuning.explain import add_parser as add_explain

    add_explain(sub)


def _add_calibrate(sub: Any) -> None:
    calibrate = sub.add_parser(
        "calibrate",
        help="choose each detector's threshold for a false-alarm budget on your own data",
        description="Resample a stable stretch of events (file, directory or kafka:// range), "
        "count the false alarms of the sidecar's own core at loose settings, and write a "
        "config whose detectors keep each model within BUDGET at RATE (docs/tuning.md).",
    )
    calibrate.add_argument("source", help="events.jsonl[.gz], a directory, or kafka://TOPIC?...")
    _add_source_flags(calibrate)
    calibrate.add_argument(
        "--budget", required=True, help="false alarms allowed per model, e.g. '1 per week'"
    )
    calibrate.add_argument(
        "--rate",
        required=True,
        action="append",
        metavar="RATE",
        help="each model's event rate, e.g. '50/s'; or MODEL=RATE, repeatable",
    )
    calibrate.add_argument("--model", help="calibrate this model only")
    calibrate.add_argument("--output", required=True, metavar="FILE", help="the YAML to write")
    calibrate.add_argument(
        "--simulate",
        type=int,
        default=1_000_000,
        metavar="N",
        help="simulated events per setting and model (default 1,000,000)",
    )
    calibrate.add_argument(
        "--block-length",
        type=int,
        default=1_000,
        metavar="N",
        help="events per resampled block (default 1,000; longer keeps longer dependence)",
    )
    calibrate.add_argument("--jobs", type=int, default=None, help="processes (default: cores)")
    calibrate.add_argument("--seed", type=int, default=0, help="seed of the resampling")
    calibrate.set_defaults(func=_cmd_calibrate)


def _rates(values: list[str]) -> str | dict[str, str]:
    if len(values) == 1 and "=" not in values[0]:
        return values[0]
    rates: dict[str, str] = {}
    for value in values:
        model, sep, rate = value.partition("=")
        if not sep or not model:
            raise TuningError(f"--rate: expected MODEL=RATE when several are given, got {value!r}")
        rates[model] = rate
    return rates


def _cmd_calibrate(args: argparse.Namespace) -> int:
    import shlex
    from datetime import UTC, datetime

    from detector.config import read_config_tree
    from detector.tuning.calibrate import CalibrationError, calibrate
    from detector.tuning.calibrated_config import render
    from detector.tuning.progress import Progress
    from detector.tuning.sources import SourceError, open_source

    settings = settings_for(args)
    base, _ = read_config_tree(args.config)
    if args.simulate < 10_000 or args.block_length < 1:
        raise TuningError("--simulate: at least 10,000; --block-length: at least 1")
    bar = Progress("calibrate", unit="simulated events")
    seen = [0]

    def shown(done: int, total: int) -> None:
        seen[0] = done
        bar.update(done, fraction=done / total)

    try:
        source = open_source(args.source, settings.kafka)
        result = calibrate(
            source.records(),
            settings.detection,
            source=args.source,
            budget=args.budget,
            rate=_rates(args.rate),
            only_model=args.model,
            simulated_events=args.simulate,
            block_length=args.block_length,
            seed=args.seed,
            jobs=args.jobs,
            max_message_bytes=settings.kafka.max_message_bytes,
            progress=shown,
        )
    except (CalibrationError, SourceError) as exc:
        raise TuningError(str(exc)) from None
    bar.close(seen[0])
    created = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    words = [args.source, "--budget", args.budget]
    for rate in args.rate:
        words += ["--rate", rate]
    words += ["--model", args.model] if args.model else []
    if args.config:
        words += ["--config", args.config]
    words += ["--simulate", str(args.simulate), "--block-length", str(args.block_length)]
    words += ["--seed", str(args.seed), "--output", args.output]
    command = "detector calibrate " + shlex.join(words)
    Path(args.output).write_text(render(result, base, created, command), encoding="utf-8")
    for model in result.models:
        rate, low, high = model.expected()
        changed = sum(1 for f in model.features if f.spec is not None)
        print(
            f"model {model.model}: {changed} of {len(model.features)} detectors calibrated; "
            f"expected {rate:.3g} false alarms per event (95% {low:.3g}..{high:.3g}), budget "
            f"{model.budget_per_event:.3g}",
            file=sys.stdout,
        )
        for warning in model.warnings:
            print(f"  warning: {warning}", file=sys.stdout)
    print(f"wrote {args.output}", file=sys.stdout)
    return 0


def _add_source_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file, as for `detector run`")
    parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers (kafka:// sources)")


def settings_for(args: argparse.Namespace) -> Settings:
    overrides: dict[tuple[str, ...], Any] = {
        ("kafka", "bootstrap_servers"): getattr(args, "bootstrap_servers", None)
    }
    return load_settings(args.config, overrides=overrides)


def _cmd_replay(args: argparse.Namespace) -> int:
    from detector.tuning.backtest import joining, run_backtest
    from detector.tuning.inject import InjectionError, parse_injection
    from detector.tuning.progress import Progress
    from detector.tuning.sources import SourceError, open_source

    settings = settings_for(args)
    if args.labels:
        settings = settings.model_copy(update={"detection": joining(settings.detection)})
    trace = None
    if args.html:
        from detector.tuning.report import require_matplotlib
        from detector.tuning.trace import StreamTrace

        require_matplotlib()  # before the run, not after it
        trace = StreamTrace(settings.detection)
    try:
        injections = [parse_injection(spec) for spec in args.inject]
        source = open_source(args.source, settings.kafka)
        labels = open_source(args.labels, settings.kafka) if args.labels else None
        progress = Progress("replay")
        backtest = run_backtest(
            source,
            settings,
            injections=injections,
            labels=labels,
            seed=args.seed,
            trace=trace,
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
    if args.html:
        from detector.tuning.report import write_report

        assert trace is not None
        try:
            write_report(backtest, trace, args.html, config_file=args.config, seed=args.seed)
        except OSError as exc:
            raise TuningError(f"--html {args.html}: {exc.strerror or exc}") from None
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
    if backtest.labels is not None:
        joined = ", ".join(
            f"{model}: " + ", ".join(f"{k} {v:,}" for k, v in sorted(outcomes.items()))
            for model, outcomes in sorted(backtest.label_outcomes.items())
        )
        print(
            f"\n{backtest.label_events:,} label events from {backtest.labels}"
            f"{f' ({joined})' if joined else ''}",
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
