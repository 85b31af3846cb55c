"""The router's configuration: keys, defaults, layering, cross-checks, secrets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from detector.config import (
    ConfigError,
    KafkaClientSettings,
    KafkaSettings,
    LogSettings,
    ServerSettings,
    describe_errors,
    load_settings,
    read_config_tree,
)
from detector.ops.secrets import SecretError
from detector.router.settings import (
    RouterKafkaSettings,
    RouterSettings,
    integrations,
    load_router_settings,
)

S = 1000
M = 60 * S
H = 60 * M

PD_KEY = "0123456789abcdef0123456789abcdef"

MINIMAL = "route: {receiver: team}\nreceivers: [{name: team}]\n"

FULL = f"""
global:
  resolve_timeout: 10m
max_alert_age: 12h
route:
  receiver: team
  group_by: [model]
  group_wait: 45s
  routes:
    - matchers: ['severity="critical"', 'model=~"fraud.*"']
      receiver: pager
      continue: true
receivers:
  - name: team
    slack_configs:
      - api_url: https://hooks.slack.com/services/T/B/one
        channel: '#ml'
      - api_url: https://hooks.slack.com/services/T/B/two
    webhook_configs:
      - url: https://hooks.example/drift?token=t
  - name: pager
    pagerduty_configs:
      - routing_key: {PD_KEY}
    alertmanager_configs:
      - url: http://alertmanager:9093/
        evidence_url: https://ui.example/alerts/{{alert_id}}
delivery:
  timeout: 5s
  rate_limits: {{slack: 0.5}}
kafka:
  alert_topic: alerts
  librdkafka: {{security.protocol: SASL_SSL}}
server: {{port: 9100}}
log: {{level: debug}}
"""


def write(tmp_path: Path, text: str, name: str = "router.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str) -> RouterSettings:
    return load_router_settings(write(tmp_path, text), env={})


def error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_router_settings(path, env={})
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    return message


class TestDefaults:
    def test_minimal(self, tmp_path: Path) -> None:
        """A route and a receiver suffice; everything else has Alertmanager's defaults."""
        settings = load(tmp_path, MINIMAL)
        assert settings.resolve_timeout_ms == 5 * M
        assert settings.max_alert_age == 24 * H
        route = settings.route
        assert route.group_by is None and route.group_wait is None and route.matchers == []
        assert not route.continue_ and route.routes == []
        delivery = settings.delivery
        assert (delivery.timeout, delivery.initial_backoff) == (10 * S, 1 * S)
        assert (delivery.max_backoff, delivery.max_retry_time) == (60 * S, 10 * M)
        limits = delivery.rate_limits
        assert [limits[k] for k in ("slack", "pagerduty", "webhook", "alertmanager")] == [
            1.0,
            2.0,
            10.0,
            10.0,
        ]
        assert settings.server == ServerSettings() and settings.log == LogSettings()

    def test_kafka(self, tmp_path: Path) -> None:
        """Topic names default from the alert topic; the connection is the sidecar's."""
        kafka = load(tmp_path, MINIMAL).kafka
        assert isinstance(kafka, KafkaClientSettings)
        assert (kafka.alert_topic, kafka.group_id) == ("drift-alerts", "drift-router")
        assert kafka.state == "drift-alerts.router-state"
        assert kafka.silences == "drift-alerts.router-silences"
        assert kafka.dead_letter == "drift-alerts.router-dlq"
        assert kafka.checkpoint_interval_s == 1.0
        assert kafka.bootstrap_servers == KafkaSettings().bootstrap_servers
        named = RouterKafkaSettings(
            alert_topic="a", state_topic="s", silences_topic="q", dead_letter_topic="d"
        )
        assert (named.state, named.silences, named.dead_letter) == ("s", "q", "d")
        assert RouterKafkaSettings(alert_topic="a").silences == "a.router-silences"


