from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from detector.config import ConfigError
from detector.ops.secrets import (
    SecretError,
    is_secret_key,
    redact_config,
    resolve_librdkafka_config,
    security_from_env,
)

SECRET = "s3cr3t-Value!"


def _build_and_close(producer_class: Any, config: dict[str, str | int | float | bool]) -> None:
    """Construct a Producer (librdkafka validates the keys here) and destroy it at once."""
    producer = producer_class({"bootstrap.servers": "127.0.0.1:1", **config})
    close = getattr(producer, "close", None)  # Producer.close() is recent in confluent-kafka
    if close is not None:
        close()
    else:
        producer.flush(0)
        del producer


class TestResolveLibrdkafkaConfig:
    def test_plain_values_pass_through(self) -> None:
        """Values without a ``file:``/``env:`` prefix, and non-strings, are kept as they are."""
        values: dict[str, str | int | float | bool] = {
            "security.protocol": "SASL_SSL",
            "socket.timeout.ms": 5000,
            "enable.ssl.certificate.verification": True,
        }
        assert resolve_librdkafka_config(values, environ={}) == values

    def test_file_values_are_read_and_trailing_newlines_stripped(self, tmp_path: Path) -> None:
        """``file:/path`` is replaced by the file's text without its trailing newline(s)."""
        secret = tmp_path / "password"
        secret.write_text(SECRET + "\n", encoding="utf-8")
        pem = tmp_path / "key.pem"
        pem.write_text("-----BEGIN-----\nabc\n-----END-----\r\n", encoding="utf-8")
        resolved = resolve_librdkafka_config(
            {"sasl.password": f"file:{secret}", "ssl.key.pem": f"file:{pem}"}, environ={}
        )
        assert resolved == {
            "sasl.password": SECRET,
            "ssl.key.pem": "-----BEGIN-----\nabc\n-----END-----",
        }

    def test_env_values_are_read_from_the_environment(self) -> None:
        """``env:NAME`` is replaced by the variable's value."""
        resolved = resolve_librdkafka_config(
            {"sasl.password": "env:KAFKA_PW"}, environ={"KAFKA_PW": SECRET}
        )
        assert resolved == {"sasl.password": SECRET}

    def test_missing_file_names_key_and_path(self, tmp_path: Path) -> None:
        """A missing file raises SecretError (a ConfigError) naming the key and the path."""
        path = tmp_path / "nope"
        with pytest.raises(SecretError) as info:
            resolve_librdkafka_config({"sasl.password": f"file:{path}"}, environ={})
        assert isinstance(info.value, ConfigError)
        assert "sasl.password" in str(info.value)
        assert str(path) in str(info.value)

    def test_missing_variable_names_key_and_variable(self) -> None:
        """An unset variable raises SecretError naming the key and the variable."""
        with pytest.raises(SecretError) as info:
            resolve_librdkafka_config({"ssl.key.password": "env:KEY_PW"}, environ={})
        assert "ssl.key.password" in str(info.value)
        assert "KEY_PW" in str(info.value)

    def test_errors_never_contain_the_secret(self, tmp_path: Path) -> None:
        """
        Whatever fails (empty file, non-UTF-8 file, empty variable, missing variable next to a
        resolvable secret), the message does not contain any secret value, and no exception
        that may hold the content is chained to it.
        """
        empty = tmp_path / "empty"
        empty.write_text("\n", encoding="utf-8")
        binary = tmp_path / "binary"
        binary.write_bytes(SECRET.encode() + b"\xff\xfe")
        good = tmp_path / "good"
        good.write_text(SECRET, encoding="utf-8")
        environ = {"EMPTY": "", "PW": SECRET}
        cases = [
            {"sasl.password": f"file:{empty}"},
            {"sasl.password": f"file:{binary}"},
            {"sasl.password": "env:EMPTY"},
            {"sasl.password": "env:PW", "ssl.key.password": "env:MISSING"},
            {"sasl.password": f"file:{good}", "ssl.key.password": "file:"},
            {"sasl.password": "env:"},
        ]
        for values in cases:
            with pytest.raises(SecretError) as info:
                resolve_librdkafka_config(values, environ=environ)
            assert SECRET not in str(info.value)
            assert info.value.__cause__ is None
            assert info.value.__context__ is None  # no chained error holding the content


