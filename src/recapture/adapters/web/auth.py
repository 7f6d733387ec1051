"""Who may use the dashboard: the admin token, typed once into a login form or sent as a bearer token.

A login sets a signed session cookie (HttpOnly, SameSite=Strict, Secure over HTTPS): `<expiry>.<nonce>.<mac>`,
keyed by the admin token, so no session is stored and rotating the token signs everyone out. Forms that change
something carry a CSRF token derived from the session's nonce; SameSite=Strict already keeps the cookie off
cross-site requests, the token is the second lock. Bearer requests need no CSRF token: a browser never adds the
Authorization header on its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from recapture.domain.rate_limit import TokenBucket

SESSION_COOKIE = "recapture_dashboard"
LOGIN_COOKIE = "recapture_dashboard_login"
SESSION_SECONDS = 12 * 3600
# Failed logins allowed per client address: a burst of 10, then one every 6 seconds.
LOGIN_BURST = 10
LOGIN_WINDOW_SECONDS = 60.0
MAX_TRACKED_CLIENTS = 10_000


def _mac(key: bytes, message: str) -> str:
    digest = hmac.new(key, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def token_matches(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


@dataclass(frozen=True, slots=True)
class Session:
    nonce: str
    expires: int


class SessionSigner:
    def __init__(self, admin_token: str, now: Callable[[], float] = time.time) -> None:
        # A key of its own (not the token itself), so a MAC never helps anyone guess the token.
        self._key = hashlib.sha256(b"recapture dashboard session\x00" + admin_token.encode()).digest()
        self._now = now
        self._revoked: dict[str, int] = {}
        self._lock = threading.Lock()

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(18)

    def issue(self) -> tuple[str, Session]:
        session = Session(nonce=self.new_nonce(), expires=int(self._now()) + SESSION_SECONDS)
        body = f"{session.expires}.{session.nonce}"
        return f"{body}.{_mac(self._key, 'session.' + body)}", session

    def verify(self, cookie: str | None) -> Session | None:
        if not cookie or cookie.count(".") != 2:
            return None
        expires, nonce, mac = cookie.split(".")
        if not expires.isdigit() or not hmac.compare_digest(mac, _mac(self._key, f"session.{expires}.{nonce}")):
            return None
        if int(expires) <= self._now() or nonce in self._revoked:
            return None
        return Session(nonce=nonce, expires=int(expires))

    def revoke(self, session: Session) -> None:
        """Logout: the cookie is cleared, and this process also refuses it should it come back before it expires."""
        with self._lock:
            now = self._now()
            self._revoked = {n: e for n, e in self._revoked.items() if e > now}
            self._revoked[session.nonce] = session.expires

    def csrf_token(self, session: Session) -> str:
        return _mac(self._key, f"csrf.{session.nonce}")

    def csrf_valid(self, session: Session, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(str(given), self.csrf_token(session))


class LoginThrottle:
    """Token buckets per client address: guessing the admin token through the form is slowed to a crawl."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._buckets: dict[str, TokenBucket] = {}
        self._now = now
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        with self._lock:
            if len(self._buckets) > MAX_TRACKED_CLIENTS:
                self._buckets.clear()
            bucket = self._buckets.setdefault(client, TokenBucket.allowing(LOGIN_BURST, LOGIN_WINDOW_SECONDS))
            return bucket.try_acquire(self._now()) == 0.0
