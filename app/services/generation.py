"""Generation use cases: record the prompt, relay the LLM's answer, save the exchange.

The request's transaction commits (and its connection goes back to the pool) before the
LLM is called; the exchange is completed later in a short transaction of its own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app
from sqlalchemy.orm import Session

from app.errors import DomainError, NotFound, Unavailable
from app.extensions import db
from app.llm import ChatMessage, get_llm, upstream_status
from app.models import Message
from app.repositories import ConversationRepository, MessageRepository
from app.schemas import MessageOut
from app.services.auth import Principal
from app.services.persistence import save_with_retry
from app.services.titles import title_conversation
from app.services.unit_of_work import unit_of_work
from app.streaming import ExchangeResult, Relay, after_response


@dataclass(frozen=True)
class PendingExchange:
    """An exchange whose prompt is saved and whose answer is not yet: plain values only."""

    message_id: int
    conversation_id: int
    model: str
    prompt: str
    messages: tuple[ChatMessage, ...]
    needs_title: bool


def _history(exchanges: list[tuple[str, str]], max_chars: int) -> list[ChatMessage]:
    """Newest-first exchanges to oldest-first chat messages, within ``max_chars``."""
    kept: list[tuple[str, str]] = []
    used = 0
    for prompt, response in exchanges:
        used += len(prompt) + len(response)
        if used > max_chars:
            break
        kept.append((prompt, response))
    messages: list[ChatMessage] = []
    for prompt, response in reversed(kept):
        messages += [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": response},
        ]
    return messages


def begin_exchange(actor: Principal, conversation_id: int, prompt: str) -> PendingExchange:
    """Save the prompt as an exchange in progress and gather the context to send."""
    config = current_app.config
    with unit_of_work() as session:
        conversation = ConversationRepository(session, actor.scope).get(conversation_id)
        if conversation is None:
            raise NotFound(f"Conversation {conversation_id} does not exist.")
        messages = MessageRepository(session)
        earlier = messages.recent_exchanges(conversation_id, config["HISTORY_MAX_MESSAGES"])
        history = _history(earlier, config["HISTORY_MAX_CHARS"])
        message = messages.create(Message(conversation_id=conversation_id, prompt_content=prompt))
        return PendingExchange(
            message_id=message.id,
            conversation_id=conversation_id,
            model=conversation.model_type,
            prompt=prompt,
            messages=(*history, {"role": "user", "content": prompt}),
            needs_title=conversation.title is None,
        )


def complete_exchange(
    app: Flask, pending: PendingExchange, result: ExchangeResult
) -> Message | None:
    """Write the exchange's outcome; returns the saved message, or None if it could not be."""
    values = {
        "response_content": result.text,
        "is_success": result.is_success,
        "status_code": result.status_code,
        "prompt_tokens": result.usage.prompt_tokens if result.usage else None,
        "response_tokens": result.usage.completion_tokens if result.usage else None,
        "total_tokens": result.usage.total_tokens if result.usage else None,
    }

    def save(session: Session) -> Message | None:
        # None: the conversation was deleted while the answer streamed.
        return MessageRepository(session).update(pending.message_id, values)

    # What an operator needs to restore the exchange by hand (the history is in the database).
    record = {
        "message_id": pending.message_id,
        "conversation_id": pending.conversation_id,
        "model": pending.model,
        "prompt_content": pending.prompt,
        **values,
    }
    return save_with_retry(app, save, record, f"exchange {pending.message_id}")


def _fail_before_start(app: Flask, pending: PendingExchange, error: DomainError) -> None:
    status = upstream_status(error, error.__cause__)
    complete_exchange(app, pending, ExchangeResult("", None, status))


def _complete_as_json(app: Flask, pending: PendingExchange, result: ExchangeResult) -> dict | None:
    message = complete_exchange(app, pending, result)
    return MessageOut().dump(message) if message is not None else None


def _open_relay(
    pending: PendingExchange,
    keepalive: float | None,
    on_finish: Callable[[Flask, PendingExchange, ExchangeResult], Any],
) -> Relay:
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        upstream = get_llm().stream_chat(pending.model, pending.messages)
        relay = Relay(upstream, functools.partial(on_finish, app, pending), keepalive)
        relay.prime()
    except DomainError as error:
        _fail_before_start(app, pending, error)
        raise
    if pending.needs_title:
        after_response(
            functools.partial(
                title_conversation, app, pending.conversation_id, pending.model, pending.prompt
            )
        )
    return relay


def stream_reply(actor: Principal, conversation_id: int, prompt: str, *, keepalive: bool) -> Relay:
    """Start an exchange and return the relay to stream; it saves itself when it ends."""
    pending = begin_exchange(actor, conversation_id, prompt)
    seconds = current_app.config["SSE_KEEPALIVE_SECONDS"] if keepalive else None
    relay = _open_relay(pending, seconds, _complete_as_json)
    after_response(relay.finish)
    return relay


def reply(actor: Principal, conversation_id: int, prompt: str) -> Message:
    """Run a whole exchange and return the saved message; raises if the upstream broke off."""
    pending = begin_exchange(actor, conversation_id, prompt)
    relay = _open_relay(pending, None, complete_exchange)
    for _ in relay:
        pass
    saved = relay.finish()
    if relay.error is not None:
        raise relay.error
    if saved is None:
        # The row is gone with its conversation, or the database stayed down through the
        # save's retries (the exchange is then in the log, whole).
        if not ConversationRepository(db.session).exists(conversation_id):
            raise NotFound(
                f"Conversation {conversation_id} was deleted while its answer was being written."
            )
        raise Unavailable("The answer could not be saved: the database is unavailable.")
    return saved
