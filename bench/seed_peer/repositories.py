"""The seed's repository interface, its conversation repository and the service extending it
(delete left out: no benchmark drives it)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bench.seed_peer.entities import Conversation, Message
from bench.seed_peer.schemas import ConversationCreate, ConversationUpdate


class Repository(ABC):
    @abstractmethod
    async def list(self, skip: int, take: int) -> list[Any]: ...

    @abstractmethod
    async def get(self, uid: int) -> Any: ...

    @abstractmethod
    async def create(self, record: Any) -> Any: ...

    @abstractmethod
    async def update(self, uid: int, record: Any) -> Any: ...


class ConversationRepository(Repository):
    def __init__(self, session: AsyncSession, owner_id: int = 0) -> None:
        self.session = session
        self.owner_id = owner_id  # what convstore's schema requires of a new row

    async def list(self, skip: int, take: int) -> list[Conversation]:
        async with self.session.begin():
            query = select(Conversation).order_by(Conversation.id).offset(skip).limit(take)
            result = await self.session.execute(query)
            return list(result.scalars().all())

    async def get(self, conversation_id: int) -> Conversation | None:
        async with self.session.begin():
            result = await self.session.execute(
                select(Conversation).where(Conversation.id == conversation_id)
            )
            return result.scalars().first()

    async def create(self, conversation: ConversationCreate) -> Conversation:
        new = Conversation(**conversation.model_dump(), owner_id=self.owner_id)
        async with self.session.begin():
            self.session.add(new)
        await self.session.refresh(new)
        return new

    async def update(
        self, conversation_id: int, updated: ConversationUpdate
    ) -> Conversation | None:
        conversation = await self.get(conversation_id)
        if not conversation:
            return None
        for key, value in updated.model_dump().items():
            setattr(conversation, key, value)
        await self.session.commit()
        await self.session.refresh(conversation)
        return conversation


class ConversationService(ConversationRepository):
    async def list_messages(self, conversation_id: int, skip: int, take: int) -> list[Message]:
        query = (
            select(Message)
            .where(Message.conversation_id == conversation_id)
            .order_by(Message.id)
            .offset(skip)
            .limit(take)
        )
        result = await self.session.execute(query)
        return list(result.scalars().all())