class TestKeys:
    def test_full_example(self, tmp_path: Path) -> None:
        """Every documented key is read, durations as milliseconds."""
        settings = load(tmp_path, FULL)
        assert settings.resolve_timeout_ms == 10 * M
        assert settings.max_alert_age == 12 * H
        assert settings.route.group_by == ["model"]
        assert settings.route.group_wait == 45 * S
        child = settings.route.routes[0]
        assert [str(m) for m in child.matchers] == ['severity="critical"', 'model=~"fraud.*"']
        assert child.continue_ and child.receiver == "pager"
        assert [r.name for r in settings.receivers] == ["team", "pager"]
        assert settings.delivery.timeout == 5 * S
        assert settings.delivery.rate_limits["slack"] == 0.5
        assert settings.delivery.rate_limits["webhook"] == 10.0
        assert settings.kafka.dead_letter == "alerts.router-dlq"
        assert settings.kafka.librdkafka == {"security.protocol": "SASL_SSL"}
        assert (settings.server.port, settings.log.level) == (9100, "debug")

    def test_top_level_resolve_timeout(self, tmp_path: Path) -> None:
        """resolve_timeout may be given at the top level instead of under global."""
        settings = load(tmp_path, MINIMAL + "resolve_timeout: 1h\n")
        assert settings.resolve_timeout_ms == H

    def test_group_by_all(self, tmp_path: Path) -> None:
        """group_by ['...'] is accepted alone."""
        settings = load(
            tmp_path, "route: {receiver: a, group_by: ['...']}\nreceivers: [{name: a}]\n"
        )
        assert settings.route.group_by == ["..."]

    def test_frozen(self, tmp_path: Path) -> None:
        """Settings cannot be changed once loaded."""
        settings = load(tmp_path, MINIMAL)
        with pytest.raises(ValidationError):
            settings.max_alert_age = 1  # type: ignore[misc]

    def test_direct_validation_checks_too(self) -> None:
        """Validating a mapping directly runs the cross-checks as well."""
        with pytest.raises(
            ValidationError, match=r"route\.receiver: expected the name of a receiver"
        ):
            RouterSettings.model_validate({"route": {"receiver": "x"}})


