"""API keys: their format, how they are checked, and the short-lived cache in front of that.

A key is ``cs_<9 random chars>_<43 random chars>``: its first 12 characters are its public
prefix, stored in clear to tell keys apart; the whole key is stored only as its SHA-256.
Keys carry 256 random bits, so a fast hash is enough (slow hashes are for guessable
passwords). A key is found by its prefix and its hash compared with ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Flask, current_app
from sqlalchemy.exc import SQLAlchemyError

from app.database import is_transient
from app.errors import Unauthorized
from app.models import KEY_PREFIX_LENGTH, utcnow
from app.repositories import ApiKeyRepository
from app.services.unit_of_work import read_only, unit_of_work

log = logging.getLogger(__name__)

KEY_PATTERN = re.compile(r"cs_[A-Za-z0-9]{9}_[A-Za-z0-9_-]{43}")
_ALPHANUMERIC = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True)
class Principal:
    """Who a request acts for."""

    user_id: int
    name: str
    role: str
    # The user's own limits (None: the service's settings apply).
    rpm_limit: int | None = None
    daily_token_budget: int | None = None
    # The key is a no-store key: its exchanges are recorded and accounted, none of their text.
    no_store: bool = False

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def scope(self) -> int | None:
        """The owner id this principal's conversation queries are limited to; None: all."""
        return None if self.is_admin else self.user_id


@dataclass(frozen=True)
class NewKey:
    """A key as made: the secret is shown once and never stored."""

    secret: str
    prefix: str
    secret_hash: str
    expires_at: datetime | None = None


