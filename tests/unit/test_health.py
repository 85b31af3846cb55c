from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from detector.ops.health import Health, HttpServer
from detector.ops.metrics import Metrics

TOPIC = "predictions"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _ready_health(clock: FakeClock, *partitions: int) -> Health:
    health = Health(stall_threshold_s=60.0, liveness_timeout_s=30.0, clock=clock)
    health.assigned([(TOPIC, p) for p in partitions])
    for p in partitions:
        health.restored(TOPIC, p)
    return health


class TestHealth:
    def test_alive_while_the_loop_beats(self) -> None:
        """The loop is alive at start-up (grace) and as long as it beats within the timeout."""
        clock = FakeClock()
        health = Health(stall_threshold_s=60.0, liveness_timeout_s=30.0, clock=clock)
        assert health.liveness().ok
        clock.advance(29)
        health.beat()
        clock.advance(29)
        assert health.liveness().ok

    def test_not_alive_when_the_loop_stops_beating(self) -> None:
        """No beat for longer than the liveness timeout: not alive, and not ready either."""
        clock = FakeClock()
        health = _ready_health(clock, 0)
        clock.advance(31)
        check = health.liveness()
        assert not check.ok
        assert "consumer loop has not run" in check.reasons[0]
        assert check.body["status"] == "unavailable"
        assert not health.readiness().ok

    def test_fatal_error_kills_liveness(self) -> None:
        """After fail(reason) the process is not alive, whatever the heartbeat says."""
        health = Health(clock=FakeClock())
        health.fail("producer fenced")
        health.beat()
        assert health.liveness().reasons == ("fatal: producer fenced",)

    def test_liveness_timeout_defaults_to_stall_threshold(self) -> None:
        """Without an explicit liveness timeout, the stall threshold is used."""
        assert Health(stall_threshold_s=12.0).liveness_timeout_s == 12.0

    def test_not_ready_before_joining_the_group(self) -> None:
        """Before the first assignment the consumer has not joined: not ready."""
        health = Health(clock=FakeClock())
        assert health.readiness().reasons == ("consumer group not joined",)
        health.set_joined()
        assert health.readiness().ok

    def test_ready_with_no_partitions_once_joined(self) -> None:
        """An instance that joined but got no partitions is idle, and ready."""
        health = Health(clock=FakeClock())
        health.assigned([])
        assert health.readiness().ok

    def test_not_ready_until_every_partition_is_restored(self) -> None:
        """Assigned partitions are not ready until their state is restored."""
        health = Health(clock=FakeClock())
        health.assigned([(TOPIC, 0), (TOPIC, 1)])
        assert health.readiness().reasons == (
            f"partition {TOPIC}/0: state not restored",
            f"partition {TOPIC}/1: state not restored",
        )
        health.restored(TOPIC, 0)
        assert health.readiness().reasons == (f"partition {TOPIC}/1: state not restored",)
        health.restored(TOPIC, 1)
        assert health.readiness().ok

    def test_stalled_partition_with_lag_is_not_ready(self) -> None:
        """A partition with pending messages and no progress past the threshold: not ready."""
        clock = FakeClock()
        health = _ready_health(clock, 0, 1)
        health.set_lag(TOPIC, 0, 100)
        clock.advance(59)
        health.beat()
        health.progress(TOPIC, 1, lag=0)
        assert health.readiness().ok
        clock.advance(2)
        health.beat()
        check = health.readiness()
        assert not check.ok
        (reason,) = check.reasons
        assert reason.startswith(f"partition {TOPIC}/0: no progress for 61.0s")
        assert "100 pending messages" in reason
        assert check.body["partitions"][f"{TOPIC}/0"]["lag"] == 100

    def test_progress_clears_a_stall(self) -> None:
        """Progress on the stalled partition makes the instance ready again."""
        clock = FakeClock()
        health = _ready_health(clock, 0)
        health.set_lag(TOPIC, 0, 10)
        clock.advance(120)
        health.beat()
        assert not health.readiness().ok
        health.progress(TOPIC, 0, lag=5)
        assert health.readiness().ok

    def test_idle_partition_without_lag_is_never_stalled(self) -> None:
        """No pending messages, no stall, however long since the last progress."""
        clock = FakeClock()
        health = _ready_health(clock, 0)
        health.set_lag(TOPIC, 0, 0)
        clock.advance(3600)
        health.beat()
        assert health.readiness().ok

    def test_stall_clock_starts_when_messages_become_pending(self) -> None:
        """
        After a long idle spell, new pending messages get the full threshold from the moment
        they appear, not from the last progress an hour ago.
        """
        clock = FakeClock()
        health = _ready_health(clock, 0)
        clock.advance(3600)
        health.set_lag(TOPIC, 0, 3)
        health.beat()
        assert health.readiness().ok
        clock.advance(61)
        health.beat()
        assert not health.readiness().ok

    def test_revoked_partitions_are_forgotten(self) -> None:
        """A revoked (or lost) partition no longer counts against readiness."""
        clock = FakeClock()
        health = _ready_health(clock, 0)
        health.assigned([(TOPIC, 1)])
        assert not health.readiness().ok
        health.revoked([(TOPIC, 1), (TOPIC, 9)])
        assert health.readiness().ok

    def test_leaving_the_group_is_not_ready(self) -> None:
        """set_joined(False) drops the assignment and makes the instance not ready."""
        health = _ready_health(FakeClock(), 0)
        health.set_joined(False)
        check = health.readiness()
        assert check.reasons == ("consumer group not joined",)
        assert check.body["partitions"] == {}


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers["Content-Type"], error.read()