class TestRedactConfig:
    def test_secret_values_are_replaced(self) -> None:
        """The librdkafka secret keys and anything with password/secret in it become ``***``."""
        config = {
            "bootstrap.servers": "kafka:9093",
            "sasl.username": "alice",
            "sasl.password": SECRET,
            "sasl.oauthbearer.client.secret": SECRET,
            "sasl.oauthbearer.config": "principal=admin",
            "sasl.oauthbearer.token.endpoint.url": "https://idp/token",
            "ssl.key.password": SECRET,
            "ssl.keystore.password": SECRET,
            "ssl.key.pem": SECRET,
            "ssl_key": SECRET,
            "my.custom.Password": SECRET,
            "some_secret_thing": SECRET,
            "socket.timeout.ms": 5000,
        }
        redacted = redact_config(config)
        assert SECRET not in str(redacted)
        assert redacted["sasl.oauthbearer.config"] == "***"
        assert redacted["sasl.username"] == "alice"
        assert redacted["sasl.oauthbearer.token.endpoint.url"] == "https://idp/token"
        assert redacted["socket.timeout.ms"] == 5000
        assert config["sasl.password"] == SECRET  # the input is not modified

    def test_unresolved_references_are_shown(self) -> None:
        """``file:``/``env:`` references are not secrets and stay visible."""
        config = {"sasl.password": "file:/run/secrets/pw", "ssl.key.password": "env:KEY_PW"}
        assert redact_config(config) == config

    def test_is_secret_key(self) -> None:
        """Token-like keys are secret; keys merely mentioning a token endpoint are not."""
        assert is_secret_key("token")
        assert is_secret_key("access_token")
        assert is_secret_key("webhook_url")
        assert is_secret_key("routing_key")
        assert not is_secret_key("sasl.oauthbearer.token.endpoint.url")
        assert not is_secret_key("partition")
        assert not is_secret_key("sasl.mechanism")