class TestErrors:
    @pytest.mark.parametrize(
        ("text", "message"),
        [
            (
                "route:\n  receiver: a\n  routes:\n    - receiver: b\n    - receiver: x\n"
                "receivers: [{name: a}, {name: b}]\n",
                "route.routes.1.receiver: expected the name of a receiver (one of a, b) (got 'x')",
            ),
            (
                "route:\n  receiver: a\n  routes:\n    - routes:\n        - receiver: nope\n"
                "receivers: [{name: a}]\n",
                "route.routes.0.routes.0.receiver: expected the name of a receiver (one of a) (got 'nope')",
            ),
            (
                "route: {receiver: a}\n",
                "route.receiver: expected the name of a receiver (no receiver is configured) (got 'a')",
            ),
            (
                "route:\n  receiver: a\n  routes:\n    - matchers: ['model=\"x\"', 'team=\"ml\"']\n"
                "receivers: [{name: a}]\n",
                "route.routes.0.matchers.1: expected a label name (one of model, model_version,"
                " feature, drift_type, severity, detector), not 'team' (got 'team=\"ml\"')",
            ),
            (
                "route:\n  receiver: a\n  routes:\n    - matchers: ['model=~\"(\"']\n"
                "receivers: [{name: a}]\n",
                "route.routes.0.matchers.0: expected a valid regular expression",
            ),
            (
                "route: {receiver: a, matchers: ['model=\"x\"']}\nreceivers: [{name: a}]\n",
                "route.matchers: expected no matchers on the root route",
            ),
            ("route: {group_wait: 1m}\n", "route.receiver: required key missing"),
            ("receivers: []\n", "route: required key missing"),
            (
                MINIMAL + "max_alert_age: 30\n",
                "max_alert_age: expected a duration such as 30s, 5m, 4h (got 30)",
            ),
            (
                "route: {receiver: a, group_wait: 1m1h}\nreceivers: [{name: a}]\n",
                "route.group_wait: expected a duration such as 30s, 5m, 4h (units y, w, d, h, m, s, ms, largest first) (got '1m1h')",
            ),
            (
                "route: {receiver: a, repeat_interval: 0s}\nreceivers: [{name: a}]\n",
                "route.repeat_interval: expected a duration longer than 0 (got '0s')",
            ),
            (
                "route: {receiver: a, group_by: [model, team]}\nreceivers: [{name: a}]\n",
                "route.group_by.1: expected a label name (one of model, model_version, feature,"
                " drift_type, severity, detector) or '...' (got 'team')",
            ),
            (
                "route: {receiver: a, group_by: [model, '...']}\nreceivers: [{name: a}]\n",
                "route.group_by: expected '...' alone (it means all labels)",
            ),
            (
                "route: {receiver: a, group_by: [model, model]}\nreceivers: [{name: a}]\n",
                "route.group_by: expected each label once (model repeated)",
            ),
            (
                MINIMAL + "resolve_timeout: 1m\nglobal: {resolve_timeout: 2m}\n",
                "resolve_timeout: expected resolve_timeout or global.resolve_timeout, not both",
            ),
            (
                "route: {receiver: a}\nreceivers: [{name: a}, {name: b}, {name: a}]\n",
                "receivers.2.name: expected a unique receiver name (receivers.0 has it too) (got 'a')",
            ),
            (
                "route: {receiver: a}\nreceivers: [{name: a}, {name: ' '}]\n",
                "receivers.1.name: expected a non-empty receiver name (got ' ')",
            ),
            (
                "route: {receiver: a}\nreceivers:\n  - name: a\n    slack_configs:\n"
                "      - {api_url: 'https://h/x', api_url_file: /f}\n",
                "receivers.0.slack_configs.0: expected api_url or api_url_file, not both",
            ),
            (
                "route: {receiver: a}\nreceivers:\n  - name: a\n    slack_configs: [{channel: '#x'}]\n",
                "receivers.0.slack_configs.0: expected api_url or api_url_file",
            ),
            (
                "route: {receiver: a}\nreceivers:\n  - name: a\n    pagerduty_configs: [{}]\n",
                "receivers.0.pagerduty_configs.0: expected routing_key or routing_key_file",
            ),
            (
                "route: {receiver: a}\nreceivers:\n  - name: a\n    webhook_configs:\n"
                "      - {url: 'https://h/x', url_file: /f}\n",
                "receivers.0.webhook_configs.0: expected url or url_file, not both",
            ),
            (
                "route: {receiver: a}\nreceivers:\n  - name: a\n    pagerduty_configs: [{routing_key: short}]\n",
                "receivers.0.pagerduty_configs.0.routing_key: expected a 32-character integration key",
            ),
            (
                "route: {receiver: a}\nreceivers:\n  - name: a\n    alertmanager_configs: [{url: 'am:9093'}]\n",
                "receivers.0.alertmanager_configs.0.url: expected an http:// or https:// URL",
            ),
            (
                "route: {receiver: a}\nreceivers:\n  - name: a\n    alertmanager_configs:\n"
                "      - {url: 'http://am', evidence_url: 'https://ui/x'}\n",
                "receivers.0.alertmanager_configs.0.evidence_url: expected a URL template containing {alert_id}",
            ),
            (
                "route: {receiver: a}\nreceivers:\n  - name: a\n    email_configs: [{to: x}]\n",
                "receivers.0.email_configs: unknown key",
            ),
            (
                MINIMAL + "delivery: {max_backoff: 1s, initial_backoff: 2s}\n",
                "delivery: expected max_backoff to be at least initial_backoff",
            ),
            (
                MINIMAL + "delivery: {rate_limits: {slack: 0}}\n",
                "delivery.rate_limits.slack: Input should be greater than 0 (got 0)",
            ),
            (
                MINIMAL + "delivery: {rate_limits: {email: 1}}\n",
                "delivery.rate_limits.email: unknown key",
            ),
            (MINIMAL + "kafka: {input_topic: x}\n", "kafka.input_topic: unknown key"),
            (
                MINIMAL + "kafka: {checkpoint_interval_s: 0}\n",
                "kafka.checkpoint_interval_s: Input should be greater than 0 (got 0)",
            ),
            (MINIMAL + "route_x: 1\n", "route_x: unknown key"),
            ("- a\n", "<top level>: expected a mapping"),
            ("route: [\n", "not valid YAML at line"),
        ],
    )
    def test_messages(self, tmp_path: Path, text: str, message: str) -> None:
        """A bad config fails naming the file, the exact key path and what was expected."""
        assert message in error(tmp_path, text)

    def test_all_problems_at_once(self, tmp_path: Path) -> None:
        """Several cross-check problems are reported together."""
        message = error(
            tmp_path,
            "route:\n  receiver: x\n  routes: [{receiver: y}]\nreceivers: [{name: a}]\n",
        )
        assert "route.receiver: expected" in message and "route.routes.0.receiver" in message

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing config file is a ConfigError naming it."""
        with pytest.raises(ConfigError, match="cannot read config file"):
            load_router_settings(tmp_path / "absent.yaml", env={})


SECRETS = {
    "slack": "https://hooks.slack.com/services/T000/B000/SLACKSECRETxyz",
    "pd": "PDSECRET-wrong-length",
    "hook": "not-a-url-HOOKSECRET",
    "misplaced": "https://hooks.slack.com/services/T000/B000/MISPLACEDSECRET",
    "sasl": "SASLSECRETpassword",
    "am": "AMSECRET:9093",
}


def _assert_hidden(exc: BaseException) -> None:
    """Neither the error nor anything chained to it shows a secret value."""
    seen: BaseException | None = exc
    while seen is not None:
        for text in (str(seen), repr(seen)):
            for value in SECRETS.values():
                for part in (value, value.split("/")[-1]):
                    assert part not in text, f"secret {part!r} echoed in {text!r}"
        seen = seen.__cause__ or seen.__context__


class TestSecretsNeverEchoed:
    @pytest.mark.parametrize(
        "text",
        [
            # A slack api_url that is not a URL (and a valid one, with api_url_file as well).
            f"route: {{receiver: a}}\nreceivers:\n  - name: a\n    slack_configs: [{{api_url: '{SECRETS['hook']}'}}]\n",
            f"route: {{receiver: a}}\nreceivers:\n  - name: a\n    slack_configs: [{{api_url: '{SECRETS['slack']}', api_url_file: /f}}]\n",
            # A routing key of the wrong length, or of the wrong type.
            f"route: {{receiver: a}}\nreceivers:\n  - name: a\n    pagerduty_configs: [{{routing_key: '{SECRETS['pd']}'}}]\n",
            f"route: {{receiver: a}}\nreceivers:\n  - name: a\n    pagerduty_configs: [{{routing_key: ['{SECRETS['pd']}']}}]\n",
            # A webhook url that is not a URL.
            f"route: {{receiver: a}}\nreceivers:\n  - name: a\n    webhook_configs: [{{url: '{SECRETS['hook']}'}}]\n",
            f"route: {{receiver: a}}\nreceivers:\n  - name: a\n    alertmanager_configs: [{{url: '{SECRETS['am']}'}}]\n",
            # A secret URL where a config mapping was expected.
            f"route: {{receiver: a}}\nreceivers:\n  - name: a\n    slack_configs: ['{SECRETS['misplaced']}']\n",
            f"route: {{receiver: a}}\nreceivers:\n  - name: a\n    webhook_configs: '{SECRETS['misplaced']}'\n",
            # A librdkafka secret of the wrong type, and a list where a mapping belongs.
            f"{MINIMAL}kafka:\n  librdkafka: {{sasl.password: ['{SECRETS['sasl']}']}}\n",
            f"{MINIMAL}kafka:\n  librdkafka: ['sasl.password={SECRETS['sasl']}']\n",
            f"{MINIMAL}kafka: ['{SECRETS['sasl']}']\n",
            # Any key that is_secret_key calls secret.
            f"{MINIMAL}kafka:\n  librdkafka: {{ssl.key.password: {{x: '{SECRETS['sasl']}'}}}}\n",
        ],
    )
    def test_config_errors(self, tmp_path: Path, text: str) -> None:
        """No config error shows a secret value: no (got ...) for secrets, mappings or lists."""
        path = write(tmp_path, text)
        with pytest.raises(ConfigError) as info:
            load_router_settings(path, env={})
        assert str(path) in str(info.value)
        _assert_hidden(info.value)

    def test_direct_validation_error(self) -> None:
        """Even the raw pydantic error of RouterSettings shows no input value."""
        tree = {
            "route": {"receiver": "a"},
            "receivers": [{"name": "a", "webhook_configs": [{"url": SECRETS["hook"]}]}],
        }
        with pytest.raises(ValidationError) as info:
            RouterSettings.model_validate(tree)
        _assert_hidden(info.value)

    def test_secret_file_content(self, tmp_path: Path) -> None:
        """A secret file holding a bad value is named, its content never shown."""
        (tmp_path / "pd.key").write_text(SECRETS["pd"] + "\n")
        path = write(
            tmp_path,
            "route: {receiver: a}\nreceivers:\n  - name: a\n"
            "    pagerduty_configs: [{routing_key_file: pd.key}]\n",
        )
        with pytest.raises(SecretError) as info:
            load_router_settings(path, env={})
        message = str(info.value)
        assert (
            f"receivers.0.pagerduty_configs.0.routing_key_file: expected the file "
            f"{tmp_path / 'pd.key'} to hold a 32-character integration key" in message
        )
        _assert_hidden(info.value)

    def test_sidecar_config_too(self, tmp_path: Path) -> None:
        """The sidecar's loader shares the rule: librdkafka values are never shown."""
        path = write(tmp_path, f"kafka:\n  librdkafka: {{sasl.password: ['{SECRETS['sasl']}']}}\n")
        with pytest.raises(
            ConfigError, match=r"kafka\.librdkafka\.sasl\.password: expected a string"
        ) as info:
            load_settings(path, env={})
        _assert_hidden(info.value)

    def test_repr_hides_librdkafka(self) -> None:
        """repr() of the Kafka settings leaves librdkafka (and its secrets) out."""
        kafka = RouterKafkaSettings(librdkafka={"sasl.password": SECRETS["sasl"]})
        assert SECRETS["sasl"] not in repr(kafka)


