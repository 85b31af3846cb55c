"""The router's configuration: a subset of Alertmanager's, with its keys and meanings.

One YAML file, overridable by environment variables and flags exactly like the sidecar's
(:func:`detector.config.load_settings`): flag > environment > file > default. A bad config
fails at start-up with :class:`~detector.config.ConfigError`, ``"FILE: key.path: expected
... (got ...)"``; the ``(got ...)`` part is never shown for a secret (``api_url``,
``routing_key``, ``url``, anything :func:`~detector.ops.secrets.is_secret_key` calls
secret, anything in a receiver's ``*_configs`` or under ``librdkafka``) nor for a mapping
or list.

Durations are strings in Prometheus syntax (``30s``, ``5m``, ``1h30m``; see
:mod:`detector.core.durations`) and milliseconds in Python. Keys::

    global:
      resolve_timeout: 5m       # an alert not seen again for this long counts as resolved
    resolve_timeout: 5m         # the same, at the top level; set one of the two (default 5m)
    max_alert_age: 24h          # older alerts (by emitted_at) are dropped, not notified

    route:                      # required: the root of the routing tree
      receiver: team-ml         # required at the root; children inherit it
      group_by: [model]         # labels that split alerts into groups; ['...'] = all labels;
                                #   default at the root: [] (one group); inherited
      group_wait: 30s           # wait before a new group's first notification; inherited
      group_interval: 5m        # wait before notifying a group's new alerts; inherited
      repeat_interval: 4h       # wait before re-sending an unchanged notification; inherited
      routes:                   # children, tried in order on alerts the parent matched
        - matchers: ['severity="critical"', 'model=~"fraud.*"']   # all must match
          receiver: pager
          continue: false       # true: also try the next siblings after this one matched
          routes: [...]         # nested the same way; the root itself has no matchers

    receivers:                  # names unique and non-empty; a receiver may have no configs
      - name: team-ml
        slack_configs:          # Slack incoming webhooks
          - api_url: https://hooks.slack.com/services/...    # or api_url_file: /path
            channel: '#ml-alerts'                            # optional
        pagerduty_configs:      # PagerDuty Events API v2
          - routing_key: <32-character integration key>    # or routing_key_file: /path
            url: https://events.pagerduty.com/v2/enqueue   # the default
            source: drift-detector                         # the default
        webhook_configs:        # Alertmanager's webhook payload, POSTed as JSON
          - url: https://hooks.example/drift               # or url_file: /path
        alertmanager_configs:   # alerts posted to an Alertmanager's /api/v2/alerts
          - url: http://alertmanager:9093                  # its base URL
            evidence_url: https://ui.example/alerts/{alert_id}   # optional generatorURL

    delivery:                   # not Alertmanager's: how notifications are sent
      timeout: 10s              # per HTTP request
      initial_backoff: 1s       # first retry delay, doubled up to max_backoff
      max_backoff: 60s
      max_retry_time: 10m       # a notification still failing after this is dead-lettered
      rate_limits:              # requests per second, per integration kind
        {slack: 1.0, pagerduty: 2.0, webhook: 10.0, alertmanager: 10.0}

    kafka:                      # bootstrap_servers, session_timeout_ms, librdkafka as the
      alert_topic: drift-alerts #   sidecar's (detector.config.KafkaClientSettings)
      group_id: drift-router
      state_topic: null         # default: <alert_topic>.router-state
      silences_topic: null      # default: <alert_topic>.router-silences
      dead_letter_topic: null   # default: <alert_topic>.router-dlq
      audit_topic: null         # default: <alert_topic>.audit (the sidecar's audit log)
      checkpoint_interval_s: 1.0
    server: {host: 127.0.0.1, port: 0, stall_threshold_s: 60}   # as the sidecar's
    log: {level: info, format: auto}                            # as the sidecar's

``*_file`` keys name a file holding the secret (UTF-8, trailing newlines stripped); a
relative path is relative to the config file's directory, as in Alertmanager. The files
are read by :func:`integrations`, which :func:`load_router_settings` calls once so that a
missing or bad secret fails at start-up.

Environment variables (see ``ENV_VARS``): ``DETECTOR_ROUTER_BOOTSTRAP_SERVERS`` (or
``KAFKA_BOOTSTRAP_SERVERS``, which the former beats), ``DETECTOR_ROUTER_ALERT_TOPIC``,
``DETECTOR_ROUTER_GROUP_ID``, ``DETECTOR_ROUTER_HTTP_PORT``, ``DETECTOR_ROUTER_LOG_LEVEL``,
``DETECTOR_ROUTER_LOG_FORMAT``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from detector.config import (
    ConfigError,
    KafkaClientSettings,
    LogSettings,
    ServerSettings,
    apply_layers,
    describe_errors,
    read_config_tree,
)
from detector.core.durations import Duration
from detector.ops.secrets import SecretError, read_secret_file
from detector.router.matchers import Matcher, MatcherError, parse_matcher
from detector.router.model import LABEL_NAMES, Integration, IntegrationKind

DEFAULT_RESOLVE_TIMEOUT_MS = 5 * 60_000
DEFAULT_GROUP_WAIT_MS = 30_000
DEFAULT_GROUP_INTERVAL_MS = 5 * 60_000
DEFAULT_REPEAT_INTERVAL_MS = 4 * 3600_000
DEFAULT_PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"

#: ``group_by: ['...']``: group by all labels.
ALL_LABELS = "..."

#: Keys under which no value appears in a config error (besides is_secret_key's): the
#: secrets, and the integration lists, where a misplaced string may well be a secret URL.
SECRET_KEYS = frozenset(
    {
        "api_url",
        "routing_key",
        "url",
        "slack_configs",
        "pagerduty_configs",
        "webhook_configs",
        "alertmanager_configs",
    }
)

#: Environment variables and the key path each sets; a later one wins, so the router's own
#: variable beats the generic KAFKA_BOOTSTRAP_SERVERS.
ENV_VARS: dict[str, tuple[str, ...]] = {
    "KAFKA_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers"),
    "DETECTOR_ROUTER_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers"),
    "DETECTOR_ROUTER_ALERT_TOPIC": ("kafka", "alert_topic"),
    "DETECTOR_ROUTER_GROUP_ID": ("kafka", "group_id"),
    "DETECTOR_ROUTER_HTTP_PORT": ("server", "port"),
    "DETECTOR_ROUTER_LOG_LEVEL": ("log", "level"),
    "DETECTOR_ROUTER_LOG_FORMAT": ("log", "format"),
}

PAGERDUTY_KEY_LENGTH = 32
PAGERDUTY_KEY = "a 32-character integration key"
HTTP_URL = "an http:// or https:// URL"

# Validation context: the loader runs the cross-checks itself, to report exact key paths.
_DEFER_CHECKS = "defer_checks"
_BASE_DIR = "base_dir"


class _Strict(BaseModel):
    # hide_input_in_errors: str(ValidationError) never shows a value (it may be a secret).
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


# --- field types ---------------------------------------------------------------------------


def _positive(ms: int) -> int:
    if ms <= 0:
        raise ValueError("expected a duration longer than 0")
    return ms


#: A duration that must be longer than zero.
PositiveDuration = Annotated[Duration, AfterValidator(_positive)]


def _matcher(value: Any) -> Matcher:
    if isinstance(value, Matcher):
        return value
    if not isinstance(value, str):
        raise ValueError('expected a matcher string such as severity="critical"')
    try:
        return parse_matcher(value)
    except MatcherError as exc:
        raise ValueError(str(exc)) from None


#: A matcher: a string in the config, a parsed :class:`Matcher` in Python.
MatcherField = Annotated[Matcher, PlainValidator(_matcher), PlainSerializer(str, return_type=str)]


def _group_label(name: str) -> str:
    if name != ALL_LABELS and name not in LABEL_NAMES:
        raise ValueError(f"expected a label name (one of {', '.join(LABEL_NAMES)}) or '...'")
    return name


GroupLabel = Annotated[str, AfterValidator(_group_label)]


def _http_url(value: str) -> str:
    """Raise unless ``value`` is an http(s) URL with a host (never naming the value)."""
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"expected {HTTP_URL}")
    return value


def _file_path(value: str | None, info: ValidationInfo) -> str | None:
    """A secret file's path; relative paths are relative to the config file's directory."""
    if value is None:
        return None
    if not value:
        raise ValueError("expected a file path")
    base = (info.context or {}).get(_BASE_DIR)
    if base is not None and not Path(value).is_absolute():
        return str(Path(base) / value)
    return value


def _one_of(config: BaseModel, key: str) -> None:
    given = getattr(config, key) is not None
    from_file = getattr(config, f"{key}_file") is not None
    if given and from_file:
        raise ValueError(f"expected {key} or {key}_file, not both")
    if not given and not from_file:
        raise ValueError(f"expected {key} or {key}_file")


# --- receivers -----------------------------------------------------------------------------


class SlackConfig(_Strict):
    """A Slack incoming webhook: ``api_url`` (or ``api_url_file``) and an optional channel."""

    api_url: str | None = None
    api_url_file: str | None = None
    channel: str | None = None

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value)

    @field_validator("api_url_file")
    @classmethod
    def _file(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _file_path(value, info)

    @model_validator(mode="after")
    def _secret_once(self) -> Self:
        _one_of(self, "api_url")
        return self


class PagerdutyConfig(_Strict):
    """PagerDuty Events API v2: ``routing_key`` (or ``routing_key_file``), ``url``, ``source``."""

    routing_key: str | None = None
    routing_key_file: str | None = None
    url: str = DEFAULT_PAGERDUTY_URL
    source: str = "drift-detector"

    @field_validator("routing_key")
    @classmethod
    def _key_length(cls, value: str | None) -> str | None:
        if value is not None and len(value) != PAGERDUTY_KEY_LENGTH:
            raise ValueError(f"expected {PAGERDUTY_KEY}")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value)

    @field_validator("routing_key_file")
    @classmethod
    def _file(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _file_path(value, info)

    @model_validator(mode="after")
    def _secret_once(self) -> Self:
        _one_of(self, "routing_key")
        return self


class WebhookConfig(_Strict):
    """A generic webhook: ``url`` (or ``url_file``; the URL may embed a token)."""

    url: str | None = None
    url_file: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value)

    @field_validator("url_file")
    @classmethod
    def _file(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _file_path(value, info)

    @model_validator(mode="after")
    def _secret_once(self) -> Self:
        _one_of(self, "url")
        return self


class AlertmanagerConfig(_Strict):
    """An Alertmanager to post alerts to: its base ``url`` and an optional ``evidence_url``.

    ``evidence_url`` is a template with ``{alert_id}``, sent as each alert's generatorURL.
    """

    url: str
    evidence_url: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value)

    @field_validator("evidence_url")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "{alert_id}" not in value:
            raise ValueError("expected a URL template containing {alert_id}")
        _http_url(value.replace("{alert_id}", "x"))
        return value

    @property
    def alerts_url(self) -> str:
        """The endpoint alerts are posted to: ``<url>/api/v2/alerts``."""
        return self.url.rstrip("/") + "/api/v2/alerts"


class ReceiverSettings(_Strict):
    """A named receiver and its integrations (none at all is a receiver that drops alerts)."""

    name: str
    slack_configs: list[SlackConfig] = Field(default_factory=list)
    pagerduty_configs: list[PagerdutyConfig] = Field(default_factory=list)
    webhook_configs: list[WebhookConfig] = Field(default_factory=list)
    alertmanager_configs: list[AlertmanagerConfig] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _non_empty(cls, name: str) -> str:
        if not name.strip():
            raise ValueError("expected a non-empty receiver name")
        return name


# --- the routing tree ----------------------------------------------------------------------


class RouteSettings(_Strict):
    """One node of the routing tree as configured; unset values inherit from the parent.

    See :class:`detector.router.routes.Route` for the resolved tree.
    """

    receiver: str | None = None
    group_by: list[GroupLabel] | None = None
    group_wait: Duration | None = None
    group_interval: PositiveDuration | None = None
    repeat_interval: PositiveDuration | None = None
    matchers: list[MatcherField] = Field(default_factory=list)
    continue_: bool = Field(False, alias="continue")
    routes: list[RouteSettings] = Field(default_factory=list)

    @field_validator("group_by")
    @classmethod
    def _group_by(cls, names: list[str] | None) -> list[str] | None:
        if names is None:
            return None
        if ALL_LABELS in names and len(names) > 1:
            raise ValueError("expected '...' alone (it means all labels)")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"expected each label once ({', '.join(repeated)} repeated)")
        return names

    def walk(self, path: str = "route") -> Iterator[tuple[str, RouteSettings]]:
        """This route and all below it, depth first, with their key paths."""
        yield path, self
        for index, child in enumerate(self.routes):
            yield from child.walk(f"{path}.routes.{index}")


# --- the rest ------------------------------------------------------------------------------


class GlobalSettings(_Strict):
    resolve_timeout: Duration | None = None


class RateLimits(_Strict):
    """Requests per second per integration kind (a token bucket per integration)."""

    slack: float = Field(1.0, gt=0.0)
    pagerduty: float = Field(2.0, gt=0.0)
    webhook: float = Field(10.0, gt=0.0)
    alertmanager: float = Field(10.0, gt=0.0)

    def __getitem__(self, kind: IntegrationKind) -> float:
        """``rate_limits["slack"]``: the limit of one kind."""
        return float(getattr(self, kind))


class DeliverySettings(_Strict):
    """Our extension (not Alertmanager's): timeouts, retries and rate limits. Milliseconds."""

    timeout: PositiveDuration = 10_000
    initial_backoff: PositiveDuration = 1_000
    max_backoff: PositiveDuration = 60_000
    max_retry_time: PositiveDuration = 10 * 60_000
    rate_limits: RateLimits = RateLimits()

    @model_validator(mode="after")
    def _backoff_order(self) -> Self:
        if self.max_backoff < self.initial_backoff:
            raise ValueError("expected max_backoff to be at least initial_backoff")
        return self


class RouterKafkaSettings(KafkaClientSettings):
    """The connection (as the sidecar's) and the router's topics."""

    alert_topic: str = "drift-alerts"
    group_id: str = "drift-router"
    state_topic: str | None = None  # default: "<alert_topic>.router-state"
    silences_topic: str | None = None  # default: "<alert_topic>.router-silences"
    dead_letter_topic: str | None = None  # default: "<alert_topic>.router-dlq"
    #: The sidecar's audit log (docs/audit.md): notifications and silences are recorded
    #: in it when it exists. Default: "<alert_topic>.audit", as the sidecar's default.
    audit_topic: str | None = None
    checkpoint_interval_s: float = Field(1.0, gt=0.0)

    @property
    def state(self) -> str:
        return self.state_topic or f"{self.alert_topic}.router-state"

    @property
    def silences(self) -> str:
        return self.silences_topic or f"{self.alert_topic}.router-silences"

    @property
    def dead_letter(self) -> str:
        return self.dead_letter_topic or f"{self.alert_topic}.router-dlq"

    @property
    def audit(self) -> str:
        return self.audit_topic or f"{self.alert_topic}.audit"


class RouterSettings(_Strict):
    """The whole router configuration (see the module docstring for every key)."""

    global_: GlobalSettings = Field(default_factory=GlobalSettings, alias="global")
    resolve_timeout: Duration | None = None
    max_alert_age: PositiveDuration = 24 * 3600_000
    route: RouteSettings
    receivers: list[ReceiverSettings] = Field(default_factory=list)
    delivery: DeliverySettings = DeliverySettings()
    kafka: RouterKafkaSettings = RouterKafkaSettings()
    server: ServerSettings = ServerSettings()
    log: LogSettings = LogSettings()

    @property
    def resolve_timeout_ms(self) -> int:
        for value in (self.resolve_timeout, self.global_.resolve_timeout):
            if value is not None:
                return value
        return DEFAULT_RESOLVE_TIMEOUT_MS

    def receiver(self, name: str) -> ReceiverSettings | None:
        return next((r for r in self.receivers if r.name == name), None)

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Self:
        if not (info.context or {}).get(_DEFER_CHECKS):
            problems = check_settings(self)
            if problems:
                raise ValueError("; ".join(problems))
        return self


def check_settings(settings: RouterSettings) -> list[str]:
    """What is wrong across keys, as ``"key.path: expected ..."`` lines (none: consistent)."""
    problems: list[str] = []
    if settings.resolve_timeout is not None and settings.global_.resolve_timeout is not None:
        problems.append(
            "resolve_timeout: expected resolve_timeout or global.resolve_timeout, not both"
        )
    seen: dict[str, int] = {}
    for index, receiver in enumerate(settings.receivers):
        if receiver.name in seen:
            problems.append(
                f"receivers.{index}.name: expected a unique receiver name"
                f" (receivers.{seen[receiver.name]} has it too) (got {receiver.name!r})"
            )
        seen.setdefault(receiver.name, index)
    root = settings.route
    if root.receiver is None:
        problems.append("route.receiver: required key missing")
    if root.matchers:
        problems.append("route.matchers: expected no matchers on the root route")
    known = f"one of {', '.join(seen)}" if seen else "no receiver is configured"
    for path, route in root.walk():
        if route.receiver is not None and route.receiver not in seen:
            problems.append(
                f"{path}.receiver: expected the name of a receiver ({known})"
                f" (got {route.receiver!r})"
            )
    return problems


# --- loading -------------------------------------------------------------------------------


def load_router_settings(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[tuple[str, ...], Any] | None = None,
) -> RouterSettings:
    """Load the router's settings: YAML file, then environment, then ``overrides`` (flags).

    ``overrides`` maps key paths such as ``("kafka", "group_id")`` to flag values (None:
    not given). Secret files are read once (:func:`integrations`) so that a bad one fails
    here. Raises ConfigError naming the file, the key path and what was expected.
    """
    tree, source = read_config_tree(path)
    environ = os.environ if env is None else env
    source = apply_layers(tree, source, env_vars=ENV_VARS, environ=environ, overrides=overrides)
    base_dir = str(Path(path).resolve().parent) if path is not None else None
    # Errors are raised outside the except blocks: no exception holding a secret value
    # (a ValidationError keeps every input) is chained as __context__.
    problem: str | None = None
    try:
        settings = RouterSettings.model_validate(
            tree, context={_DEFER_CHECKS: True, _BASE_DIR: base_dir}
        )
    except ValidationError as exc:
        problem = describe_errors(exc, secret_keys=SECRET_KEYS)
    if problem is not None:
        raise ConfigError(f"{source}: {problem}")
    problems = check_settings(settings)
    if problems:
        raise ConfigError(f"{source}: {'; '.join(problems)}")
    try:
        integrations(settings)
    except SecretError as exc:
        raise SecretError(f"{source}: {exc}") from None
    return settings


# --- integrations --------------------------------------------------------------------------


def integrations(settings: RouterSettings) -> dict[str, list[Integration]]:
    """Receiver name -> its integrations, secrets read, in config order.

    Kinds come in the order slack, pagerduty, webhook, alertmanager, each in its list's
    order; ``Integration.id`` is ``"<receiver>/<kind>/<index in that list>"``. Raises
    ConfigError (a :class:`~detector.ops.secrets.SecretError` for a secret file) naming the
    key path and the file, never a secret.
    """
    return {
        receiver.name: _receiver_integrations(receiver, f"receivers.{index}")
        for index, receiver in enumerate(settings.receivers)
    }


def _receiver_integrations(receiver: ReceiverSettings, path: str) -> list[Integration]:
    name = receiver.name
    items: list[Integration] = []
    for i, slack in enumerate(receiver.slack_configs):
        key = f"{path}.slack_configs.{i}.api_url"
        url = _secret(key, slack.api_url, slack.api_url_file, _is_http_url, HTTP_URL)
        options = {"channel": slack.channel}
        items.append(Integration(f"{name}/slack/{i}", name, "slack", url, (url,), options))
    for i, pd in enumerate(receiver.pagerduty_configs):
        key = f"{path}.pagerduty_configs.{i}.routing_key"
        routing_key = _secret(
            key, pd.routing_key, pd.routing_key_file, _is_pagerduty_key, PAGERDUTY_KEY
        )
        options = {"routing_key": routing_key, "source": pd.source}
        items.append(
            Integration(f"{name}/pagerduty/{i}", name, "pagerduty", pd.url, (routing_key,), options)
        )
    for i, hook in enumerate(receiver.webhook_configs):
        key = f"{path}.webhook_configs.{i}.url"
        url = _secret(key, hook.url, hook.url_file, _is_http_url, HTTP_URL)
        items.append(Integration(f"{name}/webhook/{i}", name, "webhook", url, (url,), {}))
    for i, am in enumerate(receiver.alertmanager_configs):
        options = {"evidence_url": am.evidence_url}
        items.append(
            Integration(
                f"{name}/alertmanager/{i}", name, "alertmanager", am.alerts_url, (), options
            )
        )
    return items


def _is_http_url(value: str) -> bool:
    try:
        _http_url(value)
    except ValueError:
        return False
    return True


def _is_pagerduty_key(value: str) -> bool:
    return len(value) == PAGERDUTY_KEY_LENGTH


def _secret(
    key: str, value: str | None, file: str | None, valid: Callable[[str], bool], what: str
) -> str:
    """The secret given inline, or read from ``file`` and checked with ``valid``."""
    if value is not None:
        return value
    assert file is not None  # the models require one of the two
    text = read_secret_file(f"{key}_file", file)
    if not valid(text):
        raise SecretError(f"{key}_file: expected the file {file} to hold {what}")
    return text
