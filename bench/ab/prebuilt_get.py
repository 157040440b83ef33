"""A: ``ConversationRepository.get`` in scope as at 7703c35 (its statement built per call);
B: the code as it is (built once). ``python -m bench.ab bench/ab/prebuilt_get.py --target get``.
"""

from __future__ import annotations

from app.models import Conversation
from app.repositories.base import SqlAlchemyRepository
from app.repositories.conversations import ConversationRepository

NEW = ConversationRepository.get


def get(self: ConversationRepository, uid: int) -> Conversation | None:
    return SqlAlchemyRepository.get(self, uid)


def swap_a() -> None:
    ConversationRepository.get = get  # type: ignore[method-assign]


def swap_b() -> None:
    ConversationRepository.get = NEW  # type: ignore[method-assign]