class TestSecurityFromEnv:
    def test_nothing_set_gives_nothing(self) -> None:
        """No KAFKA_* security variables (or empty ones): an empty mapping."""
        assert security_from_env({"KAFKA_SASL_USERNAME": "", "PATH": "/bin"}) == {}

    def test_sasl_scram_over_tls(self) -> None:
        """Protocol and mechanism are normalised to upper case; TLS and SASL keys mapped."""
        env = {
            "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "KAFKA_SASL_MECHANISM": "scram-sha-512",
            "KAFKA_SASL_USERNAME": "alice",
            "KAFKA_SASL_PASSWORD": SECRET,
            "KAFKA_SSL_CA_LOCATION": "/etc/ca.pem",
        }
        assert security_from_env(env) == {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "alice",
            "sasl.password": SECRET,
            "ssl.ca.location": "/etc/ca.pem",
        }

    def test_password_file_becomes_a_file_reference(self, tmp_path: Path) -> None:
        """``KAFKA_SASL_PASSWORD_FILE`` becomes ``file:<path>``, read at resolution."""
        path = tmp_path / "pw"
        path.write_text(SECRET + "\n", encoding="utf-8")
        env = {"KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_PASSWORD_FILE": str(path)}
        config = security_from_env(env)
        assert config["sasl.password"] == f"file:{path}"
        assert resolve_librdkafka_config(config, environ={})["sasl.password"] == SECRET

    def test_password_and_password_file_together_is_an_error(self) -> None:
        """Setting a secret both directly and as a file is ambiguous: SecretError, no value."""
        env = {"KAFKA_SASL_PASSWORD": SECRET, "KAFKA_SASL_PASSWORD_FILE": "/run/pw"}
        with pytest.raises(SecretError) as info:
            security_from_env(env)
        assert "KAFKA_SASL_PASSWORD" in str(info.value)
        assert SECRET not in str(info.value)

    def test_unknown_protocol_or_mechanism_is_an_error(self) -> None:
        """An unknown protocol or mechanism raises SecretError naming the variable."""
        with pytest.raises(SecretError, match="KAFKA_SECURITY_PROTOCOL"):
            security_from_env({"KAFKA_SECURITY_PROTOCOL": "TLS"})
        with pytest.raises(SecretError, match="KAFKA_SASL_MECHANISM"):
            security_from_env({"KAFKA_SASL_MECHANISM": "SCRAM"})

    def test_oauthbearer_oidc(self) -> None:
        """
        KAFKA_SASL_OAUTHBEARER_* map to sasl.oauthbearer.*; with a token endpoint and no
        method the ``oidc`` method is chosen; the client secret may come from a file.
        """
        env = {
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "OAUTHBEARER",
            "KAFKA_SASL_OAUTHBEARER_CLIENT_ID": "detector",
            "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET_FILE": "/run/secrets/client",
            "KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL": "https://idp/oauth2/token",
            "KAFKA_SASL_OAUTHBEARER_SCOPE": "kafka",
        }
        assert security_from_env(env) == {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "OAUTHBEARER",
            "sasl.oauthbearer.method": "oidc",
            "sasl.oauthbearer.client.id": "detector",
            "sasl.oauthbearer.client.secret": "file:/run/secrets/client",
            "sasl.oauthbearer.token.endpoint.url": "https://idp/oauth2/token",
            "sasl.oauthbearer.scope": "kafka",
        }

    def test_explicit_oauthbearer_method_is_kept(self) -> None:
        """An explicit KAFKA_SASL_OAUTHBEARER_METHOD is not overridden."""
        env = {
            "KAFKA_SASL_MECHANISM": "OAUTHBEARER",
            "KAFKA_SASL_OAUTHBEARER_METHOD": "default",
            "KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL": "https://idp/token",
        }
        assert security_from_env(env)["sasl.oauthbearer.method"] == "default"


class TestLibrdkafkaAcceptsTheKeys:
    def test_producer_accepts_sasl_plain_config(self, tmp_path: Path) -> None:
        """
        librdkafka accepts a resolved SASL_PLAINTEXT + PLAIN configuration: a Producer pointed
        at a port nobody listens on is built and closed without waiting on the network.
        """
        confluent_kafka = pytest.importorskip("confluent_kafka")
        path = tmp_path / "pw"
        path.write_text(SECRET + "\n", encoding="utf-8")
        env = {
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": "PLAIN",
            "KAFKA_SASL_USERNAME": "alice",
            "KAFKA_SASL_PASSWORD_FILE": str(path),
        }
        config = resolve_librdkafka_config(security_from_env(env), environ={})
        _build_and_close(confluent_kafka.Producer, config)

    def test_producer_accepts_scram_and_oidc_configs(self) -> None:
        """SCRAM-SHA-256 and OAUTHBEARER/oidc configurations are accepted as well."""
        confluent_kafka = pytest.importorskip("confluent_kafka")
        configs = [
            {
                "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
                "KAFKA_SASL_USERNAME": "alice",
                "KAFKA_SASL_PASSWORD": SECRET,
            },
            {
                "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "KAFKA_SASL_MECHANISM": "OAUTHBEARER",
                "KAFKA_SASL_OAUTHBEARER_CLIENT_ID": "detector",
                "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET": SECRET,
                "KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL": "http://127.0.0.1:1/token",
            },
        ]
        for env in configs:
            config = resolve_librdkafka_config(security_from_env(env), environ={})
            _build_and_close(confluent_kafka.Producer, config)

    def test_librdkafka_rejects_a_misspelt_key(self) -> None:
        """The check above is meaningful: a misspelt key fails at construction."""
        confluent_kafka = pytest.importorskip("confluent_kafka")
        with pytest.raises(confluent_kafka.KafkaException, match=r"sasl\.pasword"):
            _build_and_close(confluent_kafka.Producer, {"sasl.pasword": "x"})
