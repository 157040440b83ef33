"""The repository interface, and its SQLAlchemy implementation shared by every model."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.orm import Session

from app.extensions import Base

ModelT = TypeVar("ModelT", bound=Base)


def keyset(id_column: Any, after: int | None) -> list[ColumnElement[bool]]:
    """The condition for rows past id ``after`` (keyset paging: an index seek, however deep)."""
    return [] if after is None else [id_column > after]


class Repository(ABC, Generic[ModelT]):
    """Data access for one kind of record. Implementations never commit."""

    @abstractmethod
    def list(self, *, skip: int = 0, take: int = 100, after: int | None = None) -> list[ModelT]:
        """Records in creation order: ``take`` of them, past id ``after``, after ``skip``."""

    @abstractmethod
    def get(self, uid: int) -> ModelT | None:
        """The record with this id, or None."""

    @abstractmethod
    def create(self, record: ModelT) -> ModelT:
        """Add a new record; its id is assigned on return."""

    @abstractmethod
    def update(self, uid: int, values: Mapping[str, Any]) -> ModelT | None:
        """Set ``values`` on the record with this id; None if there is none."""

    @abstractmethod
    def delete(self, uid: int) -> bool:
        """Delete the record with this id; False if there was none."""


class SqlAlchemyRepository(Repository[ModelT]):
    """A repository over one mapped class; subclasses name it in ``model``."""

    model: ClassVar[type[Any]]

    def __init__(self, session: Session) -> None:
        self.session = session

    def _scope(self) -> list[ColumnElement[bool]]:
        """Conditions every query of this repository adds (none here; see subclasses)."""
        return []

    def list(self, *, skip: int = 0, take: int = 100, after: int | None = None) -> list[ModelT]:
        query = select(self.model).where(*self._scope(), *keyset(self.model.id, after))
        return list(self.session.scalars(query.order_by(self.model.id).offset(skip).limit(take)))

    def get(self, uid: int) -> ModelT | None:
        scope = self._scope()
        if not scope:
            return self.session.get(self.model, uid)
        return self.session.scalar(select(self.model).where(self.model.id == uid, *scope))

    def create(self, record: ModelT) -> ModelT:
        self.session.add(record)
        self.session.flush()
        return record

    def update(self, uid: int, values: Mapping[str, Any]) -> ModelT | None:
        # One UPDATE ... RETURNING rather than SELECT then UPDATE: a round trip less, and
        # no window between reading and writing. Column onupdate defaults still apply.
        query = (
            update(self.model)
            .where(self.model.id == uid, *self._scope())
            .values(**values)
            .returning(self.model)
            .execution_options(synchronize_session=False)
        )
        return self.session.scalars(query).one_or_none()

    def delete(self, uid: int) -> bool:
        result = self.session.execute(
            delete(self.model).where(self.model.id == uid, *self._scope()),
            execution_options={"synchronize_session": False},
        )
        return bool(result.rowcount)
