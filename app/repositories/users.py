"""Data access for users and their API keys."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import bindparam, exists, select, update

from app.models import ApiKey, User
from app.repositories.base import SqlAlchemyRepository


class UserRepository(SqlAlchemyRepository[User]):
    model = User

    def get_by_name(self, name: str) -> User | None:
        """The user with this name, or None."""
        return self.session.scalar(select(User).where(User.name == name))

    def all(self) -> list[User]:
        """Every user, oldest first."""
        return list(self.session.scalars(select(User).order_by(User.id)))

    def any(self) -> bool:
        """Whether there is at least one user."""
        return bool(self.session.scalar(select(exists().select_from(User))))


class ApiKeyRepository(SqlAlchemyRepository[ApiKey]):
    model = ApiKey

    def find_usable(self, prefix: str) -> tuple[ApiKey, User] | None:
        """The unrevoked key with this prefix and its active owner, or None."""
        query = (
            select(ApiKey, User)
            .join(User, ApiKey.user_id == User.id)
            .where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None), User.is_active.is_(True))
        )
        row = self.session.execute(query).one_or_none()
        return None if row is None else (row[0], row[1])

    def touch(self, uses: Mapping[int, datetime]) -> None:
        """Record when keys were last used: ``uses`` maps key ids to times."""
        if uses:
            # The table, not the ORM entity: a plain executemany, and a key deleted
            # meanwhile is skipped rather than an error.
            table = ApiKey.__table__
            statement = (
                update(table)
                .where(table.c.id == bindparam("key_id"))
                .values(last_used_at=bindparam("used_at"))
            )
            self.session.execute(
                statement, [{"key_id": k, "used_at": when} for k, when in uses.items()]
            )

    def revoke(self, prefix: str, when: datetime) -> bool:
        """Revoke the key with this prefix; False if there is no such unrevoked key."""
        result = self.session.execute(
            update(ApiKey)
            .where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
            .values(revoked_at=when),
            execution_options={"synchronize_session": False},
        )
        return bool(result.rowcount)

    def for_users(self, user_ids: list[int]) -> list[ApiKey]:
        """Every key of these users, oldest first."""
        query = select(ApiKey).where(ApiKey.user_id.in_(user_ids)).order_by(ApiKey.id)
        return list(self.session.scalars(query))
