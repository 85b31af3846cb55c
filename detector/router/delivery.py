"""The send stage: rate limits, retries with backoff, ``Retry-After``, and the worker threads.

This is Alertmanager's retry stage. :func:`deliver` takes one notification to the end:

1. wait until the integration may be called again: its rate limiter (at most ``rate``
   requests a second, no burst), its :class:`Gate` (a ``Retry-After`` answer holds back
   *every* request to that integration until it has passed, exactly) and the backoff;
2. send the notifier's request through the shared :class:`Sender`;
3. ask the notifier what the answer means (:meth:`Notifier.classify`): accepted or
   permanent -> done; retryable -> wait ``max(jittered backoff, Retry-After)`` and try
   again, unless the time since the first attempt plus that wait exceeds
   ``max_retry_time_s``: then give up with ``reason="retries_exhausted"`` (the caller
   dead-letters it).

If the stop event is set while waiting, the notification is *abandoned*: neither accepted
nor dead-lettered; the caller has not committed it and sends it again after a restart.

:class:`DeliveryWorkers` runs one thread per integration with a FIFO queue each, so the
notifications of one integration go out one at a time and in order, and a slow or
rate-limited receiver never holds back another.

Nothing secret is logged: integrations are named by their id (``slack-ml/slack/0``), never
by URL; transport errors are logged by exception class only (httpx messages carry the URL,
which for Slack *is* the secret); response bodies are scrubbed of the integration's secrets.
httpx's own INFO line (``HTTP Request: POST <url>``) is silenced by :class:`Sender`.
"""

from __future__ import annotations

import logging
import math
import queue
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import httpx
import structlog

from detector.router.model import HttpRequest, Notification, Outcome, scrub
from detector.router.notify.base import Notifier

__all__ = [
    "MAX_RESPONSE_BYTES",
    "Clock",
    "DeliveryReport",
    "DeliveryWorkers",
    "Gate",
    "InFlightMetrics",
    "RateLimiter",
    "RetryPolicy",
    "SendFailed",
    "Sender",
    "SystemClock",
    "abandoned_report",
    "deliver",
]

log = structlog.get_logger()

#: Most of a response body read (and handed to ``classify``); the rest is not read.
MAX_RESPONSE_BYTES = 64 * 1024

#: The outcome of a notification that was not sent to the end because of a stop.
_ABANDONED_REASON = "abandoned"


# --- time ----------------------------------------------------------------------------------


class Clock(Protocol):
    """Time as the send stage sees it (a fake one in the tests)."""

    def monotonic(self) -> float:
        """Monotonic seconds: backoff, gates and rate limits are measured in these."""
        ...

    def wall_ms(self) -> int:
        """Wall clock, epoch milliseconds (for reports and latency metrics)."""
        ...

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Sleep up to ``seconds``, or less if ``event`` is set; True if it was set."""
        ...


class SystemClock:
    """The real clock: :func:`time.monotonic`, :func:`time.time_ns`, :meth:`Event.wait`."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def wait(self, event: threading.Event, seconds: float) -> bool:
        if seconds <= 0:
            return event.is_set()
        return event.wait(seconds)


# --- policies ------------------------------------------------------------------------------


@dataclass(slots=True)
class RetryPolicy:
    """Exponential backoff with *full jitter* (AWS's "Exponential Backoff And Jitter").

    The wait before retry ``n`` (``n = 0`` for the first retry) is drawn uniformly from
    ``[0, min(max_backoff_s, initial_backoff_s * 2**n)]``. Full jitter was chosen over
    "equal" or "decorrelated" jitter: it spreads the retries of many notifications that
    failed together (a receiver outage) the most, for the fewest total calls; a
    ``Retry-After`` from the receiver still sets a floor (see :func:`deliver`).

    ``max_retry_time_s`` bounds the whole delivery: a retry whose wait would end later than
    that after the first attempt is not made.
    """

    initial_backoff_s: float
    max_backoff_s: float
    max_retry_time_s: float
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.initial_backoff_s < 0 or self.max_backoff_s < 0 or self.max_retry_time_s < 0:
            raise ValueError("backoff and retry times must not be negative")

    def cap(self, retry: int) -> float:
        """The upper bound of the wait before retry ``retry`` (0-based)."""
        exponent = min(max(retry, 0), 64)  # 2**64 is past any sane max_backoff_s
        return min(self.max_backoff_s, self.initial_backoff_s * float(2**exponent))

    def backoff(self, retry: int) -> float:
        """A jittered wait before retry ``retry`` (0-based), in seconds."""
        return self.rng.uniform(0.0, self.cap(retry))


