"""Generation use cases: record the prompt, relay the LLM's answer, save the exchange.

The exchange's lifecycle is app/exchange/lifecycle.py's; this module wires it to the database (the
prompt's row, the final save), the LLM (the upstream stream) and the response (its close
hook). The request's transaction commits, and its connection goes back to the pool, before
the LLM is called.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, current_app

from app.errors import Conflict, DomainError, NotFound, Unprocessable
from app.exchange.lifecycle import NO_TEXT, Exchange, PendingExchange
from app.exchange.progress import estimate_tokens
from app.exchange.wire import after_response
from app.extensions import db
from app.llm.client import get_llm
from app.llm.errors import map_error
from app.llm.events import ChatMessage, ChatStream
from app.models import CURRENT_EXCHANGE, NOT_STORED_PARAMS, Message, utcnow
from app.repositories import ConversationRepository, MessageRepository
from app.services.auth import Principal
from app.services.budgets import check_budget
from app.services.checkpoints import live_exchanges
from app.services.persistence import save_with_retry
from app.services.titles import title_conversation
from app.services.unit_of_work import one_statement
from app.services.usage import end_exchange
from app.web.request_id import current_request_id, request_received_at


def _history(exchanges: list[tuple[str, str]], max_chars: int) -> list[ChatMessage]:
    """Newest-first exchanges to oldest-first chat messages, within ``max_chars``."""
    kept: list[tuple[str, str]] = []
    used = 0
    for prompt, response in exchanges:
        if not (prompt or response):
            continue  # an exchange that kept no text (a no-store key's) has none to send
        used += len(prompt) + len(response)
        if used > max_chars:
            break
        kept.append((prompt, response))
    messages: list[ChatMessage] = []
    for prompt, response in reversed(kept):
        # A deleted item leaves its text empty: nothing of it is sent.
        if prompt:
            messages.append({"role": "user", "content": prompt})
        if response:
            messages.append({"role": "assistant", "content": response})
    return messages


def check_conversation(actor: Principal, conversation_id: int) -> None:
    """Raise NotFound unless ``actor`` may generate in this conversation (read only)."""
    if not ConversationRepository(db.session, actor.user_id).exists(conversation_id):
        raise NotFound(f"Conversation {conversation_id} does not exist.")


def sent_characters(messages: Iterable[ChatMessage]) -> int:
    """Characters of the messages' text: what a prompt estimate is made from."""
    return sum(len(message.get("content") or "") for message in messages)


def begin_exchange(
    actor: Principal,
    conversation_id: int,
    prompt: str,
    endpoint: str,
    parent_id: int | None = CURRENT_EXCHANGE,
    wants_saved_row: bool = True,
) -> PendingExchange:
    """Commit the prompt as an exchange in progress, after ``parent_id`` (None: a first
    exchange; CURRENT_EXCHANGE: the current one), and gather the context to send: the
    history of the branch it continues. It becomes the conversation's current exchange.

    Every generation endpoint generates only in the caller's own conversations (admins
    included: another user's is a 404), so the caller is the one charged and checked.
    Two round trips on PostgreSQL: the conversation and its history in one read, then the
    prompt's INSERT (which moves the conversation's current exchange, count and activity
    in the same statement), which commits by itself."""
    config = current_app.config
    request_id = current_request_id()
    session = db.session
    # Generation happens in the caller's own conversations only, admins included: the
    # caller is the one charged and checked against their limits and budget.
    context = ConversationRepository(session, actor.user_id).generation_context(
        conversation_id, config["HISTORY_MAX_MESSAGES"], parent_id
    )
    if context is None:
        raise NotFound(f"Conversation {conversation_id} does not exist.")
    if parent_id not in (None, CURRENT_EXCHANGE) and context.parent_id is None:
        raise Unprocessable(
            f"Message {parent_id} is not an exchange of conversation {conversation_id}.",
            {"json": {"parent_id": ["Not an exchange of this conversation."]}},
        )
    asked = utcnow()  # the day it counts on, and so the day whose budget is checked
    check_budget(session, actor, asked)
    history = _history(context.exchanges, config["HISTORY_MAX_CHARS"])
    messages: tuple[ChatMessage, ...] = (*history, {"role": "user", "content": prompt})
    estimate = estimate_tokens(sent_characters(messages))
    kept = not actor.no_store  # a no-store key's exchange keeps none of its text
    with one_statement() as session:
        message_id = MessageRepository(session).insert(
            {
                "conversation_id": conversation_id,
                "parent_id": context.parent_id,
                "prompt_content": prompt if kept else "",
                "input_items": [{"role": "user", "content": prompt}] if kept else [],
                "request_params": None if kept else dict(NOT_STORED_PARAMS),
                "model": context.model_type,
                "endpoint": endpoint,
                "request_id": request_id,
                "created_at": asked,
                "heartbeat_at": asked,
                # Until the upstream reports its usage: what the reaper charges if the
                # worker dies (the history sent is in no column).
                "prompt_tokens": estimate,
                "usage_estimated": True,
            }
        )
    return PendingExchange(
        message_id=message_id,
        conversation_id=conversation_id,
        model=context.model_type,
        prompt=prompt,
        messages=messages,
        # Never titled from a prompt that is not kept.
        needs_title=context.untitled and kept,
        endpoint=endpoint,
        request_id=request_id,
        received_at=request_received_at(),
        siblings=context.siblings,
        prompt_estimate=estimate,
        asked_on=asked.date(),
        keep_text=kept,
        wants_saved_row=wants_saved_row,
    )


