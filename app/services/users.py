"""User and API key management (the ``flask users`` and ``flask keys`` commands)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound
from app.extensions import db
from app.models import ApiKey, User, utcnow
from app.repositories import ApiKeyRepository, UserRepository
from app.services.auth import NewKey, generate_key
from app.services.unit_of_work import read_only, unit_of_work

DEV_USER = "dev"


class Keep(Enum):
    """An argument not given: the value stays as it is (where None is a value to set)."""

    KEEP = "keep"


@dataclass(frozen=True)
class UserSummary:
    name: str
    role: str
    is_active: bool
    key_prefixes: tuple[str, ...]
    rpm_limit: int | None = None
    daily_token_budget: int | None = None
    retention_days: int | None = None


@dataclass(frozen=True)
class KeySummary:
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    no_store: bool = False

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


def _add_key(
    user: User,
    keys: ApiKeyRepository,
    expires_in: timedelta | None = None,
    no_store: bool = False,
) -> NewKey:
    now = utcnow()
    new = generate_key(None if expires_in is None else now + expires_in)
    keys.create(
        ApiKey(
            user_id=user.id,
            prefix=new.prefix,
            secret_hash=new.secret_hash,
            created_at=now,
            expires_at=new.expires_at,
            no_store=no_store,
        )
    )
    return new


def create_user(name: str, *, admin: bool = False) -> NewKey:
    """Create a user with a first key; returns the key (shown once, stored only hashed)."""
    with unit_of_work() as session:
        return add_user(session, name, admin=admin)


def add_user(session: Session, name: str, *, admin: bool = False) -> NewKey:
    """``create_user`` in the caller's transaction (a session of its own engine, tests'
    deployments); Conflict if the name is taken."""
    users = UserRepository(session)
    if users.get_by_name(name) is not None:
        raise Conflict(f"A user named {name!r} already exists.")
    user = users.create(User(name=name, role="admin" if admin else "user"))
    return _add_key(user, ApiKeyRepository(session))


def _user(users: UserRepository, name: str) -> User:
    user = users.get_by_name(name)
    if user is None:
        raise NotFound(f"No user is named {name!r}.")
    return user


def create_key(name: str, expires_in: timedelta | None = None, no_store: bool = False) -> NewKey:
    """Give an existing user one more key, valid for ``expires_in`` (None: no expiry);
    ``no_store``: the exchanges made with it keep none of their text."""
    with unit_of_work() as session:
        user = _user(UserRepository(session), name)
        return _add_key(user, ApiKeyRepository(session), expires_in, no_store)


def list_keys(name: str) -> list[KeySummary]:
    """Every key of user ``name``, revoked and expired ones included, oldest first."""
    with read_only() as session:
        user = _user(UserRepository(session), name)
        return [
            KeySummary(
                k.prefix, k.created_at, k.last_used_at, k.expires_at, k.revoked_at, k.no_store
            )
            for k in ApiKeyRepository(session).for_users([user.id])
        ]


def set_active(name: str, active: bool) -> bool:
    """Activate or deactivate user ``name``; False if they already were. An inactive user's
    keys are refused (within the cache TTL); their conversations are kept."""
    with unit_of_work() as session:
        user = _user(UserRepository(session), name)
        if user.is_active == active:
            return False
        user.is_active = active
        return True


def revoke_key(prefix: str) -> None:
    """Revoke the key with this prefix (running processes drop it within the cache TTL)."""
    with unit_of_work() as session:
        if not ApiKeyRepository(session).revoke(prefix, utcnow()):
            raise NotFound(f"No unrevoked key has the prefix {prefix!r}.")


def list_users() -> list[UserSummary]:
    """Every user, with the prefixes of their unrevoked keys."""
    users = UserRepository(db.session).all()
    keys = ApiKeyRepository(db.session).for_users([user.id for user in users])
    prefixes: dict[int, list[str]] = {}
    for key in keys:
        if key.revoked_at is None:
            prefixes.setdefault(key.user_id, []).append(key.prefix)
    return [
        UserSummary(
            user.name,
            user.role,
            user.is_active,
            tuple(prefixes.get(user.id, ())),
            user.rpm_limit,
            user.daily_token_budget,
            user.retention_days,
        )
        for user in users
    ]


def set_limits(
    name: str,
    *,
    rpm: int | None = None,
    tokens_per_day: int | None = None,
    clear: bool = False,
    retention_days: int | Keep | None = Keep.KEEP,
) -> tuple[int | None, int | None, int | None]:
    """Set (or with ``clear``, remove) a user's own limits and retention; returns them as
    they now stand. ``retention_days``: the days their inactive conversations are kept
    (None: RETENTION_DAYS applies). Running servers apply the limits once the user's
    cached key expires (AUTH_CACHE_SECONDS); the retention, at the next purge."""
    with unit_of_work() as session:
        user = _user(UserRepository(session), name)
        if clear:
            user.rpm_limit = user.daily_token_budget = user.retention_days = None
        if rpm is not None:
            user.rpm_limit = rpm
        if tokens_per_day is not None:
            user.daily_token_budget = tokens_per_day
        if retention_days is not Keep.KEEP:
            user.retention_days = retention_days
        return user.rpm_limit, user.daily_token_budget, user.retention_days


def create_first_user() -> NewKey | None:
    """In an empty database, create an admin named ``dev`` and return its key; else None."""
    with unit_of_work() as session:
        users = UserRepository(session)
        if users.any():
            return None
        user = users.create(User(name=DEV_USER, role="admin"))
        return _add_key(user, ApiKeyRepository(session))
