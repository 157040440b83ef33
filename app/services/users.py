"""User and API key management (the ``flask users`` and ``flask keys`` commands)."""

from __future__ import annotations

from dataclasses import dataclass

from app.errors import Conflict, NotFound
from app.extensions import db
from app.models import ApiKey, User, utcnow
from app.repositories import ApiKeyRepository, UserRepository
from app.services.auth import NewKey, generate_key
from app.services.unit_of_work import unit_of_work

DEV_USER = "dev"


@dataclass(frozen=True)
class UserSummary:
    name: str
    role: str
    is_active: bool
    key_prefixes: tuple[str, ...]


def _add_key(user: User, keys: ApiKeyRepository) -> NewKey:
    new = generate_key()
    keys.create(ApiKey(user_id=user.id, prefix=new.prefix, secret_hash=new.secret_hash))
    return new


def create_user(name: str, *, admin: bool = False) -> NewKey:
    """Create a user with a first key; returns the key (shown once, stored only hashed)."""
    with unit_of_work() as session:
        users = UserRepository(session)
        if users.get_by_name(name) is not None:
            raise Conflict(f"A user named {name!r} already exists.")
        user = users.create(User(name=name, role="admin" if admin else "user"))
        return _add_key(user, ApiKeyRepository(session))


def create_key(name: str) -> NewKey:
    """Give an existing user one more key."""
    with unit_of_work() as session:
        user = UserRepository(session).get_by_name(name)
        if user is None:
            raise NotFound(f"No user is named {name!r}.")
        return _add_key(user, ApiKeyRepository(session))


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
        UserSummary(user.name, user.role, user.is_active, tuple(prefixes.get(user.id, ())))
        for user in users
    ]


def create_first_user() -> NewKey | None:
    """In an empty database, create an admin named ``dev`` and return its key; else None."""
    with unit_of_work() as session:
        users = UserRepository(session)
        if users.any():
            return None
        user = users.create(User(name=DEV_USER, role="admin"))
        return _add_key(user, ApiKeyRepository(session))