class TestEnvironmentAndFlags:
    def test_variables(self, tmp_path: Path) -> None:
        """Each DETECTOR_ROUTER_* variable sets its key."""
        env = {
            "DETECTOR_ROUTER_BOOTSTRAP_SERVERS": "k1:9092",
            "DETECTOR_ROUTER_ALERT_TOPIC": "env-alerts",
            "DETECTOR_ROUTER_GROUP_ID": "env-group",
            "DETECTOR_ROUTER_HTTP_PORT": "9200",
            "DETECTOR_ROUTER_LOG_LEVEL": "warning",
            "DETECTOR_ROUTER_LOG_FORMAT": "json",
        }
        settings = load_router_settings(write(tmp_path, MINIMAL), env=env)
        kafka = settings.kafka
        assert (kafka.bootstrap_servers, kafka.alert_topic, kafka.group_id) == (
            "k1:9092",
            "env-alerts",
            "env-group",
        )
        assert kafka.state == "env-alerts.router-state"
        assert settings.server.port == 9200
        assert (settings.log.level, settings.log.format) == ("warning", "json")

    def test_kafka_bootstrap_servers(self, tmp_path: Path) -> None:
        """KAFKA_BOOTSTRAP_SERVERS is honoured; the router's own variable beats it."""
        path = write(tmp_path, MINIMAL)
        generic = {"KAFKA_BOOTSTRAP_SERVERS": "generic:9092"}
        assert load_router_settings(path, env=generic).kafka.bootstrap_servers == "generic:9092"
        both = {**generic, "DETECTOR_ROUTER_BOOTSTRAP_SERVERS": "router:9092"}
        assert load_router_settings(path, env=both).kafka.bootstrap_servers == "router:9092"

    def test_precedence(self, tmp_path: Path) -> None:
        """Flags beat the environment, which beats the file, which beats the defaults."""
        path = write(tmp_path, MINIMAL + "kafka: {alert_topic: file-topic, group_id: file-group}\n")
        settings = load_router_settings(
            path,
            env={
                "DETECTOR_ROUTER_ALERT_TOPIC": "env-topic",
                "DETECTOR_ROUTER_GROUP_ID": "env-group",
            },
            overrides={("kafka", "alert_topic"): "flag-topic", ("kafka", "group_id"): None},
        )
        assert settings.kafka.alert_topic == "flag-topic"
        assert settings.kafka.group_id == "env-group"
        assert settings.kafka.checkpoint_interval_s == 1.0

    def test_empty_variable_ignored(self, tmp_path: Path) -> None:
        """An empty variable does not override the file."""
        path = write(tmp_path, MINIMAL + "kafka: {group_id: file-group}\n")
        settings = load_router_settings(path, env={"DETECTOR_ROUTER_GROUP_ID": ""})
        assert settings.kafka.group_id == "file-group"

    def test_bad_variable_named(self, tmp_path: Path) -> None:
        """An error caused by a variable names it in the source."""
        path = write(tmp_path, MINIMAL)
        with pytest.raises(ConfigError) as info:
            load_router_settings(path, env={"DETECTOR_ROUTER_HTTP_PORT": "http"})
        assert str(info.value).startswith(f"{path} + $DETECTOR_ROUTER_HTTP_PORT: server.port:")

    def test_no_file(self) -> None:
        """Without a file the route is missing, and the error says so."""
        with pytest.raises(ConfigError, match=r"^<defaults>: route: required key missing"):
            load_router_settings(env={})

    def test_process_environment_by_default(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With env=None the process environment is read."""
        monkeypatch.setenv("DETECTOR_ROUTER_GROUP_ID", "from-os")
        assert load_router_settings(write(tmp_path, MINIMAL)).kafka.group_id == "from-os"


class TestIntegrations:
    def test_from_config(self, tmp_path: Path) -> None:
        """Receiver -> integrations in config order, with ids, endpoints, secrets, options."""
        found = integrations(load(tmp_path, FULL))
        assert list(found) == ["team", "pager"]
        team, pager = found["team"], found["pager"]
        assert [i.id for i in team] == ["team/slack/0", "team/slack/1", "team/webhook/0"]
        assert [i.id for i in pager] == ["pager/pagerduty/0", "pager/alertmanager/0"]
        slack = team[0]
        assert (slack.receiver, slack.kind) == ("team", "slack")
        assert slack.url == "https://hooks.slack.com/services/T/B/one"
        assert slack.secrets == (slack.url,)
        assert slack.options["channel"] == "#ml"
        assert team[1].options["channel"] is None
        hook = team[2]
        assert hook.url == hook.secrets[0] == "https://hooks.example/drift?token=t"
        pagerduty = pager[0]
        assert pagerduty.url == "https://events.pagerduty.com/v2/enqueue"
        assert pagerduty.secrets == (PD_KEY,)
        assert pagerduty.options == {"routing_key": PD_KEY, "source": "drift-detector"}
        manager = pager[1]
        assert manager.url == "http://alertmanager:9093/api/v2/alerts"
        assert manager.secrets == ()
        assert manager.options == {"evidence_url": "https://ui.example/alerts/{alert_id}"}

    def test_receiver_without_integrations(self, tmp_path: Path) -> None:
        """A receiver may have no integrations (alerts routed to it are dropped)."""
        assert integrations(load(tmp_path, MINIMAL)) == {"team": []}

    def test_secret_files(self, tmp_path: Path) -> None:
        """*_file secrets are read as UTF-8, trailing newlines stripped, relative to the config."""
        (tmp_path / "slack.url").write_text("https://hooks.slack.com/services/T/B/f\n\n")
        (tmp_path / "pd.key").write_text(PD_KEY + "\r\n")
        secret_dir = tmp_path / "secrets"
        secret_dir.mkdir()
        (secret_dir / "hook.url").write_text("https://hooks.example/f")
        settings = load(
            tmp_path,
            "route: {receiver: a}\nreceivers:\n  - name: a\n"
            "    slack_configs: [{api_url_file: slack.url}]\n"
            "    pagerduty_configs: [{routing_key_file: pd.key}]\n"
            f"    webhook_configs: [{{url_file: {secret_dir / 'hook.url'}}}]\n",
        )
        slack, pd, hook = integrations(settings)["a"]
        assert slack.url == "https://hooks.slack.com/services/T/B/f"
        assert pd.options["routing_key"] == PD_KEY and pd.secrets == (PD_KEY,)
        assert hook.url == "https://hooks.example/f" and hook.secrets == (hook.url,)

    @pytest.mark.parametrize(
        ("content", "problem"),
        [
            (None, "cannot read secret file {file}: No such file or directory"),
            (b"", "secret file {file} is empty"),
            (b"\n\n", "secret file {file} is empty"),
            (b"\xff\xfeSECRET", "secret file {file} is not UTF-8 text"),
            (
                b"HOOKSECRET-not-a-url\n",
                "expected the file {file} to hold an http:// or https:// URL",
            ),
        ],
    )
    def test_bad_secret_file_fails_at_start_up(
        self, tmp_path: Path, content: bytes | None, problem: str
    ) -> None:
        """A missing, empty, non-UTF-8 or invalid secret file fails loading, naming key and file."""
        file = tmp_path / "hook.url"
        if content is not None:
            file.write_bytes(content)
        path = write(
            tmp_path,
            "route: {receiver: a}\nreceivers:\n  - name: a\n    webhook_configs: [{url_file: hook.url}]\n",
        )
        with pytest.raises(SecretError) as info:
            load_router_settings(path, env={})
        expected = f"{path}: receivers.0.webhook_configs.0.url_file: {problem.format(file=file)}"
        assert str(info.value) == expected
        assert "SECRET" not in str(info.value)
        assert info.value.__context__ is None or "SECRET" not in str(info.value.__context__)


class _Model(BaseModel):
    port: int
    password: str
    nested: dict[str, int]


class TestSharedConfigCode:
    def test_read_config_tree(self, tmp_path: Path) -> None:
        """read_config_tree gives the YAML mapping and the source name ({} for none)."""
        path = write(tmp_path, "a: {b: 1}\n")
        assert read_config_tree(path) == ({"a": {"b": 1}}, str(path))
        assert read_config_tree(None) == ({}, "<defaults>")
        assert read_config_tree(write(tmp_path, "", "empty.yaml"))[0] == {}

    def test_describe_errors(self) -> None:
        """One line per error; (got ...) only for plain values under non-secret keys."""
        with pytest.raises(ValidationError) as info:
            _Model.model_validate({"port": "x", "password": 5, "nested": ["SECRET"], "extra": 1})
        text = describe_errors(info.value)
        assert (
            "port: Input should be a valid integer, unable to parse string as an integer (got 'x')"
            in text
        )
        assert re.search(r"password: Input should be a valid string(;|$)", text)
        assert re.search(r"nested: Input should be a valid dictionary(;|$)", text)
        assert "SECRET" not in text

    def test_describe_errors_secret_keys(self) -> None:
        """Keys passed as secret_keys are never shown either."""
        with pytest.raises(ValidationError) as info:
            _Model.model_validate({"port": "x", "password": "p", "nested": {}})
        assert describe_errors(info.value, secret_keys={"port"}) == (
            "port: Input should be a valid integer, unable to parse string as an integer"
        )

    def test_kafka_settings_share_the_connection(self) -> None:
        """Both Kafka sections extend KafkaClientSettings with the same connection keys."""
        assert issubclass(KafkaSettings, KafkaClientSettings)
        assert issubclass(RouterKafkaSettings, KafkaClientSettings)
        shared = {"bootstrap_servers", "session_timeout_ms", "librdkafka"}
        assert shared <= set(KafkaSettings.model_fields)
        assert shared <= set(RouterKafkaSettings.model_fields)
        kafka = RouterKafkaSettings.model_validate(
            {"librdkafka": {"sasl.password": "file:/run/pw", "x": 1, "y": True}}
        )
        assert kafka.librdkafka == {"sasl.password": "file:/run/pw", "x": 1, "y": True}
