"""Kafka credentials: ``file:``/``env:`` indirection, security settings from the environment,
and redaction of secret values before anything is logged.

Secrets never appear in an error message: errors name the config key and the file path or
variable name that could not be read, and nothing else.

Typical use (the environment overrides the config file, as everywhere else)::

    raw = {**settings.kafka.librdkafka, **security_from_env(os.environ)}
    config = resolve_librdkafka_config(raw)    # secrets read here; raises SecretError
    log.info("kafka config", librdkafka=redact_config(config))
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypeVar

from detector.errors import ConfigError

#: A librdkafka property value, as confluent_kafka accepts it.
Value = str | int | float | bool

#: What a redacted value is replaced with.
REDACTED = "***"

FILE_PREFIX = "file:"
ENV_PREFIX = "env:"

_V = TypeVar("_V")


class SecretError(ConfigError):
    """A secret (or security setting) cannot be resolved.

    The message names the config key and the file path or variable name; never the value.
    It is a :class:`~detector.config.ConfigError`, so start-up reports it like any bad config.
    """


#: Keys whose values are secret whatever they are called elsewhere.
_SECRET_KEYS = frozenset(
    {
        "sasl.password",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.config",
        "ssl.key.password",
        "ssl.keystore.password",
        "ssl.key.pem",
        "ssl_key",
        "webhook_url",
        "routing_key",
        "authorization",
    }
)

#: Substrings that make any key secret.
_SECRET_PARTS = ("password", "passwd", "secret", "credential", "private_key", "api_key", "apikey")


def is_secret_key(key: str) -> bool:
    """Whether the value stored under ``key`` must never be shown.

    True for the librdkafka secret properties, any key containing ``password`` or ``secret``
    (and a few like it), webhook URLs, routing keys, and keys ending in ``token``
    (``token``, ``access_token``; not ``sasl.oauthbearer.token.endpoint.url``).
    """
    lowered = key.lower().replace("-", "_")
    if lowered in _SECRET_KEYS:
        return True
    if any(part in lowered for part in _SECRET_PARTS):
        return True
    return lowered.rsplit(".", 1)[-1].endswith("token")


def redact_config(config: Mapping[str, _V]) -> dict[str, _V | str]:
    """A copy of ``config`` with every secret value replaced by ``"***"``, fit for logging.

    Unresolved ``file:``/``env:`` references are not secret and are kept, which helps to see
    where a secret was meant to come from.
    """
    redacted: dict[str, _V | str] = {}
    for key, value in config.items():
        if is_secret_key(key) and not _is_reference(value):
            redacted[key] = REDACTED
        else:
            redacted[key] = value
    return redacted


def _is_reference(value: object) -> bool:
    return isinstance(value, str) and value.startswith((FILE_PREFIX, ENV_PREFIX))


def resolve_librdkafka_config(
    values: Mapping[str, Value], *, environ: Mapping[str, str] | None = None
) -> dict[str, Value]:
    """Expand ``"file:/path"`` and ``"env:NAME"`` values; other values are kept as they are.

    ``file:`` reads the file as UTF-8 and strips trailing newlines (PEM keys keep their inner
    lines); ``env:`` reads the variable from ``environ`` (default: ``os.environ``). A missing,
    unreadable or empty source raises :class:`SecretError` naming the key and the source.
    """
    env = os.environ if environ is None else environ
    resolved: dict[str, Value] = {}
    for key, value in values.items():
        if isinstance(value, str) and value.startswith(FILE_PREFIX):
            resolved[key] = _read_file(key, value.removeprefix(FILE_PREFIX))
        elif isinstance(value, str) and value.startswith(ENV_PREFIX):
            resolved[key] = _read_env(key, value.removeprefix(ENV_PREFIX), env)
        else:
            resolved[key] = value
    return resolved


def _where(key: str) -> str:
    return f"kafka.librdkafka.{key}"


def _read_file(key: str, path: str) -> str:
    if not path:
        raise SecretError(f"{_where(key)}: expected a path after 'file:'")
    return read_secret_file(_where(key), path)


def read_secret_file(where: str, path: str) -> str:
    """The file's UTF-8 text without trailing newlines (PEM keys keep their inner lines).

    An unreadable, non-UTF-8 or empty file raises :class:`SecretError` as
    ``"<where>: <problem>"``, ``where`` being the full config key
    (``kafka.librdkafka.ssl.key.pem``, ``receivers.0.slack_configs.0.api_url_file``): the
    message names the key and ``path`` only, never the content.
    """
    # Errors are raised outside the except blocks so that no exception holding the content
    # (UnicodeDecodeError keeps the bytes) is chained as __context__.
    problem: str | None = None
    text = ""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        problem = f"cannot read secret file {path}: {exc.strerror or type(exc).__name__}"
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            problem = f"secret file {path} is not UTF-8 text"
        del data
    if problem is not None:
        raise SecretError(f"{where}: {problem}")
    text = text.rstrip("\r\n")
    if not text:
        raise SecretError(f"{where}: secret file {path} is empty")
    return text


def _read_env(key: str, name: str, environ: Mapping[str, str]) -> str:
    if not name:
        raise SecretError(f"{_where(key)}: expected a variable name after 'env:'")
    value = environ.get(name)
    if value is None:
        raise SecretError(f"{_where(key)}: environment variable {name} is not set")
    if not value:
        raise SecretError(f"{_where(key)}: environment variable {name} is empty")
    return value


# --- security settings from the environment -------------------------------------------------

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI")

#: Plain variables and the librdkafka key each sets.
ENV_KEYS: dict[str, str] = {
    "KAFKA_SECURITY_PROTOCOL": "security.protocol",
    "KAFKA_SASL_MECHANISM": "sasl.mechanism",
    "KAFKA_SASL_USERNAME": "sasl.username",
    "KAFKA_SASL_PASSWORD": "sasl.password",
    "KAFKA_SSL_CA_LOCATION": "ssl.ca.location",
    "KAFKA_SSL_CERTIFICATE_LOCATION": "ssl.certificate.location",
    "KAFKA_SSL_KEY_LOCATION": "ssl.key.location",
    "KAFKA_SSL_KEY_PASSWORD": "ssl.key.password",
    "KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM": "ssl.endpoint.identification.algorithm",
    "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET": "sasl.oauthbearer.client.secret",
}

#: ``<VAR>_FILE`` variants of the secret variables: the value is a path, read at resolution.
FILE_ENV_KEYS: dict[str, str] = {
    "KAFKA_SASL_PASSWORD_FILE": "sasl.password",
    "KAFKA_SSL_KEY_PASSWORD_FILE": "ssl.key.password",
    "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET_FILE": "sasl.oauthbearer.client.secret",
}

#: Any other ``KAFKA_SASL_OAUTHBEARER_X_Y`` sets ``sasl.oauthbearer.x.y`` (method, client.id,
#: token.endpoint.url, scope, extensions, config, ...).
OAUTHBEARER_PREFIX = "KAFKA_SASL_OAUTHBEARER_"


def security_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Value]:
    """librdkafka security keys from ``KAFKA_*`` variables (unset or empty ones are skipped).

    Covers TLS (``KAFKA_SSL_*``), SASL PLAIN and SCRAM-SHA-256/512 (``KAFKA_SASL_USERNAME``
    and ``KAFKA_SASL_PASSWORD`` or ``KAFKA_SASL_PASSWORD_FILE``) and OAUTHBEARER
    (``KAFKA_SASL_OAUTHBEARER_*``; with a token endpoint and no explicit method, the
    ``oidc`` method). ``*_FILE`` variables become ``"file:<path>"`` values, so secrets are read
    only by :func:`resolve_librdkafka_config`. Raises :class:`SecretError` naming the variable
    for an unknown protocol or mechanism, or a secret given both directly and as a file.
    """
    env = os.environ if environ is None else environ
    config: dict[str, Value] = {}
    source: dict[str, str] = {}  # librdkafka key -> variable that set it

    def put(var: str, key: str, value: str) -> None:
        if key in config:
            raise SecretError(f"${var}: {key} is already set by ${source[key]}; set only one")
        config[key] = value
        source[key] = var

    for var, key in ENV_KEYS.items():
        if env.get(var):
            put(var, key, env[var])
    for var, key in FILE_ENV_KEYS.items():
        if env.get(var):
            put(var, key, FILE_PREFIX + env[var])
    for var in sorted(env):
        if not var.startswith(OAUTHBEARER_PREFIX) or not env[var]:
            continue
        if var in ENV_KEYS or var in FILE_ENV_KEYS:
            continue
        suffix = var.removeprefix(OAUTHBEARER_PREFIX).lower().replace("_", ".")
        put(var, f"sasl.oauthbearer.{suffix}", env[var])

    _normalise_choice(config, "security.protocol", PROTOCOLS, source)
    _normalise_choice(config, "sasl.mechanism", MECHANISMS, source)
    if (
        config.get("sasl.mechanism") == "OAUTHBEARER"
        and "sasl.oauthbearer.token.endpoint.url" in config
        and "sasl.oauthbearer.method" not in config
    ):
        config["sasl.oauthbearer.method"] = "oidc"
    return config


def _normalise_choice(
    config: dict[str, Value], key: str, choices: tuple[str, ...], source: Mapping[str, str]
) -> None:
    if key not in config:
        return
    value = str(config[key]).strip().upper()
    if value not in choices:
        raise SecretError(
            f"${source[key]}: expected one of {', '.join(choices)} (got {config[key]!r})"
        )
    config[key] = value
