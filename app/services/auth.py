"""API keys: their format, how they are checked, and the short-lived cache in front of that.

A key is ``cs_<9 random chars>_<43 random chars>``: its first 12 characters are its public
prefix, stored in clear to tell keys apart; the whole key is stored only as its SHA-256.
Keys carry 256 random bits, so a fast hash is enough (slow hashes are for guessable
passwords). A key is found by its prefix and its hash compared with ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass

from flask import Flask, current_app

from app.models import KEY_PREFIX_LENGTH, utcnow
from app.repositories import ApiKeyRepository
from app.services.unit_of_work import unit_of_work

KEY_PATTERN = re.compile(r"cs_[A-Za-z0-9]{9}_[A-Za-z0-9_-]{43}")
_ALPHANUMERIC = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True)
class Principal:
    """Who a request acts for."""

    user_id: int
    name: str
    role: str

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


def hash_key(secret: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(secret.encode()).hexdigest()


def generate_key() -> NewKey:
    """A new random key, its prefix and its hash."""
    prefix = "cs_" + "".join(secrets.choice(_ALPHANUMERIC) for _ in range(9))
    secret = f"{prefix}_{secrets.token_urlsafe(32)}"
    return NewKey(secret, prefix, hash_key(secret))


class KeyCache:
    """What recent keys resolved to (a principal, or None for a rejected key), for ``ttl``
    seconds: a revoked key keeps working in a process for at most that long."""

    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> tuple[bool, Principal | None]:
        """(found, principal); a found None is a key known to be bad."""
        entry = self._entries.get(digest)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def put(self, digest: str, principal: Principal | None) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                now = time.monotonic()
                self._entries = {k: v for k, v in self._entries.items() if v[0] >= now}
                while len(self._entries) >= self.max_entries:
                    self._entries.pop(next(iter(self._entries)))  # the oldest
            self._entries[digest] = (time.monotonic() + self.ttl, principal)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def init_key_cache(app: Flask) -> None:
    """Give ``app`` its key cache (one per process)."""
    app.extensions["api_key_cache"] = KeyCache(app.config["AUTH_CACHE_SECONDS"])


def _lookup(secret: str, digest: str) -> Principal | None:
    with unit_of_work() as session:
        keys = ApiKeyRepository(session)
        found = keys.find_usable(secret[:KEY_PREFIX_LENGTH])
        if found is None or not hmac.compare_digest(found[0].secret_hash, digest):
            return None
        key, user = found
        # Once per cache lifetime, not per request: last_used_at is accurate to the TTL.
        keys.touch(key.id, utcnow())
        return Principal(user.id, user.name, user.role)


def authenticate(secret: str) -> Principal | None:
    """The principal an API key stands for, or None if it is unknown, revoked or malformed."""
    if not KEY_PATTERN.fullmatch(secret):
        return None
    digest = hash_key(secret)
    cache: KeyCache = current_app.extensions["api_key_cache"]
    found, principal = cache.get(digest)
    if not found:
        principal = _lookup(secret, digest)
        cache.put(digest, principal)
    return principal