class RateLimiter:
    """At most ``rate_per_s`` requests a second to one integration, evenly spaced, no burst.

    Requests are delayed, never refused: a burst of notifications is queued (by the
    integration's worker) and sent ``1 / rate_per_s`` seconds apart.
    """

    def __init__(self, rate_per_s: float) -> None:
        if not rate_per_s > 0 or math.isinf(rate_per_s):
            raise ValueError("rate_per_s must be a positive, finite number")
        self.rate_per_s = rate_per_s
        self.interval_s = 1.0 / rate_per_s
        self._next = -math.inf
        self._lock = threading.Lock()

    def delay(self, now: float) -> float:
        """Seconds to wait from ``now`` (monotonic) before the next request may go out."""
        with self._lock:
            return max(0.0, self._next - now)

    def taken(self, now: float) -> None:
        """A request went out at ``now`` (monotonic)."""
        with self._lock:
            self._next = max(now, self._next) + self.interval_s


class Gate:
    """When an integration may be called again (monotonic seconds), shared by all of its
    notifications: a ``Retry-After`` answer moves it forward, nothing moves it back."""

    def __init__(self) -> None:
        self._not_before = -math.inf
        self._lock = threading.Lock()

    @property
    def not_before(self) -> float:
        with self._lock:
            return self._not_before

    def hold_until(self, when: float) -> None:
        """No request before ``when`` (monotonic seconds); an earlier time is ignored."""
        with self._lock:
            self._not_before = max(self._not_before, when)


# --- HTTP ----------------------------------------------------------------------------------


class SendFailed(Exception):
    """A request got no HTTP answer (connection refused, reset, timeout, bad URL).

    ``outcome`` says whether to retry (``reason`` ``network`` or ``timeout``; ``invalid_url``
    is permanent); ``error`` is the httpx exception's class name. The message names neither
    the URL nor the httpx message (which contains the URL), and the original exception is
    not chained.
    """

    def __init__(self, outcome: Outcome, error: str) -> None:
        super().__init__(f"{outcome.reason} ({error})")
        self.outcome = outcome
        self.error = error