def hash_key(secret: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(secret.encode()).hexdigest()


def generate_key(expires_at: datetime | None = None) -> NewKey:
    """A new random key, its prefix and its hash."""
    prefix = "cs_" + "".join(secrets.choice(_ALPHANUMERIC) for _ in range(9))
    secret = f"{prefix}_{secrets.token_urlsafe(32)}"
    return NewKey(secret, prefix, hash_key(secret), expires_at)


@dataclass(frozen=True)
class ResolvedKey:
    """What a valid key stands for."""

    principal: Principal
    key_id: int
    expires_at: datetime | None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


UNKNOWN_KEY_MESSAGE = "The API key is unknown or revoked."


def expired_message(expires_at: datetime) -> str:
    when = expires_at.astimezone(UTC).isoformat(timespec="seconds")
    return f"The API key expired at {when}; ask for a new one."


class _TtlStore:
    """Entries that lapse ``ttl`` seconds after they were put, at most ``max_entries``
    of them: when full, the oldest goes first."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.entries: dict[str, tuple[float, Any]] = {}

    def get(self, key: str, now: float) -> Any:
        entry = self.entries.get(key)
        return None if entry is None or entry[0] < now else entry[1]

    def put(self, key: str, value: Any, deadline: float, now: float) -> None:
        self.entries.pop(key, None)
        # Insertion order is deadline order (one ttl): lapsed entries are at the front.
        while self.entries:
            oldest = next(iter(self.entries))
            if self.entries[oldest][0] >= now and len(self.entries) < self.max_entries:
                break
            del self.entries[oldest]
        self.entries[key] = (deadline, value)


class _Lookup:
    """One key's lookup in progress: those who ask meanwhile wait for its answer."""

    __slots__ = ("done", "resolved", "waiting")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.resolved: ResolvedKey | str | None = None
        self.waiting = 0  # callers waiting for it (tests observe it)


class KeyCache:
    """What recent keys resolved to, for ``ttl`` seconds: a revoked key, or a deactivated
    user's, keeps working in a process for at most that long.

    Valid and rejected keys are kept apart, each bounded: a flood of made-up keys fills
    and churns only the rejected store, and never evicts a valid key. A key missing from
    the cache is looked up once however many requests carry it at that moment.
    """

    def __init__(
        self,
        ttl: float,
        max_entries: int = 10_000,
        max_rejected: int = 1_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self._valid = _TtlStore(max_entries)
        self._rejected = _TtlStore(max_rejected)
        self._lock = threading.Lock()
        self._lookups: dict[str, _Lookup] = {}

    def get(self, digest: str) -> ResolvedKey | str | None:
        """The cached resolution: a valid key, a rejection message, or None (not cached)."""
        now = self.clock()
        return self._valid.get(digest, now) or self._rejected.get(digest, now)

    def put(self, digest: str, resolved: ResolvedKey | str) -> None:
        """Remember a valid key, or the message a rejected key is answered with."""
        with self._lock:
            self._put(digest, resolved)

    def _put(self, digest: str, resolved: ResolvedKey | str) -> None:
        now = self.clock()
        store = self._valid if isinstance(resolved, ResolvedKey) else self._rejected
        store.put(digest, resolved, now + self.ttl, now)

    def resolve(self, digest: str, look_up: Callable[[], ResolvedKey | str]) -> ResolvedKey | str:
        """The cached resolution, or ``look_up()``'s, run by one caller at a time per key.

        When an entry lapses under load (every TTL) or the process is new, every request in
        flight with that key misses at once; rather than each reading the key, queued for the
        pool's connections ahead of the work, the others wait for the first one's answer. If
        it fails, each tries on its own.
        """
        cached = self.get(digest)
        if cached is not None:
            return cached
        with self._lock:
            cached = self.get(digest)
            if cached is not None:
                return cached
            lookup = self._lookups.get(digest)
            leading = lookup is None
            if lookup is None:
                lookup = self._lookups[digest] = _Lookup()
            else:
                lookup.waiting += 1
        if not leading:
            lookup.done.wait()
            return lookup.resolved if lookup.resolved is not None else look_up()
        try:
            lookup.resolved = look_up()
            with self._lock:
                self._put(digest, lookup.resolved)
            return lookup.resolved
        finally:
            with self._lock:
                del self._lookups[digest]
            lookup.done.set()

    def __len__(self) -> int:
        return len(self._valid.entries) + len(self._rejected.entries)

    def clear(self) -> None:
        with self._lock:
            self._valid.entries.clear()
            self._rejected.entries.clear()


class KeyUsage:
    """When keys were last used, gathered in the process and written in one short
    transaction after the response, so authentication itself never writes."""

    def __init__(self) -> None:
        self._pending: dict[int, datetime] = {}
        self._lock = threading.Lock()

    def record(self, key_id: int, when: datetime) -> None:
        with self._lock:
            self._pending[key_id] = max(when, self._pending.get(key_id, when))

    def __bool__(self) -> bool:
        return bool(self._pending)

    def take(self) -> dict[int, datetime]:
        with self._lock:
            pending, self._pending = self._pending, {}
        return pending

    def give_back(self, uses: dict[int, datetime]) -> None:
        for key_id, when in uses.items():
            self.record(key_id, when)


def init_key_cache(app: Flask) -> None:
    """Give ``app`` its key cache and its record of key usage (one each per process)."""
    app.extensions["api_key_cache"] = KeyCache(app.config["AUTH_CACHE_SECONDS"])
    app.extensions["api_key_usage"] = KeyUsage()


def _lookup(secret: str, digest: str) -> ResolvedKey | None:
    # Read-only: on SQLite a write transaction would queue behind exchange saves for the
    # write lock, and a flood of made-up keys would then starve those saves.
    with read_only() as session:
        found = ApiKeyRepository(session).find_usable(secret[:KEY_PREFIX_LENGTH])
        if found is None or not hmac.compare_digest(found[0].secret_hash, digest):
            return None
        key, user = found
        principal = Principal(
            user.id, user.name, user.role, user.rpm_limit, user.daily_token_budget, key.no_store
        )
        return ResolvedKey(principal, key.id, key.expires_at)


def _look_up_and_record(secret: str, digest: str) -> ResolvedKey | str:
    """What the key stands for, or the message it is rejected with; a valid key's use is
    recorded once per lookup (so once per cache lifetime: last_used_at is accurate to the
    TTL, and authentication itself never writes)."""
    found = _lookup(secret, digest)
    if found is not None and not found.expired(utcnow()):
        current_app.extensions["api_key_usage"].record(found.key_id, utcnow())
    return found or UNKNOWN_KEY_MESSAGE


def authenticate(secret: str) -> Principal:
    """The principal an API key stands for; Unauthorized if it is malformed, unknown,
    revoked, its user inactive, or it has expired."""
    if not KEY_PATTERN.fullmatch(secret):
        raise Unauthorized(UNKNOWN_KEY_MESSAGE, invalid_token=True)
    digest = hash_key(secret)
    cache: KeyCache = current_app.extensions["api_key_cache"]
    resolved = cache.resolve(digest, lambda: _look_up_and_record(secret, digest))
    if isinstance(resolved, str):
        raise Unauthorized(resolved, invalid_token=True)
    # Checked on every request, cached or not: a key stops at its expiry, not a TTL later.
    if resolved.expires_at is not None and resolved.expired(utcnow()):
        raise Unauthorized(expired_message(resolved.expires_at), invalid_token=True)
    return resolved.principal


def flush_key_usage(app: Flask) -> None:
    """Write the recorded key usage in one short transaction (after a response is sent).

    ``last_used_at`` is advisory: if the write fails it is kept for the next flush.
    """
    usage: KeyUsage = app.extensions["api_key_usage"]
    uses = usage.take()
    if not uses:
        return
    try:
        with app.app_context(), unit_of_work() as session:
            ApiKeyRepository(session).touch(uses)
    except SQLAlchemyError as error:
        if not is_transient(error):
            log.exception("recording API key usage failed")
            return
        usage.give_back(uses)
        log.warning("recording API key usage failed (%s); will retry", error.__class__.__name__)
