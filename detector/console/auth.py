"""Who the reviewer is, and the CSRF tokens of the console's forms (pure).

Two ways to name the reviewer, either or both:

- **A token file** (``--token-file``), for local use: one ``name:token`` a line (``#``
  comments and blank lines skipped; a token at least :data:`MIN_TOKEN` characters, each
  token once). A request with ``Authorization: Bearer <token>`` is that line's ``name``.
  Every token is compared in constant time (``hmac.compare_digest``), all of them each
  time, so the time taken says nothing about which token came close.
- **Trusted headers** (``--trusted-header X-Forwarded-User``, ...), set by an
  authenticating proxy (oauth2-proxy). The first of them the request carries is the name.
  Anyone who can reach the console without the proxy can set them too: listen only where
  the proxy alone reaches it (127.0.0.1 in the proxy's pod).

A request with neither is refused (401). So is one whose identity is ambiguous (a trusted
header given twice), or not a plain name (control characters, longer than
:data:`MAX_IDENTITY`): the identity becomes the audit record's ``by``.

CSRF: a form carries the HMAC-SHA256 of the reviewer's identity with a secret drawn when
the process starts (:class:`Csrf`): a page of another site cannot know it, and it is valid
only for the reviewer it was made for. A POST must also come from the console's own pages
when the browser says where it comes from (:func:`same_origin`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import urlsplit

#: Request headers: lower-cased name -> every value the request carries for it.
Headers = Mapping[str, Sequence[str]]

#: The shortest token a token file may hold.
MIN_TOKEN = 16
#: The longest identity taken (it becomes the audit record's ``by``).
MAX_IDENTITY = 128


class AuthError(ValueError):
    """The console's identity options cannot be used: the message says why (never a
    token)."""


def parse_tokens(text: str, source: str) -> tuple[tuple[str, str], ...]:
    """(name, token) of each line of a token file; AuthError naming the line if one is
    not ``name:token``."""
    entries: list[tuple[str, str]] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, colon, token = line.partition(":")
        name, token = name.strip(), token.strip()
        where = f"{source} line {number}"
        if not colon or identity(name) is None:
            raise AuthError(f"{where}: expected name:token (a name, a colon, the token)")
        if len(token) < MIN_TOKEN:
            raise AuthError(f"{where}: the token of {name} is shorter than {MIN_TOKEN} characters")
        if token in seen:
            raise AuthError(f"{where}: the token of {name} is on an earlier line too")
        seen.add(token)
        entries.append((name, token))
    if not entries:
        raise AuthError(f"{source}: no name:token line")
    return tuple(entries)


def load_tokens(path: str) -> tuple[tuple[str, str], ...]:
    """The token file at ``path`` (:func:`parse_tokens`)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise AuthError(f"--token-file {path}: cannot read it ({why})") from None
    return parse_tokens(text, f"--token-file {path}")


def identity(value: str) -> str | None:
    """``value`` as a reviewer's name (stripped), or None if it is not a plain name."""
    name = value.strip()
    if not name or len(name) > MAX_IDENTITY or not name.isprintable():
        return None
    return name


class Authenticator:
    """Names the reviewer of a request from its headers (None: refuse it)."""

    def __init__(
        self, tokens: Iterable[tuple[str, str]] = (), trusted_headers: Iterable[str] = ()
    ) -> None:
        self._tokens = tuple((name, token.encode()) for name, token in tokens)
        self.trusted_headers = tuple(h.strip().lower() for h in trusted_headers if h.strip())
        if not self._tokens and not self.trusted_headers:
            raise AuthError(
                "no way to name the reviewer: give --token-file FILE (name:token lines) or, "
                "behind an authenticating proxy, --trusted-header NAME"
            )

    @property
    def bearer(self) -> bool:
        """Whether bearer tokens are taken (a 401 then says ``WWW-Authenticate: Bearer``)."""
        return bool(self._tokens)

    def identify(self, headers: Headers) -> str | None:
        """The reviewer's name, or None. With a token file, a request that carries an
        ``Authorization`` header is named by it alone (a wrong token is refused, not passed
        on to the trusted headers)."""
        authorization = headers.get("authorization", ())
        if self._tokens and authorization:
            if len(authorization) != 1:
                return None
            scheme, _, token = authorization[0].strip().partition(" ")
            return self._by_token(token.strip()) if scheme.lower() == "bearer" else None
        for name in self.trusted_headers:
            values = headers.get(name, ())
            if values:
                return identity(values[0]) if len(values) == 1 else None
        return None

    def _by_token(self, token: str) -> str | None:
        given = token.encode()
        found = None
        for name, known in self._tokens:  # all of them: the time does not depend on which
            if hmac.compare_digest(given, known):
                found = name
        return found


class Csrf:
    """The forms' tokens: HMAC-SHA256 of the identity with a per-process secret."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret if secret is not None else secrets.token_bytes(32)

    def token(self, identity: str) -> str:
        return hmac.new(self._secret, identity.encode(), hashlib.sha256).hexdigest()

    def valid(self, identity: str, token: str) -> bool:
        return hmac.compare_digest(self.token(identity).encode(), token.encode())


def same_origin(headers: Headers) -> bool:
    """Whether a POST may come from the console's own page, as far as the browser says.
    ``Sec-Fetch-Site``, which browsers send whatever the referrer policy, decides when
    present: it must be ``same-origin``. Without it, ``Origin``, when sent, must be the
    ``Host`` the request was sent to (``null``, which a browser sends for a page with
    ``Referrer-Policy: no-referrer``, is refused then). A client that sends neither (curl)
    is judged by the CSRF token alone."""
    site = headers.get("sec-fetch-site", ())
    if site:
        return len(site) == 1 and site[0].strip().lower() == "same-origin"
    origin = headers.get("origin", ())
    if not origin:
        return True
    host = headers.get("host", ())
    if len(origin) != 1 or len(host) != 1:
        return False
    parts = urlsplit(origin[0].strip())
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host[0].strip().lower()


__all__ = [
    "MAX_IDENTITY",
    "MIN_TOKEN",
    "AuthError",
    "Authenticator",
    "Csrf",
    "Headers",
    "identity",
    "load_tokens",
    "parse_tokens",
    "same_origin",
]
