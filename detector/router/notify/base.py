"""The notifier contract: a pure payload builder and a pure response classifier.

A notifier never does I/O. :mod:`detector.router.delivery` sends what :meth:`request`
builds (with timeouts, retries, ``Retry-After`` and rate limits) and asks
:meth:`classify` what the response means, the way Alertmanager's notifiers report whether
a failure is worth retrying.

:class:`JsonNotifier` is what the four notifiers share: a JSON ``POST`` to
``integration.url`` and :func:`~detector.router.notify.evidence.classify_http` with the
integration's secrets; each one supplies its :meth:`~JsonNotifier.payload` and which
answers it :meth:`~JsonNotifier.accepts`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Protocol

from detector.router.model import HttpRequest, Integration, Notification, Outcome
from detector.router.notify.evidence import JSON_HEADERS, classify_http, dumps


class Notifier(Protocol):
    integration: Integration

    def request(self, notification: Notification) -> HttpRequest:
        """The HTTP request that delivers ``notification``."""
        ...

    def classify(self, status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
        """What the receiver's answer means (accepted, retryable or permanent)."""
        ...


class JsonNotifier(ABC):
    """A :class:`Notifier` that POSTs its JSON :meth:`payload` to ``integration.url``.

    ``secrets`` (scrubbed from response bodies) are ``integration.secrets`` and the
    ``extra_secrets`` a notifier knows of itself (Slack's URL, PagerDuty's routing key).
    """

    def __init__(self, integration: Integration, *, extra_secrets: Iterable[str] = ()) -> None:
        self.integration = integration
        self.secrets: tuple[str, ...] = (*integration.secrets, *extra_secrets)

    @abstractmethod
    def payload(self, notification: Notification) -> object:
        """The JSON body delivering ``notification`` (before encoding)."""

    @abstractmethod
    def accepts(self, status: int, body: bytes) -> bool:
        """Whether the answer ``status``/``body`` means the receiver took the notification."""

    def request(self, notification: Notification) -> HttpRequest:
        return HttpRequest(
            method="POST",
            url=self.integration.url,
            headers=dict(JSON_HEADERS),
            body=dumps(self.payload(notification)),
        )

    def classify(self, status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
        return classify_http(status, headers, body, self.secrets, accepted=self.accepts)


__all__ = ["JsonNotifier", "Notifier"]
