"""Configuration: one YAML file, overridable by environment variables and CLI flags.

Precedence (highest first): command-line flag, environment variable, config file, default.
Every key can be set in the file; the Kafka and topic keys also have flags and variables
(see ``ENV_VARS``). A bad config fails at start-up with :class:`ConfigError`, whose message
names the file, the key path and what was expected.

This module loads and validates files. The detection settings are the core's own types
(:mod:`detector.core.settings`), re-exported here; the Kafka, server and log settings are
the shell's and live here.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError

# The detection settings are the core's own types (detector.core.settings); re-exported
# here for the modules and tests that import them from the config. The re-export is also
# what lets changelog entries written before the move (they pickle these objects and name
# detector.config.DetectorSpec and the like) be restored.
from detector.core.settings import DetectionSettings as DetectionSettings
from detector.core.settings import DetectorSpec as DetectorSpec
from detector.core.settings import EstimationSettings as EstimationSettings
from detector.core.settings import FeatureKind as FeatureKind
from detector.core.settings import FeatureSettings as FeatureSettings
from detector.core.settings import LabelSettings as LabelSettings
from detector.core.settings import ModelSettings as ModelSettings
from detector.core.settings import PerformanceDetectorSpec as PerformanceDetectorSpec
from detector.core.settings import PerformanceSettings as PerformanceSettings
from detector.core.settings import SegmentSettings as SegmentSettings
from detector.errors import ConfigError as ConfigError
from detector.ops.secrets import is_secret_key


class _Strict(BaseModel):
    # hide_input_in_errors: str(ValidationError) never shows a value (it may be a secret).
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


def _librdkafka_value(value: Any) -> str | int | float | bool:
    # One error per bad value, with no "(got ...)": these values may be secrets.
    if not isinstance(value, str | int | float | bool):
        raise ValueError("expected a string, number or boolean")
    return value


#: A librdkafka property value as configured (``"file:/path"`` and ``"env:NAME"`` included).
LibrdkafkaValue = Annotated[str | int | float | bool, PlainValidator(_librdkafka_value)]


class KafkaClientSettings(_Strict):
    """How to reach the cluster: shared by the sidecar's and the router's ``kafka`` sections.

    ``librdkafka`` is passed verbatim to librdkafka (security.protocol, sasl.mechanism,
    ssl.ca.location, ...). Values may be ``"file:/path"`` or ``"env:NAME"`` to read secrets
    (resolved by :func:`detector.ops.secrets.resolve_librdkafka_config`); they are never
    logged, and a config error about one never shows its value.
    """

    bootstrap_servers: str = "127.0.0.1:9092"
    session_timeout_ms: int = Field(10_000, ge=1000)
    # Left out of repr(): its values may be secrets.
    librdkafka: dict[str, LibrdkafkaValue] = Field(default_factory=dict, repr=False)


class KafkaSettings(KafkaClientSettings):
    """The sidecar's Kafka settings: the connection (inherited) and its topics."""

    input_topic: str = "predictions"
    #: Label events (schemas/label-event.v1.json), joined to predictions by event_id;
    #: co-partitioned with the input topic (docs/detection.md, "Delayed labels").
    labels_topic: str | None = None
    alert_topic: str = "drift-alerts"
    group_id: str = "drift-detector"
    dead_letter_topic: str | None = None  # default: "<input_topic>.dlq"
    changelog_topic: str | None = None  # default: "<group_id>.<input_topic>.changelog"
    processing_guarantee: Literal["exactly-once", "at-least-once"] = "exactly-once"
    # Stable per instance (a StatefulSet pod name, say) so a restarted instance fences its
    # zombie; default: "<group_id>-<hostname>".
    transactional_id: str | None = None
    checkpoint_interval_s: float = Field(2.0, gt=0.0)
    checkpoint_events: int = Field(200_000, ge=1)
    # Up to this many messages per loop turn; larger batches amortise the core's
    # vectorised work (docs/benchmarks.md). A turn waits at most 0.2 s for them.
    batch_size: int = Field(10_000, ge=1, le=1_000_000)
    max_message_bytes: int = Field(1_048_576, ge=1024)

    @property
    def dead_letter(self) -> str:
        return self.dead_letter_topic or f"{self.input_topic}.dlq"

    @property
    def changelog(self) -> str:
        return self.changelog_topic or f"{self.group_id}.{self.input_topic}.changelog"


class ServerSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)  # 0: no HTTP endpoint
    stall_threshold_s: float = Field(60.0, gt=0.0)


