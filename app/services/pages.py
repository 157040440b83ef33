"""One page of a list, and whether another follows it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    has_more: bool

    @classmethod
    def of(cls, rows: list[T], take: int) -> Page[T]:
        """The page from ``take + 1`` rows read: the extra one only says more follow."""
        return cls(rows[:take], len(rows) > take)
