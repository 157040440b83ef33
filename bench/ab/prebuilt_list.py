"""A: ``ConversationRepository.list_matching`` building its statement on every call (as at
feb2500); B: the prebuilt statement it runs without a metadata filter.
``python -m bench.ab bench/ab/prebuilt_list.py --target list``.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select

from app.models import Conversation
from app.repositories.base import keyset
from app.repositories.conversations import ConversationRepository, metadata_matches

NEW = ConversationRepository.list_matching


def old_list_matching(
    self: ConversationRepository,
    *,
    skip: int = 0,
    take: int = 100,
    after: int | None = None,
    metadata: Mapping[str, str] | None = None,
    archived: bool = False,
) -> list[Conversation]:
    query = select(Conversation).where(
        *self._scope(),
        Conversation.archived == archived,
        *keyset(Conversation.id, after),
        metadata_matches(self.session, metadata or {}),
    )
    return list(self.session.scalars(query.order_by(Conversation.id).offset(skip).limit(take)))


def swap_a() -> None:
    ConversationRepository.list_matching = old_list_matching  # type: ignore[method-assign]


def swap_b() -> None:
    ConversationRepository.list_matching = NEW  # type: ignore[method-assign]
