"""The `detector` command: run, route, silence, broker, demo, replay, calibrate, config, audit,
review, console, bench."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from typing import Any

from detector.config import ConfigError, Settings, load_settings
from detector.errors import TuningError


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (flags and environment override it)")
    parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers")
    parser.add_argument("--input-topic", help="topic of prediction events")
    parser.add_argument(
        "--labels-topic", help="topic of label events, joined to predictions by event_id"
    )
    parser.add_argument("--alert-topic", help="topic drift alerts are produced to")
    parser.add_argument(
        "--group-id", help="consumer group; instances in one group share partitions"
    )
    parser.add_argument("--dead-letter-topic", help="default: <input-topic>.dlq")
    parser.add_argument(
        "--processing-guarantee", choices=["exactly-once", "at-least-once"], default=None
    )
    parser.add_argument("--transactional-id", help="stable per instance (default: group-hostname)")
    parser.add_argument("--http-port", type=int, help="port of /healthz, /readyz, /metrics")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", choices=["auto", "json", "console"])


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict[tuple[str, ...], Any] = {
        ("kafka", "bootstrap_servers"): args.bootstrap_servers,
        ("kafka", "input_topic"): args.input_topic,
        ("kafka", "labels_topic"): getattr(args, "labels_topic", None),
        ("kafka", "alert_topic"): args.alert_topic,
        ("kafka", "group_id"): args.group_id,
        ("kafka", "dead_letter_topic"): args.dead_letter_topic,
        ("kafka", "processing_guarantee"): args.processing_guarantee,
        ("kafka", "transactional_id"): args.transactional_id,
        ("server", "port"): args.http_port,
        ("log", "level"): args.log_level,
        ("log", "format"): args.log_format,
    }
    return load_settings(args.config, overrides=overrides)


def _cmd_run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    from detector.kafka.runner import Sidecar
    from detector.log import configure_logging
    from detector.ops.runtime import tune_gc

    configure_logging(settings.log)
    tune_gc()
    sidecar = Sidecar(settings, config_path=args.config)

    def _stop(signum: int, frame: object) -> None:
        sidecar.stop()

    def _reload(signum: int, frame: object) -> None:
        sidecar.request_reload()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGHUP, _reload)
    sidecar.run()
    return 0


def _cmd_broker(args: argparse.Namespace) -> int:
    from detector.broker import EmbeddedBroker
    from detector.config import LogSettings
    from detector.log import configure_logging

    configure_logging(LogSettings())  # logs to stderr; stdout carries only the address

    with EmbeddedBroker(port=args.port) as broker:
        print(broker.bootstrap_servers, flush=True)
        stop = {"done": False}

        def _stop(signum: int, frame: object) -> None:
            stop["done"] = True

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        while not stop["done"]:
            signal.pause()
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from detector.demo import run_demo

    return run_demo(events_per_model=args.events, seed=args.seed)


def _cmd_bench(args: argparse.Namespace) -> int:
    from detector.bench import run_bench

    return run_bench(output=args.output, events=args.events)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detector", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="consume prediction events, produce drift alerts")
    _add_run_flags(run)
    run.set_defaults(func=_cmd_run)
    from detector.router.cli import add_commands

    add_commands(sub)
    broker = sub.add_parser("broker", help="start the embedded Tansu broker; print its address")
    broker.add_argument("--port", type=int, default=0, help="default: a free loopback port")
    broker.set_defaults(func=_cmd_broker)
    demo = sub.add_parser(
        "demo", help="embedded broker + seeded drifting stream + sidecar + router"
    )
    demo.add_argument("--events", type=int, default=20_000, help="events per model")
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=_cmd_demo)
    from detector.tuning.cli import add_commands as add_tuning_commands

    add_tuning_commands(sub)
    from detector.audit.cli import add_commands as add_audit_commands

    add_audit_commands(sub)
    from detector.console.cli import add_commands as add_console_commands

    add_console_commands(sub)
    bench = sub.add_parser("bench", help="measure throughput on the embedded broker")
    bench.add_argument("--output", default="docs/benchmarks.md")
    bench.add_argument("--events", type=int, default=200_000)
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from detector.log import default_to_stderr

    default_to_stderr()
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"detector: configuration error: {exc}", file=sys.stderr)
        return 2
    except TuningError as exc:
        print(f"detector: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        fatal = _fatal_errors()
        if not isinstance(exc, fatal):
            raise
        print(f"detector: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3
    return code


def _fatal_errors() -> tuple[type[Exception], ...]:
    """Errors that stop the sidecar on purpose: a one-line message, exit code 3."""
    from detector.core.state import StateFormatError
    from detector.kafka.audit import AuditLogError
    from detector.kafka.changelog import ChangelogError
    from detector.kafka.output import FatalKafkaError
    from detector.kafka.topics import TopicError
    from detector.router.groups import StateRecordError

    return (
        StateFormatError,
        ChangelogError,
        AuditLogError,
        FatalKafkaError,
        TopicError,
        StateRecordError,
    )


if __name__ == "__main__":
    sys.exit(main())
