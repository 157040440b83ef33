"""The seed's app: lifespan, the conversation router (controllers over the repository and
service), and /readyz for the benchmark's start-up probe."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException
from sqlalchemy import select

from bench.seed_peer.database import DBSessionDep, engine
from bench.seed_peer.entities import Conversation
from bench.seed_peer.repositories import ConversationRepository, ConversationService
from bench.seed_peer.schemas import (
    ConversationCreate,
    ConversationOut,
    ConversationUpdate,
    MessageOut,
)

OWNER_ID = int(os.environ.get("BENCH_OWNER_ID") or 1)


def require_bearer(authorization: Annotated[str | None, Header()] = None) -> None:
    """Any bearer key passes: the least a check can do (convstore looks its key up)."""
    if not authorization or not authorization.startswith("Bearer "):
        raise HTTPException(status_code=401, detail="Not authenticated")


async def get_conversation(conversation_id: int, session: DBSessionDep) -> Conversation:
    async with session.begin():
        result = await session.execute(
            select(Conversation).where(Conversation.id == conversation_id)
        )
        conversation = result.scalars().first()
        if not conversation:
            raise HTTPException(status_code=404, detail="Conversation not found")
        return conversation


GetConversationDep = Annotated[Conversation, Depends(get_conversation)]
router = APIRouter(prefix="/conversations", dependencies=[Depends(require_bearer)])


@router.get("")
async def list_conversations(session: DBSessionDep, skip: int = 0, take: int = 100):
    conversations = await ConversationRepository(session).list(skip, take)
    return [ConversationOut.model_validate(c) for c in conversations]


@router.get("/{conversation_id}")
async def read_conversation(conversation: GetConversationDep):
    return ConversationOut.model_validate(conversation)


@router.get("/{conversation_id}/messages")
async def list_messages(
    conversation: GetConversationDep, session: DBSessionDep, skip: int = 0, take: int = 100
):
    messages = await ConversationService(session).list_messages(conversation.id, skip, take)
    return [MessageOut.model_validate(m) for m in messages]


@router.post("", status_code=201)
async def create_conversation(conversation: ConversationCreate, session: DBSessionDep):
    new = await ConversationRepository(session, OWNER_ID).create(conversation)
    return ConversationOut.model_validate(new)


@router.put("/{conversation_id}", status_code=202)
async def update_conversation(
    conversation_id: int, updated: ConversationUpdate, session: DBSessionDep
):
    conversation = await ConversationRepository(session).update(conversation_id, updated)
    if not conversation:
        raise HTTPException(status_code=404, detail="Conversation not found")
    return ConversationOut.model_validate(conversation)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield  # the schema is convstore's migrations': no create_all
    await engine.dispose()


app = FastAPI(lifespan=lifespan)
app.include_router(router)


@app.get("/readyz")
async def ready() -> dict[str, str]:
    return {"status": "ok"}
