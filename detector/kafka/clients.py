"""librdkafka configurations built from :class:`KafkaSettings`.

``settings.librdkafka`` is passed through verbatim (after secret references are resolved)
and wins over the defaults here, except for the few keys the processing guarantee depends
on (group id, isolation level, manual commits, assignment strategy, idempotence and the
transactional id), which are always set here.
Configuration values are never logged: they may hold secrets.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from typing import Any

from detector.config import KafkaSettings
from detector.ops.secrets import Value, resolve_librdkafka_config, security_from_env

ConfigDict = dict[str, Any]

#: Extra room over ``max_message_bytes`` for the record key, headers and batch overhead.
PRODUCER_HEADROOM_BYTES = 64 * 1024


def resolve_secrets(mapping: Mapping[str, Value]) -> ConfigDict:
    """``KAFKA_*`` security variables over the config, then "file:"/"env:" values expanded.

    Raises SecretError (a ConfigError) naming the key, never the value.
    """
    raw = {**mapping, **security_from_env(os.environ)}
    return dict(resolve_librdkafka_config(raw))


def _base(kafka: KafkaSettings) -> ConfigDict:
    # librdkafka's own log lines go through Python logging, so structlog renders them
    # (JSON in production) instead of raw "%4|...|" lines on stderr.
    return {
        "bootstrap.servers": kafka.bootstrap_servers,
        "client.id": "drift-detector",
        "logger": logging.getLogger("librdkafka"),
    }


def _merge(defaults: ConfigDict, kafka: KafkaSettings, pinned: ConfigDict) -> ConfigDict:
    config = {**defaults, **resolve_secrets(kafka.librdkafka), **pinned}
    return config


def default_transactional_id(kafka: KafkaSettings) -> str:
    return kafka.transactional_id or f"{kafka.group_id}-{socket.gethostname()}"


#: librdkafka ``fetch.queue.backoff.ms`` for the input consumer (librdkafka's default: 1000).
FETCH_QUEUE_BACKOFF_MS = 50


def consumer_config(kafka: KafkaSettings) -> ConfigDict:
    """The group consumer of the input topic."""
    defaults: ConfigDict = {
        **_base(kafka),
        "auto.offset.reset": "earliest",
        "session.timeout.ms": kafka.session_timeout_ms,
        # When the prefetch queue is full (a backlog: catching up after downtime or a
        # rebalance), librdkafka postpones the partition's next fetch by this much. Its
        # default of 1 s idles a sidecar that has meanwhile drained the queue; measured on
        # a backlog, that second was a third of the run (docs/benchmarks.md).
        "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
    }
    pinned: ConfigDict = {
        # Eager rebalancing: revoke everything, checkpoint, then assign. Simple and correct
        # with one transactional producer per instance (the callbacks rely on it).
        "partition.assignment.strategy": "range,roundrobin",
        "group.id": kafka.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
    }
    return _merge(defaults, kafka, pinned)


def restore_consumer_config(kafka: KafkaSettings) -> ConfigDict:
    """A consumer that reads a changelog partition by assignment (never joins its group)."""
    defaults: ConfigDict = {**_base(kafka), "client.id": "drift-detector-restore"}
    pinned: ConfigDict = {
        # Required by confluent-kafka; unused: no subscribe, no commit.
        "group.id": f"{kafka.group_id}.restore",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
    }
    # An empty fetch is answered after fetch.wait.max.ms: keep restores quick.
    defaults["fetch.wait.max.ms"] = 10
    return _merge(defaults, kafka, pinned)


def producer_config(kafka: KafkaSettings) -> ConfigDict:
    defaults: ConfigDict = {
        **_base(kafka),
        "linger.ms": 20,
        "message.max.bytes": kafka.max_message_bytes + PRODUCER_HEADROOM_BYTES,
    }
    pinned: ConfigDict = {"enable.idempotence": True, "acks": "all"}
    if kafka.processing_guarantee == "exactly-once":
        pinned["transactional.id"] = default_transactional_id(kafka)
    return _merge(defaults, kafka, pinned)


def admin_config(kafka: KafkaSettings) -> ConfigDict:
    return _merge(_base(kafka), kafka, {})
