from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from detector.config import LogSettings
from detector.log import configure_logging, default_to_stderr, get_logger, redact_secrets


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if type(handler).__name__ == "_OurHandler":
            root.removeHandler(handler)
    root.setLevel(logging.WARNING)


class TestConfigureLogging:
    def test_json_lines_carry_bound_context_as_keys(self) -> None:
        """
        In JSON format every line is one JSON object with timestamp, level and event, and
        context bound with contextvars (model, feature, partition) appears as top-level keys.
        """
        out = io.StringIO()
        assert configure_logging(LogSettings(format="json"), out) == "json"
        log = get_logger("runner")

        with structlog.contextvars.bound_contextvars(model="churn", partition=3):
            log.info("drift detected", feature="age")
        log.info("after")

        first, second = _lines(out)
        assert first["event"] == "drift detected"
        assert first["level"] == "info"
        assert first["logger"] == "runner"
        assert (first["model"], first["feature"], first["partition"]) == ("churn", "age", 3)
        assert first["timestamp"].endswith("Z")
        assert "model" not in second and "partition" not in second

    def test_auto_picks_json_off_a_terminal_and_console_on_one(self) -> None:
        """
        ``auto`` writes JSON to a stream that is not a terminal and the console format to one.
        """
        assert configure_logging(LogSettings(format="auto"), io.StringIO()) == "json"
        tty = _Tty()
        assert configure_logging(LogSettings(format="auto"), tty) == "console"
        get_logger().info("hello", partition=1)
        text = tty.getvalue()
        assert "hello" in text and "partition" in text
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)

    def test_console_format_on_a_plain_stream(self) -> None:
        """``console`` is honoured on a non-terminal stream too (without colours)."""
        out = io.StringIO()
        assert configure_logging(LogSettings(format="console"), out) == "console"
        get_logger().warning("plain", model="m")
        assert "plain" in out.getvalue()
        assert "\x1b[" not in out.getvalue()

    def test_events_below_the_level_are_dropped(self) -> None:
        """With level ``warning``, debug and info events are not written; warnings are."""
        out = io.StringIO()
        configure_logging(LogSettings(level="warning", format="json"), out)
        log = get_logger()
        log.debug("d")
        log.info("i")
        log.warning("w")
        log.error("e")
        assert [line["event"] for line in _lines(out)] == ["w", "e"]

    def test_debug_level_writes_debug_events(self) -> None:
        """With level ``debug`` debug events are written."""
        out = io.StringIO()
        configure_logging(LogSettings(level="debug", format="json"), out)
        get_logger().debug("d")
        assert _lines(out)[0]["level"] == "debug"

    def test_exceptions_are_formatted_into_the_line(self) -> None:
        """``log.exception`` puts the formatted traceback under ``exception``, in one line."""
        out = io.StringIO()
        configure_logging(LogSettings(format="json"), out)
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            get_logger().exception("failed")
        (line,) = _lines(out)
        assert line["level"] == "error"
        assert "RuntimeError: boom" in line["exception"]

    def test_secret_values_are_redacted(self) -> None:
        """
        Values of secret-looking keys are replaced with ``***``: top level, bound context and
        nested mappings; other keys, and secrets' non-secret neighbours, are kept.
        """
        out = io.StringIO()
        configure_logging(LogSettings(format="json"), out)
        with structlog.contextvars.bound_contextvars(api_token="t0k3n"):
            get_logger().info(
                "config",
                password="hunter2",
                webhook_url="https://hooks.example/abc",
                routing_key="rk-1",
                librdkafka={
                    "sasl.password": "pw",
                    "ssl.key.password": "kp",
                    "sasl.oauthbearer.client.secret": "cs",
                    "sasl.username": "alice",
                    "sasl.oauthbearer.token.endpoint.url": "https://idp/token",
                },
                model="churn",
            )
        text = out.getvalue()
        for secret in ("t0k3n", "hunter2", "hooks.example", "rk-1", '"pw"', '"kp"', '"cs"'):
            assert secret not in text
        (line,) = _lines(out)
        assert line["password"] == line["webhook_url"] == line["routing_key"] == "***"
        assert line["api_token"] == "***"
        assert line["librdkafka"]["sasl.password"] == "***"
        assert line["librdkafka"]["sasl.username"] == "alice"
        assert line["librdkafka"]["sasl.oauthbearer.token.endpoint.url"] == "https://idp/token"
        assert line["model"] == "churn"

    def test_standard_logging_records_are_rendered_the_same_way(self) -> None:
        """
        Records of the standard logging module (librdkafka's, say) come out as JSON lines with
        the logger name, filtered by level and redacted.
        """
        out = io.StringIO()
        configure_logging(LogSettings(level="info", format="json"), out)
        std = logging.getLogger("librdkafka")
        std.debug("hidden")
        std.info("broker up", extra={"sasl_password": "x"})
        (line,) = _lines(out)
        assert line["event"] == "broker up"
        assert line["logger"] == "librdkafka"
        assert line["level"] == "info"
        assert line["sasl_password"] == "***"

    def test_reconfiguring_replaces_the_previous_configuration(self) -> None:
        """A second call redirects existing loggers to the new stream and level."""
        first, second = io.StringIO(), io.StringIO()
        log = get_logger("module")  # as at import time, before any configuration
        configure_logging(LogSettings(format="json"), first)
        configure_logging(LogSettings(format="json", level="error"), second)
        log.info("dropped")
        log.error("kept")
        logging.getLogger("x").error("std kept")
        assert first.getvalue() == ""
        lines = _lines(second)
        assert [line["event"] for line in lines] == ["kept", "std kept"]
        assert lines[0]["logger"] == "module"


class TestRedactSecrets:
    def test_processor_leaves_ordinary_keys_alone(self) -> None:
        """The processor only touches secret keys and mappings that contain them."""
        event = {"event": "e", "partition": 1, "nested": {"token": "t", "n": 2}, "secret": "s"}
        result = redact_secrets(None, "info", dict(event))
        assert result == {
            "event": "e",
            "partition": 1,
            "nested": {"token": "***", "n": 2},
            "secret": "***",
        }


class TestDefaultToStderr:
    def test_a_command_that_configures_nothing_logs_to_stderr(self, capsys: Any) -> None:
        structlog.reset_defaults()
        default_to_stderr()
        get_logger().info("topic created", topic="t.control")
        out, err = capsys.readouterr()
        assert out == ""
        assert "topic created" in err and "t.control" in err

    def test_a_configuration_made_before_is_kept(self) -> None:
        stream = io.StringIO()
        configure_logging(LogSettings(format="json"), stream)
        default_to_stderr()
        get_logger().warning("kept")
        assert [line["event"] for line in _lines(stream)] == ["kept"]