def _save(exchange: Exchange, values: dict[str, Any]) -> Message | None:
    """Write an exchange's ending (one statement on PostgreSQL); None if its row is gone."""
    pending = exchange.pending
    if pending.finish_values is not None:
        values = pending.finish_values(values)
    if not pending.keep_text:
        values = {**values, **NO_TEXT}
    # What `flask messages recover` needs if the database stays down through the retries.
    record = {"message_id": pending.message_id, "conversation_id": pending.conversation_id}
    next_fingerprint = pending.next_fingerprint and pending.next_fingerprint(values)
    if next_fingerprint:
        # Kept on the exchange: the history it ended, which a /v1 client resends next.
        values = {**values, "history_fingerprint": next_fingerprint}
    message = save_with_retry(
        exchange.app,
        functools.partial(
            end_exchange,
            message_id=pending.message_id,
            values=values,
            whole=pending.wants_saved_row,
        ),
        {**record, **values},
        f"exchange {pending.message_id}",
        unit=one_statement,
    )
    if message is not None:
        # Not a column: MessageOut's count of the other exchanges after the same parent.
        message.siblings = pending.siblings  # type: ignore[attr-defined]
    return message


def open_exchange(
    pending: PendingExchange,
    open_upstream: Callable[[], ChatStream] | None = None,
    map_upstream_error: Callable[[Exception], DomainError] = map_error,
) -> Exchange:
    """Open the upstream for a pending exchange and wait for its first event; the response's
    close hook ends the exchange (if nothing did) and then titles the conversation.
    ``open_upstream``: another way to call the LLM (the /v1 gateway's), whose errors
    ``map_upstream_error`` maps."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    title = (
        functools.partial(
            title_conversation,
            app,
            pending.conversation_id,
            pending.model,
            pending.prompt,
            pending.asked_on,
        )
        if pending.needs_title
        else None
    )
    exchange = Exchange(
        app,
        pending,
        save=_save,
        live=live_exchanges(app),
        title=title,
        map_error=map_upstream_error,
    )
    after_response(exchange.close)
    if open_upstream is None:
        llm = get_llm()  # here: the upstream may be opened by a reader without app context

        def open_upstream() -> ChatStream:
            return llm.stream_chat(pending.model, pending.messages, pending.request_id)

    # Heartbeats from here on; a failure before the first event ends the exchange as
    # failed and is raised to be answered as an HTTP error.
    exchange.open(open_upstream)
    return exchange


def stream_reply(
    actor: Principal,
    conversation_id: int,
    prompt: str,
    endpoint: str,
    parent_id: int | None = CURRENT_EXCHANGE,
    wants_saved_row: bool = True,
) -> Exchange:
    """Start an exchange after ``parent_id`` and return it, ready to relay; it records
    itself however it ends (``wants_saved_row``: see PendingExchange)."""
    return open_exchange(
        begin_exchange(actor, conversation_id, prompt, endpoint, parent_id, wants_saved_row)
    )


def reply(
    actor: Principal, conversation_id: int, prompt: str, parent_id: int | None = CURRENT_EXCHANGE
) -> Message:
    """Run a whole exchange and return the saved message; raises what went wrong."""
    return finish(stream_reply(actor, conversation_id, prompt, "messages", parent_id))


def stream_regeneration(actor: Principal, conversation_id: int, message_id: int) -> Exchange:
    """Start another answer to exchange ``message_id``'s prompt: a new exchange with its
    prompt and its parent (a sibling), which becomes current. NotFound if there is none (a
    deleted one, a tombstone, has no prompt left)."""
    found = MessageRepository(db.session).in_conversation(
        conversation_id, message_id, actor.user_id, live_only=True
    )
    if found is None:
        raise NotFound(f"Message {message_id} does not exist in conversation {conversation_id}.")
    prompt, parent_id = found
    if not prompt:
        raise Conflict(
            f"Exchange {message_id} kept no prompt (it was made with a no-store key, or "
            "deleted): there is nothing to answer again."
        )
    return open_exchange(begin_exchange(actor, conversation_id, prompt, "messages", parent_id))


def regenerate(actor: Principal, conversation_id: int, message_id: int) -> Message:
    """``stream_regeneration``, run whole: the saved message, or what went wrong."""
    return finish(stream_regeneration(actor, conversation_id, message_id))


def finish(exchange: Exchange) -> Message:
    """Relay a whole exchange to nobody and return its saved message as its client is
    answered (``Exchange.answered``); raises its problem."""
    for _ in exchange.relay(lambda _chunk: None):
        pass
    if exchange.problem is not None:
        raise exchange.problem
    answered = exchange.answered()
    assert answered is not None  # a missing row is a problem (NotFound)
    return answered