class LogSettings(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class CalibratedDetector(_Strict):
    """What ``detector calibrate`` measured for one detector it set."""

    #: Expected false alarms per event of this detector at the calibrated parameters.
    false_alarms_per_event: float = Field(ge=0.0)
    #: A 95 % interval of that rate (from the resampling), [low, high].
    interval: tuple[float, float]
    #: Median delay, in the model's events, for a one-standard-deviation mean shift (a
    #: 20-point category move for categorical features), measured by injection.
    expected_delay_events: float | None = None


class CalibrationSettings(_Strict):
    """Written by ``detector calibrate`` next to the detectors it set; read by
    ``detector config explain`` (a value under a key named here is "calibrated"). The
    detection core never reads it: it changes no detection."""

    budget: str
    rate: str
    source: str
    created_at: str
    method: str = ""
    #: Key paths below ``detection`` (``models.M.features.F.detector``) -> what was measured.
    detectors: dict[str, CalibratedDetector] = Field(default_factory=dict)


class AuditSettings(_Strict):
    """The audit log (docs/audit.md): an append-only, hash-chained record of what each
    sidecar did, on ``topic`` (default ``<kafka.alert_topic>.audit``)."""

    enabled: bool = True
    topic: str | None = None
    #: The topic's ``retention.ms`` when the sidecar creates it (at least six months: the
    #: EU AI Act's Articles 19 and 26(6)).
    retention_days: int = Field(400, ge=183)
    #: An Ed25519 private key (PEM, PKCS#8): each checkpoint signs the head of every chain
    #: that moved (``signature`` records; ``detector audit verify --public-key``).
    signing_key_file: str | None = None
    #: Where ``detector review suspend|resume`` publishes the control events a model
    #: server watches (default ``<kafka.alert_topic>.control``; compacted, keyed by model).
    control_topic: str | None = None
    #: The state archive (default ``<kafka.alert_topic>.archive``; not compacted, kept
    #: ``retention_days``, partitioned as the input): a snapshot of each input partition's
    #: whole detector state, with the input offset it covers, at the first checkpoint after
    #: an assignment or a reload and then every ``archive_interval_s`` (0: every checkpoint),
    #: for ``detector reproduce``.
    archive_topic: str | None = None
    archive_interval_s: float = Field(3600.0, ge=0.0)

    def topic_for(self, kafka: KafkaSettings) -> str:
        return self.topic or f"{kafka.alert_topic}.audit"

    def control_topic_for(self, kafka: KafkaSettings) -> str:
        return self.control_topic or f"{kafka.alert_topic}.control"

    def archive_topic_for(self, kafka: KafkaSettings) -> str:
        return self.archive_topic or f"{kafka.alert_topic}.archive"


class Settings(_Strict):
    kafka: KafkaSettings = KafkaSettings()
    detection: DetectionSettings = DetectionSettings()
    server: ServerSettings = ServerSettings()
    log: LogSettings = LogSettings()
    audit: AuditSettings = AuditSettings()
    calibration: CalibrationSettings | None = None


#: Environment variables and the key path each sets. KAFKA_BOOTSTRAP_SERVERS is honoured
#: too, as the test-suite and most Kafka tooling use it.
ENV_VARS: dict[str, tuple[str, ...]] = {
    "DETECTOR_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers"),
    "KAFKA_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers"),
    "DETECTOR_INPUT_TOPIC": ("kafka", "input_topic"),
    "DETECTOR_LABELS_TOPIC": ("kafka", "labels_topic"),
    "DETECTOR_ALERT_TOPIC": ("kafka", "alert_topic"),
    "DETECTOR_GROUP_ID": ("kafka", "group_id"),
    "DETECTOR_DEAD_LETTER_TOPIC": ("kafka", "dead_letter_topic"),
    "DETECTOR_PROCESSING_GUARANTEE": ("kafka", "processing_guarantee"),
    "DETECTOR_LOG_LEVEL": ("log", "level"),
    "DETECTOR_LOG_FORMAT": ("log", "format"),
    "DETECTOR_HTTP_PORT": ("server", "port"),
    "DETECTOR_AUDIT_SIGNING_KEY_FILE": ("audit", "signing_key_file"),
}


def _check_signing_key(settings: Settings, source: str) -> None:
    """The audit log's signing key must load: fail at start-up, not at the first
    checkpoint."""
    path = settings.audit.signing_key_file
    if path is None or not settings.audit.enabled:
        return
    from detector.audit.signing import Signer, SigningKeyError

    try:
        Signer.from_file(path)
    except SigningKeyError as exc:
        raise ConfigError(f"{source}: audit.signing_key_file: {exc}") from None


