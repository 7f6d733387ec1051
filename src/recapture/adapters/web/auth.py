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
import ipaddress
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from recapture.domain.rate_limit import TokenBucket

SESSION_COOKIE = "recapture_dashboard"
LOGIN_COOKIE = "recapture_dashboard_login"
SESSION_SECONDS = 12 * 3600
# Failed sign-ins allowed per client: a burst of 10, then one every 6 seconds.
LOGIN_BURST = 10
LOGIN_WINDOW_SECONDS = 60.0
MAX_TRACKED_CLIENTS = 10_000
# One IPv6 subscriber holds a whole /64: counted per address, it could try 2^64 times as often.
IPV6_CLIENT_PREFIX = 64


def _mac(key: bytes, message: str) -> str:
    digest = hmac.new(key, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def token_matches(given: str, expected: str) -> bool:
    """Constant time, and on bytes: `compare_digest` refuses str with non-ASCII characters (a crafted cookie)."""
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
        if not (expires.isascii() and expires.isdigit()) or not token_matches(
                mac, _mac(self._key, f"session.{expires}.{nonce}")):
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
        return bool(given) and token_matches(str(given), self.csrf_token(session))


def throttle_key(address: str | None) -> str:
    """Whom a failed sign-in is counted against: an IPv4 address, an IPv6 /64, or "unknown"."""
    try:
        parsed = ipaddress.ip_address(address or "")
    except ValueError:
        return "unknown"
    if isinstance(parsed, ipaddress.IPv6Address):
        # A dual-stack socket shows IPv4 clients as ::ffff:a.b.c.d: one /64 would hold every one of them.
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(parsed)


class LoginThrottle:
    """Failed sign-ins per client (token buckets): guessing the admin token is slowed to a crawl.

    Only failures take a token, so a script polling with the right bearer token is never slowed; a client out of
    tokens is refused even with the right token, so the throttle never tells a guess apart. Callers check and
    record within one event-loop step, so concurrent guesses cannot all pass the check before any is counted.
    """

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._buckets: dict[str, TokenBucket] = {}
        self._now = now
        self._lock = threading.Lock()

    def blocked(self, address: str | None) -> bool:
        with self._lock:
            bucket = self._buckets.get(throttle_key(address))
            return bucket is not None and bucket.wait_seconds(self._now()) > 0.0

    def failed(self, address: str | None) -> None:
        with self._lock:
            now = self._now()
            key = throttle_key(address)
            if key not in self._buckets and len(self._buckets) >= MAX_TRACKED_CLIENTS:
                self._forget_idle(now)
            # Re-inserted: the dict's order is then the order of the latest failures, oldest first.
            bucket = self._buckets.pop(key, None) or TokenBucket.allowing(LOGIN_BURST, LOGIN_WINDOW_SECONDS)
            self._buckets[key] = bucket
            bucket.try_acquire(now)

    def _forget_idle(self, now: float) -> None:
        """Room for a new client: first the clients whose bucket refilled (they carry nothing), else the half that
        failed longest ago. Never all at once, which would hand every guesser a fresh burst."""
        self._buckets = {k: b for k, b in self._buckets.items() if b.available(now) < LOGIN_BURST}
        if len(self._buckets) >= MAX_TRACKED_CLIENTS:
            keep = list(self._buckets.items())[MAX_TRACKED_CLIENTS // 2:]
            self._buckets = dict(keep)