@pytest.fixture
def served() -> Iterator[tuple[HttpServer, Health, Metrics, FakeClock]]:
    clock = FakeClock()
    health = Health(stall_threshold_s=60.0, liveness_timeout_s=30.0, clock=clock)
    metrics = Metrics(process_metrics=False)
    server = HttpServer(health, metrics, port=0)
    server.start()
    try:
        yield server, health, metrics, clock
    finally:
        server.stop()


def _json(body: bytes) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(body)
    return result


class TestHttpServer:
    def test_binds_loopback_on_a_free_port(
        self, served: tuple[HttpServer, Health, Metrics, FakeClock]
    ) -> None:
        """Port 0 picks a free port, exposed as ``port``; the default host is loopback."""
        server = served[0]
        assert server.port > 0
        assert server.host == "127.0.0.1"
        assert server.url == f"http://127.0.0.1:{server.port}"

    def test_healthz_alive_and_not_alive(
        self, served: tuple[HttpServer, Health, Metrics, FakeClock]
    ) -> None:
        """/healthz: 200 and status ok while beating, 503 with the reason when not."""
        server, health, _, clock = served
        status, content_type, body = _get(server.url + "/healthz")
        assert (status, content_type) == (200, "application/json")
        assert _json(body)["status"] == "ok"

        clock.advance(31)
        status, _, body = _get(server.url + "/healthz")
        assert status == 503
        payload = _json(body)
        assert payload["status"] == "unavailable"
        assert "consumer loop has not run" in payload["reasons"][0]

        health.beat()
        assert _get(server.url + "/healthz")[0] == 200

    def test_readyz_ready_and_not_ready(
        self, served: tuple[HttpServer, Health, Metrics, FakeClock]
    ) -> None:
        """
        /readyz: 503 before joining, 503 while a partition is not restored, 200 when ready,
        503 with the stalled partition named when it stalls.
        """
        server, health, _, clock = served
        status, _, body = _get(server.url + "/readyz")
        assert (status, _json(body)["reasons"]) == (503, ["consumer group not joined"])

        health.assigned([(TOPIC, 0)])
        status, _, body = _get(server.url + "/readyz")
        assert status == 503
        assert _json(body)["reasons"] == [f"partition {TOPIC}/0: state not restored"]

        health.restored(TOPIC, 0)
        status, _, body = _get(server.url + "/readyz")
        payload = _json(body)
        assert (status, payload["status"]) == (200, "ok")
        assert payload["partitions"][f"{TOPIC}/0"]["restored"] is True

        health.set_lag(TOPIC, 0, 7)
        clock.advance(61)
        health.beat()
        status, _, body = _get(server.url + "/readyz?verbose=1")
        assert status == 503
        assert _json(body)["reasons"][0].startswith(f"partition {TOPIC}/0: no progress")

    def test_metrics_endpoint(self, served: tuple[HttpServer, Health, Metrics, FakeClock]) -> None:
        """/metrics serves Metrics.render() with the Prometheus content type."""
        server, _, metrics, _ = served
        metrics.alert("churn", "feature")
        status, content_type, body = _get(server.url + "/metrics")
        assert (status, content_type) == (200, CONTENT_TYPE_LATEST)
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        (sample,) = families["drift_detector_alerts_emitted"].samples
        assert sample.value == 1
        assert sample.labels == {"model": "churn", "drift_type": "feature"}

    def test_unknown_path_is_404(
        self, served: tuple[HttpServer, Health, Metrics, FakeClock]
    ) -> None:
        """Anything else is a 404 listing the endpoints."""
        server = served[0]
        status, _, body = _get(server.url + "/nope")
        assert status == 404
        assert "/readyz" in _json(body)["paths"]

    def test_errors_in_a_check_give_500_and_the_server_survives(
        self, served: tuple[HttpServer, Health, Metrics, FakeClock]
    ) -> None:
        """A failing check answers 500 with the error type; the next request is served."""
        server, health, _, _ = served

        def broken() -> None:
            raise RuntimeError("boom")

        health.liveness = broken  # type: ignore[method-assign,assignment]
        status, _, body = _get(server.url + "/healthz")
        assert (status, _json(body)["reasons"]) == (500, ["RuntimeError"])
        assert _get(server.url + "/readyz")[0] == 503

    def test_stop_is_idempotent_and_works_without_start(self) -> None:
        """stop() twice, or without start(), does not raise."""
        server = HttpServer(Health(), port=0)
        server.stop()
        with HttpServer(Health(), port=0) as running:
            assert _get(running.url + "/metrics")[0] == 404  # no Metrics given
        running.stop()
