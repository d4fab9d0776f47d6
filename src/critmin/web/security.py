"""Passwords, sessions, login rate limiting, CSRF and security headers.

- Passwords: argon2id (argon2-cffi defaults, RFC 9106 low-memory profile); only the hash is stored.
- Sessions: a random 256-bit token, sent as ``Authorization: Bearer <token>`` or in the HttpOnly, Secure,
  SameSite=Strict cookie ``critmin_session``; the database keeps only its SHA-256 and an expiry
  (``SESSION_HOURS``).
- CSRF: a request authenticated by the cookie that changes anything (POST, PUT, PATCH, DELETE) must send
  the session's CSRF token in the ``X-CSRF-Token`` header (the token is returned at login and readable
  from the non-HttpOnly ``critmin_csrf`` cookie). Bearer requests need none: a browser never adds that
  header on its own.
- Login rate limiting: at most ``LOGIN_FAILURES`` failed logins per ``LOGIN_WINDOW_S`` seconds per client
  address and per (address, account), so that guesses from one address are throttled but cannot lock the
  owner out from another; and at most ``ACCOUNT_FAILURES`` per account from all addresses together, which
  throttles guessing spread over many addresses. Further attempts answer 429 with ``Retry-After``. The
  counts live in the server process, in at most ``LIMITER_KEYS`` keys (the oldest dropped first).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict, deque
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

SESSION_COOKIE = "critmin_session"
CSRF_COOKIE = "critmin_csrf"
CSRF_HEADER = "X-CSRF-Token"
#: Hours a session lasts (a setting, not a measured figure).
SESSION_HOURS = 12.0
#: Failed logins allowed per window, per client address and per (address, account).
LOGIN_FAILURES = 5
LOGIN_WINDOW_S = 300.0
#: Failed logins allowed per window for one account from all addresses together (distributed guessing).
ACCOUNT_FAILURES = 50
#: Keys the limiter remembers at most (memory bound: 300 k unique names grew it by 230 MB; issue 14).
LIMITER_KEYS = 50_000
#: Password length bounds (characters): at least 8, NIST SP 800-63B's minimum for chosen secrets; at most
#: 1,000, so that a login or password change with an oversized body hashes nothing unusual.
PASSWORD_MIN, PASSWORD_MAX = 8, 1000

_hasher = PasswordHasher()
#: A hash to verify against when the user does not exist, so that timing does not tell which emails exist.
_DUMMY_HASH = _hasher.hash("critmin-no-such-user")

SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
                                "font-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Strict-Transport-Security": "max-age=31536000",
}


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; runs a full argon2 verification even for an unknown user."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def session_expiry(hours: float = SESSION_HOURS) -> datetime:
    return datetime.now(UTC) + timedelta(hours=hours)


class LoginLimiter:
    """Sliding-window count of failed logins per key (see module docstring)."""

    def __init__(self, failures: int = LOGIN_FAILURES, window_s: float = LOGIN_WINDOW_S, max_keys: int = LIMITER_KEYS,
                 limits: dict[str, int] | None = None):
        self.failures, self.window_s, self.max_keys = failures, window_s, max_keys
        #: failures allowed per key prefix ("acct:" keys: ACCOUNT_FAILURES); other keys: ``failures``
        self.limits = {"acct:": ACCOUNT_FAILURES, **(limits or {})}
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _limit(self, key: str) -> int:
        return next((v for p, v in self.limits.items() if key.startswith(p)), self.failures)

    def _prune(self, key: str, now: float) -> deque[float]:
        q = self._seen.get(key)
        if q is None:
            q = deque()
            self._seen[key] = q
            while len(self._seen) > self.max_keys:  # the oldest key goes first: memory stays bounded
                self._seen.popitem(last=False)
        else:
            self._seen.move_to_end(key)
        while q and now - q[0] > self.window_s:
            q.popleft()
        return q

    def __len__(self) -> int:
        return len(self._seen)

    def retry_after(self, *keys: str) -> float:
        """Seconds until a login for these keys may be tried again (0 = now)."""
        now = time.monotonic()
        wait = 0.0
        with self._lock:
            for k in keys:
                q = self._prune(k, now)
                if len(q) >= self._limit(k):
                    wait = max(wait, self.window_s - (now - q[0]))
        return wait

    def attempt(self, *keys: str) -> tuple[float, float]:
        """Atomically: ``(wait, stamp)`` with the seconds to wait when a key is locked, else ``(0, stamp)`` and
        the attempt already counted as a failure under ``stamp`` until :meth:`forgive` takes it back (so
        guesses sent in parallel cannot all pass the check before any of them is counted)."""
        now = time.monotonic()
        with self._lock:
            queues = [self._prune(k, now) for k in keys]
            wait = max((self.window_s - (now - q[0]) for k, q in zip(keys, queues, strict=True) if len(q) >= self._limit(k)), default=0.0)
            if wait <= 0:
                for q in queues:
                    q.append(now)
        return wait, now

    def forgive(self, stamp: float, *keys: str) -> None:
        """Take back the attempt counted under ``stamp`` (it was not a failed guess)."""
        with self._lock:
            for k in keys:
                q = self._seen.get(k)
                if q is not None and stamp in q:
                    q.remove(stamp)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for k in keys:
                self._prune(k, now).append(now)

    def succeeded(self, username_key: str) -> None:
        with self._lock:
            self._seen.pop(username_key, None)