class Sender:
    """One shared :class:`httpx.Client` for every integration (thread-safe).

    HTTP/1.1 with keep-alive and connection reuse, no redirects followed (a 3xx goes to the
    notifier's ``classify``), ``timeout_s`` for connect, read, write and pool waits. At most
    :data:`MAX_RESPONSE_BYTES` of a response body are read. ``transport`` is for tests
    (``httpx.MockTransport``).
    """

    def __init__(
        self,
        timeout_s: float,
        *,
        transport: httpx.BaseTransport | None = None,
        max_connections: int = 100,
        max_keepalive_connections: int = 20,
        keepalive_expiry_s: float = 30.0,
        user_agent: str = "drift-router",
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        # httpx logs "HTTP Request: POST <url> ..." at INFO, and the URL of a Slack
        # integration is its secret: keep both loggers quiet below WARNING.
        for name in ("httpx", "httpcore"):
            logger = logging.getLogger(name)
            if logger.getEffectiveLevel() < logging.WARNING:
                logger.setLevel(logging.WARNING)
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_keepalive_connections,
                keepalive_expiry=keepalive_expiry_s,
            ),
            follow_redirects=False,
            http1=True,
            http2=False,
            headers={"User-Agent": user_agent},
            transport=transport,
        )

    def send(self, req: HttpRequest) -> tuple[int, Mapping[str, str], bytes]:
        """(status, headers, body) of the answer to ``req``; headers are case-insensitive.

        Raises :class:`SendFailed` when there is no answer.
        """
        failure: tuple[Outcome, str]
        try:
            with self._client.stream(
                req.method, req.url, headers=dict(req.headers), content=req.body
            ) as response:
                body = _read_capped(response, MAX_RESPONSE_BYTES)
                return response.status_code, response.headers, body
        except httpx.TimeoutException as exc:
            failure = Outcome(accepted=False, retryable=True, reason="timeout"), type(exc).__name__
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            failure = (
                Outcome(accepted=False, retryable=False, reason="invalid_url"),
                type(exc).__name__,
            )
        except (httpx.TransportError, httpx.StreamError) as exc:
            failure = Outcome(accepted=False, retryable=True, reason="network"), type(exc).__name__
        # Raised outside the except blocks, so the httpx exception (and its URL) is not
        # even attached as __context__.
        raise SendFailed(*failure)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _read_capped(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


# --- one delivery --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What became of one notification.

    ``outcome`` is the final one: ``accepted``, a permanent failure (``http_4xx``, ...),
    ``retries_exhausted`` (status and body of the last answer), or for an abandoned
    notification ``reason="abandoned"``. ``attempts`` counts requests sent (answered or
    not), ``retries`` is ``attempts - 1`` (0 without attempts). ``first_attempt_ms`` is the
    wall time the first request was sent, ``last_attempt_ms`` when the last attempt ended
    (its answer, or its failure); both None when nothing was sent.
    """

    notification: Notification
    outcome: Outcome
    attempts: int
    retries: int
    first_attempt_ms: int | None
    last_attempt_ms: int | None
    abandoned: bool = False

    @property
    def accepted(self) -> bool:
        return self.outcome.accepted

    @property
    def dead_letter(self) -> bool:
        """Given up on: neither accepted nor abandoned (the caller dead-letters it)."""
        return not self.outcome.accepted and not self.abandoned


def _abandoned_outcome(last: Outcome | None) -> Outcome:
    return Outcome(
        accepted=False,
        retryable=True,
        reason=_ABANDONED_REASON,
        status=None if last is None else last.status,
        body="" if last is None else last.body,
    )


def abandoned_report(notification: Notification) -> DeliveryReport:
    """The report of a notification never sent because of a stop."""
    return DeliveryReport(notification, _abandoned_outcome(None), 0, 0, None, None, True)


def deliver(
    notifier: Notifier,
    notification: Notification,
    *,
    sender: Sender,
    policy: RetryPolicy,
    limiter: RateLimiter | None,
    gate: Gate,
    clock: Clock,
    stop: threading.Event,
) -> DeliveryReport:
    """Send ``notification`` until it is accepted, fails for good, or ``stop`` is set.

    ``limiter`` and ``gate`` belong to the notification's integration (None: no rate limit).
    Exceptions of the notifier (a bug) end the delivery with a permanent
    ``reason="internal_error"`` outcome rather than killing the caller's thread.
    """
    integration = notification.integration
    secrets = integration.secrets
    bound = log.bind(
        receiver=integration.receiver,
        integration=integration.id,
        group_key=notification.group_key,
    )
    attempts = 0
    first_mono: float | None = None
    first_ms: int | None = None
    last_ms: int | None = None
    last: Outcome | None = None
    next_at = -math.inf  # backoff: the earliest monotonic time of the next attempt

    def report(outcome: Outcome, *, abandoned: bool = False) -> DeliveryReport:
        return DeliveryReport(
            notification=notification,
            outcome=outcome,
            attempts=attempts,
            retries=max(attempts - 1, 0),
            first_attempt_ms=first_ms,
            last_attempt_ms=last_ms,
            abandoned=abandoned,
        )

    try:
        request = notifier.request(notification)
    except Exception as exc:
        bound.error("notification request could not be built", error=type(exc).__name__)
        return report(Outcome(accepted=False, retryable=False, reason="internal_error"))

    while True:
        # Wait for the backoff, the gate (Retry-After) and the rate limiter. Re-checked after
        # every wait, so that no request goes out a moment early, whatever the clock does.
        while True:
            if stop.is_set():
                bound.info("notification abandoned by stop", attempt=attempts)
                return report(_abandoned_outcome(last), abandoned=True)
            now = clock.monotonic()
            ready_at = max(next_at, gate.not_before)
            if limiter is not None:
                ready_at = max(ready_at, now + limiter.delay(now))
            if ready_at <= now:
                break
            if clock.wait(stop, ready_at - now):
                bound.info("notification abandoned by stop", attempt=attempts)
                return report(_abandoned_outcome(last), abandoned=True)

        attempts += 1
        sent_at = clock.monotonic()
        if limiter is not None:
            limiter.taken(sent_at)
        if first_mono is None:
            first_mono = sent_at
            first_ms = clock.wall_ms()
        error: str | None = None
        try:
            status, headers, body = sender.send(request)
        except SendFailed as failed:
            outcome, error = failed.outcome, failed.error
        else:
            try:
                outcome = notifier.classify(status, headers, body)
            except Exception as exc:
                bound.error(
                    "notification answer could not be classified",
                    attempt=attempts,
                    status=status,
                    error=type(exc).__name__,
                )
                outcome = Outcome(
                    accepted=False, retryable=False, reason="internal_error", status=status
                )
        now = clock.monotonic()
        last_ms = clock.wall_ms()
        last = outcome
        if outcome.retry_after_s is not None and not outcome.accepted:
            gate.hold_until(now + max(outcome.retry_after_s, 0.0))

        if outcome.accepted:
            bound.info("notification attempt accepted", attempt=attempts, status=outcome.status)
            return report(outcome)
        fields = {
            "attempt": attempts,
            "reason": outcome.reason,
            "status": outcome.status,
            "body": scrub(outcome.body, secrets),
        }
        if error is not None:
            fields["error"] = error
        if not outcome.retryable:
            bound.error("notification failed permanently", **fields)
            return report(outcome)

        wait = policy.backoff(attempts - 1)
        if outcome.retry_after_s is not None:
            wait = max(wait, outcome.retry_after_s)
        elapsed = now - first_mono
        if elapsed + wait > policy.max_retry_time_s:
            bound.error(
                "notification retries exhausted",
                retry_after_s=outcome.retry_after_s,
                elapsed_s=round(elapsed, 3),
                **fields,
            )
            return report(
                Outcome(
                    accepted=False,
                    retryable=False,
                    reason="retries_exhausted",
                    status=outcome.status,
                    body=outcome.body,
                )
            )
        bound.warning(
            "notification attempt failed; retrying",
            retry_in_s=round(wait, 3),
            retry_after_s=outcome.retry_after_s,
            **fields,
        )
        next_at = now + wait


# --- the workers ---------------------------------------------------------------------------


class InFlightMetrics(Protocol):
    """What the workers tell the metrics (:class:`detector.router.metrics.RouterMetrics`)."""

    def set_in_flight(self, n: int) -> None: ...


class _Worker:
    def __init__(self, notifier: Notifier, limiter: RateLimiter | None) -> None:
        self.notifier = notifier
        self.limiter = limiter
        self.gate = Gate()
        self.queue: queue.SimpleQueue[Notification | None] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None


class DeliveryWorkers:
    """One thread and one FIFO queue per integration; reports go to ``results``.

    ``notifiers`` maps integration ids to their notifier; ``rates`` optional rate limits
    (requests per second) by integration id (absent: unlimited). Every submitted
    notification ends up as exactly one :class:`DeliveryReport` on ``results``: accepted,
    given up on, or abandoned (by :meth:`stop`; it must then be sent again after a restart).

    ``metrics`` (a :class:`RouterMetrics`, or anything with ``set_in_flight(n)``) is told,
    from the submitting and worker threads, whenever the number of notifications submitted
    and not yet reported changes.

    ``sender``: a shared :class:`Sender` (not closed by :meth:`stop`); by default one is
    built with ``timeout_s`` and closed by :meth:`stop`. ``rng`` seeds the jitter.
    The threads start in the constructor.
    """

    def __init__(
        self,
        notifiers: Mapping[str, Notifier],
        *,
        timeout_s: float,
        initial_backoff_s: float,
        max_backoff_s: float,
        max_retry_time_s: float,
        results: queue.Queue[DeliveryReport],
        rates: Mapping[str, float] | None = None,
        clock: Clock | None = None,
        sender: Sender | None = None,
        rng: random.Random | None = None,
        metrics: InFlightMetrics | None = None,
    ) -> None:
        rates = dict(rates or {})
        unknown = sorted(set(rates) - set(notifiers))
        if unknown:
            raise ValueError(f"rate limits for unknown integrations: {unknown}")
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._own_sender = sender is None
        if sender is None:  # one kept-alive connection per integration, at least
            sender = Sender(
                timeout_s,
                max_connections=max(100, len(notifiers)),
                max_keepalive_connections=max(20, len(notifiers)),
            )
        self._sender = sender
        self._policy = RetryPolicy(
            initial_backoff_s,
            max_backoff_s,
            max_retry_time_s,
            rng if rng is not None else random.Random(),
        )
        self._results = results
        self._metrics = metrics
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._stopped = False
        self._workers: dict[str, _Worker] = {}
        for integration_id, notifier in notifiers.items():
            rate = rates.get(integration_id)
            limiter = RateLimiter(rate) if rate is not None else None
            self._workers[integration_id] = _Worker(notifier, limiter)
        for integration_id, worker in self._workers.items():
            worker.thread = threading.Thread(
                target=self._run,
                args=(worker,),
                name=f"router-send-{integration_id}",
                daemon=True,
            )
            worker.thread.start()

    def submit(self, notification: Notification) -> None:
        """Queue ``notification`` behind the others of its integration.

        Raises KeyError for an integration without a notifier, RuntimeError after stop().
        """
        worker = self._workers.get(notification.integration.id)
        if worker is None:
            raise KeyError(f"no notifier for integration {notification.integration.id!r}")
        with self._lock:
            if self._stopped:
                raise RuntimeError("delivery workers are stopped")
            self._in_flight += 1
            worker.queue.put(notification)
            self._report_in_flight(self._in_flight)

    def in_flight(self) -> int:
        """Notifications submitted and not yet reported (queued or being sent)."""
        with self._lock:
            return self._in_flight

    def stop(self, timeout_s: float) -> bool:
        """Stop: interrupt waits, abandon queued notifications (each reported abandoned).

        A request already on the wire runs to its end (at most the HTTP timeout). True if
        every thread ended within ``timeout_s``.
        """
        with self._lock:
            self._stopped = True
        self._stop.set()
        for worker in self._workers.values():
            worker.queue.put(None)
        deadline = time.monotonic() + max(timeout_s, 0.0)
        done = True
        for worker in self._workers.values():
            if worker.thread is not None:
                worker.thread.join(max(deadline - time.monotonic(), 0.0))
                done = done and not worker.thread.is_alive()
        if self._own_sender and done:
            self._sender.close()
        return done

    def __enter__(self) -> DeliveryWorkers:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop(timeout_s=30.0)

    # --- worker threads -------------------------------------------------------------------

    def _run(self, worker: _Worker) -> None:
        while True:
            notification = worker.queue.get()
            if notification is None:  # stop(): whatever is still queued is abandoned
                return
            if self._stop.is_set():
                self._finish(abandoned_report(notification))
                continue
            try:
                report = deliver(
                    worker.notifier,
                    notification,
                    sender=self._sender,
                    policy=self._policy,
                    limiter=worker.limiter,
                    gate=worker.gate,
                    clock=self._clock,
                    stop=self._stop,
                )
            except Exception as exc:  # a bug must not kill the thread and lose the queue
                log.error(
                    "notification delivery crashed",
                    receiver=notification.integration.receiver,
                    integration=notification.integration.id,
                    group_key=notification.group_key,
                    error=type(exc).__name__,
                )
                outcome = Outcome(accepted=False, retryable=False, reason="internal_error")
                report = DeliveryReport(notification, outcome, 0, 0, None, None)
            self._finish(report)

    def _finish(self, report: DeliveryReport) -> None:
        self._results.put(report)
        with self._lock:
            self._in_flight -= 1
            self._report_in_flight(self._in_flight)

    def _report_in_flight(self, n: int) -> None:
        # Called under the lock, so the gauge never shows a stale value last.
        if self._metrics is not None:
            try:
                self._metrics.set_in_flight(n)
            except Exception as exc:
                log.error("in-flight metric update failed", error=type(exc).__name__)
