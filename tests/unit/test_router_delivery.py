"""The send stage: retries, backoff, Retry-After gates, rate limits, stop, and workers.

Time is a fake clock whose waits advance it at once (and are recorded), so nothing sleeps;
HTTP is ``httpx.MockTransport``, except for one test against a local ``http.server``.
"""

from __future__ import annotations

import http.server
import logging
import queue
import random
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from detector.router.delivery import (
    DeliveryReport,
    DeliveryWorkers,
    Gate,
    RateLimiter,
    RetryPolicy,
    Sender,
    SendFailed,
    SystemClock,
    deliver,
)
from detector.router.model import (
    ACCEPTED,
    HttpRequest,
    Integration,
    Notification,
    Outcome,
    RoutedAlert,
)
from detector.router.notify.base import Notifier
from detector.router.notify.evidence import classify_http

SECRET = "T000/B000/XyZsEcReT123"
SECRET_URL = f"https://hooks.example.test/services/{SECRET}"
WALL0_MS = 1_700_000_000_000


# --- helpers -------------------------------------------------------------------------------


class FakeClock:
    """Monotonic time that only moves when waited on; every wait is recorded."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wall_ms(self) -> int:
        return WALL0_MS + round(self.now * 1000)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        self.waits.append(seconds)
        if event.is_set():
            return True
        self.now += seconds
        return event.is_set()


class FrozenClock(FakeClock):
    """Time stands still and a wait blocks (for real) until the event is set: a delivery
    waiting on a retry stays blocked until the workers are stopped."""

    def wait(self, event: threading.Event, seconds: float) -> bool:
        self.waits.append(seconds)
        return event.wait(30.0)


class MaxRandom(random.Random):
    """Jitter that always picks the upper bound, so backoffs are exact."""

    def uniform(self, a: float, b: float) -> float:
        return b


class InFlight:
    def __init__(self) -> None:
        self.values: list[int] = []

    def set_in_flight(self, n: int) -> None:
        self.values.append(n)


class FakeNotifier:
    """Sends the group key as the body; answers as the real notifiers' shared table
    (:func:`classify_http`) has them, any 2xx accepted: 429 ``rate_limited`` and 5xx
    retryable (with Retry-After), other 4xx permanent."""

    def __init__(self, integration: Integration) -> None:
        self.integration = integration

    def request(self, notification: Notification) -> HttpRequest:
        return HttpRequest(
            "POST",
            self.integration.url,
            {"Content-Type": "application/json"},
            notification.group_key.encode(),
        )

    def classify(self, status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
        return classify_http(
            status,
            headers,
            body,
            self.integration.secrets,
            accepted=lambda code, _body: 200 <= code <= 299,
        )


def integration(
    integration_id: str = "team-ml/webhook/0", url: str = "http://receiver.test/hook"
) -> Integration:
    receiver = integration_id.split("/")[0]
    return Integration(integration_id, receiver, "webhook", url, secrets=(SECRET,))


def notification(integ: Integration, group_key: str = "{}:{model=churn}") -> Notification:
    alert = RoutedAlert(
        "a-1", {"model": "churn"}, WALL0_MS - 5_000, {"alert_id": "a-1", "model": "churn"}
    )
    return Notification(
        integration=integ,
        route_id="root/0",
        group_key=group_key,
        group_labels={"model": "churn"},
        status="firing",
        alerts=(alert,),
        new_ids=frozenset({"a-1"}),
        created_ms=WALL0_MS,
        resolve_timeout_ms=300_000,
    )


Answer = httpx.Response | Exception


class Receiver:
    """A MockTransport handler answering from a script (the last answer repeats) and
    recording the fake time and body of every request."""

    def __init__(self, clock: FakeClock, answers: list[Answer]) -> None:
        self.clock = clock
        self.answers = list(answers)
        self.times: list[float] = []
        self.bodies: list[bytes] = []
        self.on_request: Callable[[], None] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.times.append(self.clock.monotonic())
        self.bodies.append(request.read())
        if self.on_request is not None:
            self.on_request()
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def sender(self) -> Sender:
        return Sender(5.0, transport=httpx.MockTransport(self))


def policy(initial: float = 1.0, maximum: float = 4.0, max_retry_time: float = 10.0) -> RetryPolicy:
    return RetryPolicy(initial, maximum, max_retry_time, MaxRandom())


def run(
    receiver: Receiver,
    notif: Notification,
    *,
    notifier: Notifier | None = None,
    retry: RetryPolicy | None = None,
    limiter: RateLimiter | None = None,
    gate: Gate | None = None,
    stop: threading.Event | None = None,
    sender: Sender | None = None,
) -> DeliveryReport:
    """Deliver ``notif`` to ``receiver`` (with a :class:`FakeNotifier` unless given one)."""
    return deliver(
        notifier or FakeNotifier(notif.integration),
        notif,
        sender=sender or receiver.sender(),
        policy=retry or policy(),
        limiter=limiter,
        gate=gate or Gate(),
        clock=receiver.clock,
        stop=stop or threading.Event(),
    )


def workers_for(
    integrations: Sequence[Integration],
    results: queue.Queue[DeliveryReport],
    *,
    max_retry_time_s: float = 60.0,
    rates: Mapping[str, float] | None = None,
    clock: FakeClock | None = None,
    sender: Sender | None = None,
    metrics: InFlight | None = None,
) -> DeliveryWorkers:
    """Delivery workers with a :class:`FakeNotifier` for each integration (5 s timeout,
    backoff from 1 s up to 4 s)."""
    return DeliveryWorkers(
        {integ.id: FakeNotifier(integ) for integ in integrations},
        timeout_s=5.0,
        initial_backoff_s=1.0,
        max_backoff_s=4.0,
        max_retry_time_s=max_retry_time_s,
        results=results,
        rates=rates,
        clock=clock,
        sender=sender,
        metrics=metrics,
    )


# --- policies ------------------------------------------------------------------------------


class TestRetryPolicy:
    def test_cap_doubles_up_to_the_maximum(self) -> None:
        retry = RetryPolicy(0.5, 4.0, 60.0, random.Random(1))
        assert [retry.cap(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
        assert retry.cap(10_000) == 4.0  # no overflow

    def test_full_jitter_stays_within_zero_and_the_cap(self) -> None:
        retry = RetryPolicy(0.5, 4.0, 60.0, random.Random(7))
        for n in range(8):
            for _ in range(50):
                assert 0.0 <= retry.backoff(n) <= retry.cap(n)

    def test_seeded_rng_is_reproducible(self) -> None:
        a = RetryPolicy(1.0, 30.0, 60.0, random.Random(3))
        b = RetryPolicy(1.0, 30.0, 60.0, random.Random(3))
        assert [a.backoff(n) for n in range(5)] == [b.backoff(n) for n in range(5)]


class TestRateLimiter:
    def test_spaces_requests_without_burst(self) -> None:
        limiter = RateLimiter(2.0)
        assert limiter.delay(10.0) == 0.0
        limiter.taken(10.0)
        assert limiter.delay(10.0) == 0.5
        assert limiter.delay(10.2) == pytest.approx(0.3)
        assert limiter.delay(10.5) == 0.0

    def test_rejects_a_non_positive_rate(self) -> None:
        with pytest.raises(ValueError):
            RateLimiter(0.0)


# --- deliver -------------------------------------------------------------------------------


class TestDeliver:
    def test_accepted_first_time(self) -> None:
        clock = FakeClock()
        receiver = Receiver(clock, [httpx.Response(200, text="ok")])
        notif = notification(integration())
        report = run(receiver, notif)
        assert report.outcome.accepted and report.outcome.reason == "accepted"
        assert (report.attempts, report.retries, report.abandoned) == (1, 0, False)
        assert report.first_attempt_ms == report.last_attempt_ms == WALL0_MS
        assert report.notification is notif
        assert receiver.bodies == [notif.group_key.encode()]
        assert clock.waits == []

    def test_server_error_then_accepted(self) -> None:
        clock = FakeClock()
        receiver = Receiver(clock, [httpx.Response(500), httpx.Response(200)])
        report = run(receiver, notification(integration()), retry=policy(initial=1.0))
        assert report.outcome.accepted
        assert (report.attempts, report.retries) == (2, 1)
        assert receiver.times == [0.0, 1.0]  # the first backoff (jitter at its maximum)
        assert report.first_attempt_ms == WALL0_MS
        assert report.last_attempt_ms == WALL0_MS + 1000

    def test_retry_after_is_honoured_exactly_and_gates_the_integration(self) -> None:
        clock = FakeClock()
        gate = Gate()
        receiver = Receiver(
            clock,
            [httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200)],
        )
        report = run(receiver, notification(integration()), retry=policy(0.5, 1.0, 60.0), gate=gate)
        assert report.outcome.accepted and report.attempts == 2
        assert receiver.times == [0.0, 7.0]  # max(jittered backoff <= 0.5, Retry-After 7)
        assert gate.not_before == 7.0

        # A Retry-After beyond max_retry_time: this notification gives up at once, and the
        # gate still holds back the next notification of the same integration.
        clock2 = FakeClock()
        gate2 = Gate()
        limited = Receiver(clock2, [httpx.Response(429, headers={"Retry-After": "7"})])
        first = run(
            limited, notification(integration(), "g1"), retry=policy(max_retry_time=5.0), gate=gate2
        )
        assert first.outcome.reason == "retries_exhausted"
        assert (first.outcome.status, first.attempts) == (429, 1)
        limited.answers = [httpx.Response(200)]
        second = run(limited, notification(integration(), "g2"), gate=gate2)
        assert second.outcome.accepted
        assert limited.times == [0.0, 7.0]
        assert limited.times[1] >= 7.0

    def test_client_error_is_permanent(self) -> None:
        clock = FakeClock()
        receiver = Receiver(clock, [httpx.Response(400, text="bad payload")])
        report = run(receiver, notification(integration()))
        assert not report.outcome.accepted and not report.outcome.retryable
        assert report.outcome.reason == "http_4xx"
        assert (report.outcome.status, report.outcome.body) == (400, "bad payload")
        assert (report.attempts, report.retries) == (1, 0)
        assert report.dead_letter and not report.abandoned

    def test_retries_exhausted_keeps_the_last_answer(self) -> None:
        clock = FakeClock()
        receiver = Receiver(
            clock,
            [
                httpx.Response(503, text="busy 1"),
                httpx.Response(503, text="busy 2"),
                httpx.Response(503, text="busy 3"),
                httpx.Response(502, text="still busy"),
            ],
        )
        report = run(receiver, notification(integration()), retry=policy(1.0, 4.0, 10.0))
        # Waits 1, 2, 4 (elapsed 7), then 4 more would end at 11 > 10: give up.
        assert receiver.times == [0.0, 1.0, 3.0, 7.0]
        assert report.outcome == Outcome(
            accepted=False,
            retryable=False,
            reason="retries_exhausted",
            status=502,
            body="still busy",
        )
        assert (report.attempts, report.retries) == (4, 3)
        assert report.dead_letter
        assert report.last_attempt_ms == WALL0_MS + 7000

    def test_network_error_is_retryable_and_never_shows_the_url(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        clock = FakeClock()
        integ = integration("slack-ml/slack/0", SECRET_URL)
        receiver = Receiver(
            clock,
            [
                httpx.ConnectError(f"cannot connect to {SECRET_URL}"),
                httpx.ReadTimeout(f"timed out reading {SECRET_URL}"),
                httpx.Response(503, text=f"error for {SECRET_URL}"),
                httpx.ConnectError(f"cannot connect to {SECRET_URL}"),
            ],
        )
        with capture_logs() as logs:
            report = run(receiver, notification(integ), retry=policy(1.0, 4.0, 10.0))
        assert report.attempts == 4
        assert report.outcome.reason == "retries_exhausted"
        assert report.outcome.status is None and report.outcome.body == ""
        reasons = [entry.get("reason") for entry in logs if "attempt" in entry]
        assert reasons == ["network", "timeout", "http_5xx", "network"]
        assert [entry.get("error") for entry in logs if "error" in entry] == [
            "ConnectError",
            "ReadTimeout",
            "ConnectError",
        ]
        for entry in logs:
            assert entry["integration"] == "slack-ml/slack/0"
            assert entry["receiver"] == "slack-ml"
        assert SECRET not in repr(logs)
        assert SECRET not in repr(report.outcome)
        assert SECRET not in caplog.text  # httpx's own "HTTP Request: POST <url>" line

    def test_send_failure_hides_the_url(self) -> None:
        def handler(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError(f"refused: {request.url}", request=request)

        sender = Sender(5.0, transport=httpx.MockTransport(handler))
        with pytest.raises(SendFailed) as caught:
            sender.send(HttpRequest("POST", SECRET_URL, {}, b"{}"))
        failure = caught.value
        assert failure.outcome == Outcome(accepted=False, retryable=True, reason="network")
        assert failure.error == "ConnectError"
        assert SECRET not in str(failure)
        assert failure.__context__ is None and failure.__cause__ is None

    def test_response_body_is_scrubbed_in_logs(self) -> None:
        clock = FakeClock()
        receiver = Receiver(clock, [httpx.Response(404, text=f"no such hook {SECRET}")])
        with capture_logs() as logs:
            report = run(receiver, notification(integration("slack-ml/slack/0", SECRET_URL)))
        assert report.outcome.reason == "http_4xx"
        assert SECRET not in repr(logs)
        assert any(entry.get("body") == "no such hook ***" for entry in logs)

    def test_rate_limit_queues_a_burst(self) -> None:
        clock = FakeClock()
        receiver = Receiver(clock, [httpx.Response(200)])
        sender = receiver.sender()
        limiter = RateLimiter(1.0)
        gate = Gate()
        integ = integration()
        reports = [
            run(receiver, notification(integ, f"g{i}"), limiter=limiter, gate=gate, sender=sender)
            for i in range(5)
        ]
        assert all(report.outcome.accepted for report in reports)
        assert receiver.times == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert receiver.bodies == [f"g{i}".encode() for i in range(5)]

    def test_stop_while_waiting_abandons(self) -> None:
        clock = FakeClock()
        stop = threading.Event()
        receiver = Receiver(clock, [httpx.Response(503, text="busy")])
        receiver.on_request = stop.set  # stop arrives during the first attempt
        report = run(receiver, notification(integration()), stop=stop)
        assert report.abandoned and not report.outcome.accepted and not report.dead_letter
        assert report.outcome.reason == "abandoned"
        assert (report.outcome.status, report.outcome.body) == (503, "busy")
        assert report.attempts == 1
        assert len(receiver.times) == 1

    def test_stopped_before_the_first_attempt_sends_nothing(self) -> None:
        clock = FakeClock()
        stop = threading.Event()
        stop.set()
        receiver = Receiver(clock, [httpx.Response(200)])
        report = run(receiver, notification(integration()), stop=stop)
        assert report.abandoned and report.attempts == 0
        assert report.first_attempt_ms is None and receiver.times == []

    def test_notifier_bug_ends_in_a_permanent_outcome(self) -> None:
        class Broken(FakeNotifier):
            def classify(self, status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
                raise KeyError("oops")

        receiver = Receiver(FakeClock(), [httpx.Response(200)])
        notif = notification(integration())
        report = run(receiver, notif, notifier=Broken(notif.integration))
        assert report.outcome.reason == "internal_error" and report.dead_letter


# --- workers -------------------------------------------------------------------------------


class TestDeliveryWorkers:
    def test_a_blocked_integration_does_not_hold_back_another(self) -> None:
        clock = FrozenClock()
        slow = integration("slow/webhook/0", "http://receiver.test/slow")
        fast = integration("fast/webhook/0", "http://receiver.test/fast")
        slow_called = threading.Event()

        def handler(request: httpx.Request) -> httpx.Response:
            if request.url.path == "/slow":
                slow_called.set()
                return httpx.Response(429, headers={"Retry-After": "60"})
            return httpx.Response(200)

        results: queue.Queue[DeliveryReport] = queue.Queue()
        in_flight = InFlight()
        workers = workers_for(
            [slow, fast],
            results,
            max_retry_time_s=3600.0,
            clock=clock,
            sender=Sender(5.0, transport=httpx.MockTransport(handler)),
            metrics=in_flight,
        )
        try:
            workers.submit(notification(slow, "s1"))
            workers.submit(notification(slow, "s2"))  # queued behind s1
            assert slow_called.wait(10.0)
            workers.submit(notification(fast, "f1"))
            workers.submit(notification(fast, "f2"))
            got = [results.get(timeout=10.0), results.get(timeout=10.0)]
            assert [r.notification.group_key for r in got] == ["f1", "f2"]
            assert all(r.outcome.accepted for r in got)
            assert workers.in_flight() == 2
            assert results.empty()
        finally:
            assert workers.stop(10.0)
        rest = [results.get(timeout=1.0), results.get(timeout=1.0)]
        assert [r.notification.group_key for r in rest] == ["s1", "s2"]
        assert all(r.abandoned and not r.dead_letter for r in rest)
        assert (rest[0].attempts, rest[1].attempts) == (1, 0)
        assert workers.in_flight() == 0
        assert in_flight.values[-1] == 0 and max(in_flight.values) == 4
        with pytest.raises(RuntimeError):
            workers.submit(notification(fast, "late"))

    def test_rate_limited_burst_through_a_worker(self) -> None:
        clock = FakeClock()
        receiver = Receiver(clock, [httpx.Response(200)])
        integ = integration()
        results: queue.Queue[DeliveryReport] = queue.Queue()
        workers = workers_for(
            [integ], results, rates={integ.id: 1.0}, clock=clock, sender=receiver.sender()
        )
        try:
            for i in range(5):
                workers.submit(notification(integ, f"g{i}"))
            reports = [results.get(timeout=10.0) for _ in range(5)]
        finally:
            workers.stop(10.0)
        assert [r.notification.group_key for r in reports] == [f"g{i}" for i in range(5)]
        assert all(r.outcome.accepted for r in reports)
        assert receiver.times == [0.0, 1.0, 2.0, 3.0, 4.0]

    def test_unknown_integration_is_refused(self) -> None:
        integ = integration()
        results: queue.Queue[DeliveryReport] = queue.Queue()
        workers = workers_for([integ], results, clock=FakeClock())
        try:
            with pytest.raises(KeyError):
                workers.submit(notification(integration("other/webhook/0")))
        finally:
            assert workers.stop(10.0)
        with pytest.raises(ValueError):
            workers_for([], results, rates={"nope/webhook/0": 1.0})


# --- a real socket -------------------------------------------------------------------------


@pytest.fixture
def retry_after_server() -> Iterator[tuple[str, list[float]]]:
    """Answers 429 ``Retry-After: 1`` to the first request, 200 to the others, and records
    when (monotonic) it saw each request."""
    import time

    seen: list[float] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            seen.append(time.monotonic())
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            first = len(seen) == 1
            body = b"slow down" if first else b"ok"
            self.send_response(429 if first else 200)
            if first:
                self.send_header("Retry-After", "1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", seen
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def test_retry_after_over_a_real_socket(retry_after_server: tuple[str, list[float]]) -> None:
    url, seen = retry_after_server
    integ = integration("local/webhook/0", url)
    notif = notification(integ)
    with Sender(5.0) as sender:
        report = deliver(
            FakeNotifier(integ),
            notif,
            sender=sender,
            policy=RetryPolicy(0.01, 0.05, 30.0, random.Random(0)),
            limiter=None,
            gate=Gate(),
            clock=SystemClock(),
            stop=threading.Event(),
        )
    assert report.outcome.accepted
    assert (report.attempts, report.retries) == (2, 1)
    assert len(seen) == 2
    assert seen[1] - seen[0] >= 1.0


def test_accepted_constant_is_a_final_outcome() -> None:
    # The notifiers return model.ACCEPTED itself (no status): it ends the delivery.
    receiver = Receiver(FakeClock(), [httpx.Response(204)])
    report = run(receiver, notification(integration()))
    assert report.outcome is ACCEPTED and report.attempts == 1
