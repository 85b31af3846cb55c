"""`detector route` and `detector silence add|list|expire`."""

from __future__ import annotations

import argparse
import getpass
import os
import signal
import sys
import time
from typing import Any

import structlog

from detector.router.settings import RouterKafkaSettings, RouterSettings, load_router_settings

log = structlog.get_logger()


def add_route_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="router YAML config (flags and environment override it)")
    parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers")
    parser.add_argument(
        "--alert-topic", help="topic of drift alerts (the router's topics are named after it)"
    )


def route_settings(args: argparse.Namespace) -> RouterSettings:
    overrides: dict[tuple[str, ...], Any] = {
        ("kafka", "bootstrap_servers"): args.bootstrap_servers,
        ("kafka", "alert_topic"): args.alert_topic,
        ("kafka", "group_id"): getattr(args, "group_id", None),
        ("server", "port"): getattr(args, "http_port", None),
        ("log", "level"): getattr(args, "log_level", None),
        ("log", "format"): getattr(args, "log_format", None),
    }
    return load_router_settings(args.config, overrides=overrides)


def cmd_route(args: argparse.Namespace) -> int:
    settings = route_settings(args)
    from detector.log import configure_logging
    from detector.router.runner import Router

    configure_logging(settings.log)
    router = Router(settings)

    def _stop(signum: int, frame: object) -> None:
        router.stop()

    def _no_reload(signum: int, frame: object) -> None:
        log.warning("SIGHUP ignored: the router reads its config at start; restart it")

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGHUP, _no_reload)
    router.run()
    return 0


def _silence_kafka(args: argparse.Namespace) -> RouterKafkaSettings:
    """Silence commands need only the Kafka part: from the router config, or from flags and
    the environment (``DETECTOR_ROUTER_BOOTSTRAP_SERVERS``, ``KAFKA_BOOTSTRAP_SERVERS``,
    ``DETECTOR_ROUTER_ALERT_TOPIC``)."""
    from detector.config import LogSettings
    from detector.log import configure_logging

    configure_logging(LogSettings(level="warning"))  # on stderr; stdout carries the answer
    if args.config:
        return route_settings(args).kafka
    values: dict[str, Any] = {}
    servers = (
        args.bootstrap_servers
        or os.environ.get("DETECTOR_ROUTER_BOOTSTRAP_SERVERS")
        or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    )
    topic = args.alert_topic or os.environ.get("DETECTOR_ROUTER_ALERT_TOPIC")
    if servers:
        values["bootstrap_servers"] = servers
    if topic:
        values["alert_topic"] = topic
    return RouterKafkaSettings(**values)


def cmd_silence_add(args: argparse.Namespace) -> int:
    from detector.core.durations import DurationError, parse_duration
    from detector.router.silence_topic import SilenceTopic
    from detector.router.silences import SilenceError, new_silence

    kafka = _silence_kafka(args)
    try:
        duration_ms = parse_duration(args.duration)
        silence = new_silence(
            args.matcher,
            duration_ms,
            args.author or getpass.getuser(),
            args.comment,
            int(time.time() * 1000),
        )
    except (DurationError, SilenceError) as exc:
        print(f"detector silence add: {exc}", file=sys.stderr)
        return 2
    SilenceTopic(kafka).publish(silence)
    audit_silence(kafka, "created", silence)
    print(silence.id)
    return 0


def cmd_silence_list(args: argparse.Namespace) -> int:
    from detector.router.silence_topic import SilenceTopic, format_table

    kafka = _silence_kafka(args)
    silences = SilenceTopic(kafka).read()
    now = int(time.time() * 1000)
    shown = [s for s in silences.all() if args.all or s.state(now) != "expired"]
    print(format_table(shown, now))
    return 0


def cmd_silence_expire(args: argparse.Namespace) -> int:
    from detector.router.silence_topic import SilenceTopic
    from detector.router.silences import SilenceError, expire

    kafka = _silence_kafka(args)
    topic = SilenceTopic(kafka)
    current = {s.id: s for s in topic.read().all()}
    silence = current.get(args.id)
    if silence is None:
        print(f"detector silence expire: no silence with id {args.id}", file=sys.stderr)
        return 2
    try:
        expired = expire(silence, int(time.time() * 1000), args.author or getpass.getuser())
    except SilenceError as exc:
        print(f"detector silence expire: {exc}", file=sys.stderr)
        return 2
    topic.publish(expired)
    audit_silence(kafka, "expired", expired)
    print(f"expired {expired.id}")
    return 0


def audit_silence(kafka: RouterKafkaSettings, action: str, silence: Any) -> None:
    """Record the silence (created or expired) on chain ``silences`` of the audit log, if
    the sidecar's audit topic exists; a warning on standard error if it cannot be."""
    import orjson
    from confluent_kafka.admin import AdminClient

    from detector.kafka.audit import AuditLogError, append_record
    from detector.kafka.clients import admin_config
    from detector.kafka.topics import partition_counts

    topic = kafka.audit
    if topic not in partition_counts(
        AdminClient(admin_config(kafka, "drift-router-audit")), [topic]
    ):
        print(
            f"detector silence: audit topic {topic!r} does not exist: the silence is not "
            "recorded in the audit log (docs/audit.md)",
            file=sys.stderr,
        )
        return
    body = {"action": action, **orjson.loads(silence.to_json())}
    by = silence.expired_by if action == "expired" else silence.created_by
    try:
        append_record(kafka, kafka.group_id, topic, 0, "silences", by, "silence", lambda: body)
    except AuditLogError as exc:
        print(f"detector silence: not recorded in the audit log: {exc}", file=sys.stderr)


def add_commands(sub: Any) -> None:
    """Add ``route`` and ``silence`` to the ``detector`` command's subparsers."""
    route = sub.add_parser(
        "route", help="forward drift alerts to Slack, PagerDuty, webhooks, Alertmanager"
    )
    add_route_flags(route)
    route.add_argument("--group-id", help="the router's consumer group (default drift-router)")
    route.add_argument("--http-port", type=int, help="port of /healthz, /readyz, /metrics")
    route.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    route.add_argument("--log-format", choices=["auto", "json", "console"])
    route.set_defaults(func=cmd_route)

    silence = sub.add_parser("silence", help="mute alerts matching matchers for a while")
    actions = silence.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add a silence; prints its id")
    add_route_flags(add)
    add.add_argument(
        "--matcher",
        action="append",
        required=True,
        help="Alertmanager matcher, e.g. 'model=\"fraud\"' (repeat: all must match)",
    )
    add.add_argument("--duration", required=True, help="how long, e.g. 2h, 30m")
    add.add_argument("--author", help="who (default: the login name)")
    add.add_argument("--comment", required=True, help="why")
    add.set_defaults(func=cmd_silence_add)
    listing = actions.add_parser("list", help="list pending and active silences")
    add_route_flags(listing)
    listing.add_argument("--all", action="store_true", help="include expired silences")
    listing.set_defaults(func=cmd_silence_list)
    end = actions.add_parser("expire", help="end a silence now (it stays readable)")
    add_route_flags(end)
    end.add_argument("id")
    end.add_argument("--author", help="who (default: the login name)")
    end.set_defaults(func=cmd_silence_expire)