def set_path(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Set ``tree[path[0]][path[1]]... = value``, creating (or replacing) inner mappings."""
    node = tree
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = value


#: Keys under which no value is ever shown in an error, whatever the key: librdkafka
#: properties may be secrets under any name.
_NEVER_SHOWN = frozenset({"librdkafka"})


def _shows_input(error: Mapping[str, Any], secret_keys: Collection[str]) -> bool:
    if error["type"] in ("missing", "extra_forbidden"):
        return False
    if isinstance(error.get("input"), dict | list | tuple | set | frozenset):
        return False  # a mapping or list may hold secrets
    for part in error["loc"]:
        if isinstance(part, str) and (
            part in _NEVER_SHOWN or part in secret_keys or is_secret_key(part)
        ):
            return False
    return True


def _describe(error: Mapping[str, Any], secret_keys: Collection[str] = ()) -> str:
    path = ".".join(str(part) for part in error["loc"]) or "<top level>"
    expected = str(error["msg"])
    if expected.startswith("Value error, "):
        expected = expected.removeprefix("Value error, ")
        if not expected.startswith("expected "):
            expected = "expected " + expected
    if error["type"] == "extra_forbidden":
        expected = "unknown key"
    elif error["type"] == "missing":
        expected = "required key missing"
    shown = f" (got {error.get('input')!r})" if _shows_input(error, secret_keys) else ""
    return f"{path}: {expected}{shown}"


def describe_errors(exc: ValidationError, *, secret_keys: Collection[str] = ()) -> str:
    """A one-line ``"key.path: expected ... (got ...); ..."`` summary of a validation error.

    ``(got ...)`` is left out for missing and unknown keys, for mappings and lists (they may
    hold secrets), and for any value under a key in ``secret_keys``, under a key that
    :func:`detector.ops.secrets.is_secret_key` calls secret, or under ``librdkafka``.
    A ``ValueError("X")`` or ``ValueError("expected X")`` raised by a validator reads
    ``key.path: expected X``.
    """
    return "; ".join(_describe(err, secret_keys) for err in exc.errors())


def read_config_tree(path: str | Path | None) -> tuple[dict[str, Any], str]:
    """The YAML mapping in ``path`` (``{}`` for no path or an empty file) and its source name.

    The source name is the path, or ``"<defaults>"``; it starts every error message.
    Raises ConfigError for an unreadable file, invalid YAML or a top level that is not a
    mapping.
    """
    source = str(path) if path is not None else "<defaults>"
    if path is None:
        return {}, source
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read config file: {exc.strerror}") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source}: not valid YAML{where}") from None
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{source}: <top level>: expected a mapping of keys")
    return loaded, source


def apply_layers(
    tree: dict[str, Any],
    source: str,
    *,
    env_vars: Mapping[str, tuple[str, ...]],
    environ: Mapping[str, str],
    overrides: Mapping[tuple[str, ...], Any] | None = None,
) -> str:
    """Lay the environment, then the flags, over ``tree`` (in place); return the source name.

    Each set (non-empty) variable of ``env_vars`` sets its key path, in the mapping's order
    (a later variable wins) and is added to the source name (``"FILE + $VAR"``); then each
    override that is not None sets its key path. Precedence: flag > environment > file.
    """
    for name, key_path in env_vars.items():
        if environ.get(name):
            set_path(tree, key_path, environ[name])
            source += f" + ${name}"
    for key_path, value in (overrides or {}).items():
        if value is not None:
            set_path(tree, key_path, value)
    return source


def load_settings(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[tuple[str, ...], Any] | None = None,
) -> Settings:
    """Load settings from a YAML file (optional), the environment and explicit overrides.

    Raises ConfigError naming the file, the key path and what was expected.
    """
    tree, source = read_config_tree(path)
    environ = os.environ if env is None else env
    source = apply_layers(tree, source, env_vars=ENV_VARS, environ=environ, overrides=overrides)
    # Raised outside the except block: the ValidationError, which keeps every input value
    # (secrets included), is not chained to the ConfigError.
    problem: str | None = None
    try:
        settings = Settings.model_validate(tree)
    except ValidationError as exc:
        problem = describe_errors(exc)
    if problem is not None:
        raise ConfigError(f"{source}: {problem}")
    _check_detectors(settings, source)
    _check_signing_key(settings, source)
    if settings.kafka.labels_topic:  # predictions wait for the labels topic's labels
        labels = settings.detection.labels.model_copy(update={"join": True})
        detection = settings.detection.model_copy(update={"labels": labels})
        settings = settings.model_copy(update={"detection": detection})
    return settings


def _check_detectors(settings: Settings, source: str) -> None:
    """Build every configured River detector once so a bad parameter fails at start-up."""
    # Imported here: River (and numpy) load only when a config is loaded, not for --help.
    from detector.core.detectors import build_detector

    for key, spec in settings.detection.detector_specs():
        try:
            build_detector(spec)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"{source}: detection.{key}.params: expected valid arguments for "
                f"river.drift.{spec.name} ({exc})"
            ) from None
