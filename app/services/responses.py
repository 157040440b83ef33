"""The Responses service for /v1/responses: create a response (one exchange, translated to
the upstream's Chat Completions), retrieve or delete it, list its input items."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from flask import current_app

from app.conflicts import ConversationGone, ParentGone
from app.errors import Unprocessable
from app.exchange.lifecycle import NO_TEXT, Exchange, PendingExchange
from app.exchange.progress import estimate_tokens
from app.exchange.responses_ids import conversation_id
from app.exchange.responses_items import context_items, default_layout, input_slots, listed_item
from app.exchange.responses_object import ECHOED, response_object
from app.exchange.responses_to_chat import chat_body, prompt_text, system_text
from app.exchange.responses_wire import Items
from app.extensions import db
from app.llm.client import get_llm
from app.llm.errors import pass_through_error
from app.llm.events import ChatStream
from app.models import Conversation, Message, utcnow
from app.repositories import ConversationRepository, MessageRepository
from app.repositories.deletes import DeleteRepository
from app.repositories.responses import ResponseRepository
from app.services.auth import Principal
from app.services.budgets import check_budget
from app.services.gateway import (
    canonical_message,
    cap_output,
    ended_fingerprint,
    sent_characters,
    with_storable_strings,
)
from app.services.generation import open_exchange
from app.services.response_context import ResponseContext, resolve_context
from app.services.response_lookup import (
    RESPONSES_ENDPOINT,
    Deleted,
    ItemList,
    UnknownId,
    find_response,
    page,
    resolve_references,
)
from app.services.unit_of_work import one_statement, unit_of_work
from app.web.request_id import current_request_id, request_received_at


@dataclass
class Started:
    """A response whose exchange has begun: what the wire needs to relay it."""

    exchange: Exchange
    items: Items
    snapshot: dict[str, Any]
    params: dict[str, Any]
    stored: bool
    created_at: datetime
    ended: dict[str, Any] = field(default_factory=dict)  # the ending's values, as made

    def finish_values(self, values: dict[str, Any]) -> dict[str, Any]:
        """The values the exchange is saved with: its output items as the client received
        them; without store, none of its text."""
        values = {**values, "output_items": _settled_layout(self.items.layout, values)}
        self.ended = values
        return values if self.stored else {**values, **NO_TEXT}

    def final(self, exchange: Exchange) -> dict[str, Any]:
        """The Response once the exchange has ended: from its saved row (what a retrieval
        returns), or, with nothing kept or saved, from the ending's values."""
        if self.stored and exchange.saved is not None:
            return response_object(exchange.saved, self.params)
        pending = exchange.pending
        row = SimpleNamespace(
            id=pending.message_id,
            created_at=self.created_at,
            model=pending.model,
            input_items=None,
            prompt_content="",
            **{
                "response_content": "",
                "reasoning_content": None,
                "refusal_content": None,
                "tool_calls": None,
                "is_success": None,
                "outcome": None,
                "status_code": None,
                "finish_reason": None,
                "duration_ms": None,
                "prompt_tokens": None,
                "response_tokens": None,
                "total_tokens": None,
                "cached_tokens": None,
                "reasoning_tokens": None,
                **self.ended,
            },
        )
        row.output_items = self.ended.get("output_items") or default_layout(row)
        return response_object(row, self.params)


@dataclass(frozen=True)
class UpstreamRequest:
    """The Chat Completions request a response is sent as, and what is derived from it."""

    body: dict[str, Any]  # held to MAX_OUTPUT_TOKENS
    capped: int | None  # the cap, when the client asked for more than it
    history: list[Any]  # the messages sent, canonical: what a resent history is found by
    params: dict[str, Any]  # the parameters the Response echoes
    estimate: int  # the prompt's tokens, estimated until the upstream reports them


@dataclass(frozen=True)
class Recorded:
    """The in-progress exchange row that records a response."""

    message_id: int
    conversation_id: int
    untitled: bool  # its conversation has no title yet


# ------------------------------------------------------------------------ create
def create_response(
    actor: Principal, request: dict[str, Any], *, temporary: bool = False
) -> Started:
    """Record a Responses request as an exchange in its place in the tree and call the
    upstream with its context; returns it, ready to relay. A no-store key's request is
    made as with store: false (its Response says so). A conversation it creates is
    ``temporary`` if asked."""
    if actor.no_store:
        if request.get("conversation") is not None:
            message = (
                "This API key keeps no text (a no-store key): conversation cannot be used, as "
                "the conversation keeps the response's input and output."
            )
            raise Unprocessable(message, {"json": {"conversation": [message]}})
        request = {**request, "store": False}
    stored = request["store"] is not False
    # Generation happens in the caller's own conversations only, admins included: the
    # caller is the one charged and checked.
    responses = ResponseRepository(db.session, actor.user_id)
    request = {**request, "input": resolve_references(responses, request["input"], "input")}
    context = resolve_context(responses, actor.user_id, request)
    upstream = _upstream_request(request, context)
    created_at = utcnow()  # the day it counts on, and so the day whose budget is checked
    check_budget(db.session, actor, created_at)
    request_id = current_request_id()
    try:
        recorded = _record_in_progress(
            actor, request, context, upstream, stored, created_at, request_id, temporary
        )
    except (ParentGone, ConversationGone) as gone:
        previous = request.get("previous_response_id")
        if previous is None:
            raise
        # Deleted since it was read: as unknown as an id that never was.
        raise UnknownId(f"No response with id {previous!r}.", "previous_response_id") from gone
    started = Started(
        exchange=None,  # type: ignore[arg-type]  # set once the upstream is open
        items=Items(recorded.message_id, emit=bool(request["stream"])),
        snapshot=_in_progress_snapshot(recorded, request, upstream.params, created_at),
        params=upstream.params,
        stored=stored,
        created_at=created_at,
    )
    pending = _pending_exchange(
        request, context, upstream, recorded, started, created_at, request_id
    )
    started.exchange = _open_upstream(pending, upstream.body, request_id)
    return started


def _upstream_request(request: Mapping[str, Any], context: ResponseContext) -> UpstreamRequest:
    """The response's request translated to Chat Completions, after its context."""
    param = current_app.config["MAX_OUTPUT_TOKENS_PARAM"]
    body = chat_body(
        {**request, "input": context.sent_input}, context_items(context.context), param
    )
    # The history a client that keeps it resends next, less the answer (added when the
    # exchange ends) and the instructions (a request's own, as OpenAI has them).
    history = body["messages"][1:] if request.get("instructions") else body["messages"]
    canonical = [canonical_message(m) for m in history]
    capped = cap_output(body)
    params = {key: request.get(key) for key in ECHOED}
    params["max_output_tokens"] = body.get(param)
    if context.conversation is not None:
        params["conversation"] = conversation_id(context.conversation.id)
    estimate = estimate_tokens(sent_characters(body))
    return UpstreamRequest(body, capped, canonical, params, estimate)


def _record_in_progress(
    actor: Principal,
    request: Mapping[str, Any],
    context: ResponseContext,
    upstream: UpstreamRequest,
    stored: bool,
    created_at: datetime,
    request_id: str | None,
    temporary: bool = False,
) -> Recorded:
    """Commit the response's exchange row, in progress, in its place in the tree."""
    parent, conversation = context.parent, context.conversation
    joins = stored and (parent is not None or conversation is not None)
    with one_statement() if joins else unit_of_work() as session:
        if not joins:
            # store: false never joins a tree: it is a record of use, not of content.
            created = ConversationRepository(session).create(
                Conversation(
                    title=None,
                    model_type=request["model"],
                    owner_id=actor.user_id,
                    temporary=temporary,
                )
            )
            thread_id, untitled, parent_id = created.id, True, None
        else:
            thread_id = parent.conversation_id if parent is not None else conversation.id
            untitled = conversation.title is None if conversation is not None else False
            parent_id = parent.id if parent is not None else None
        new_input = context.new_input
        message_id = MessageRepository(session).insert(
            {
                "conversation_id": thread_id,
                "parent_id": parent_id,
                "prompt_content": prompt_text(new_input) if stored else "",
                "model": request["model"],
                "endpoint": RESPONSES_ENDPOINT,
                "request_id": request_id,
                "heartbeat_at": created_at,
                "created_at": created_at,
                "request_params": with_storable_strings(
                    upstream.params if stored else {"store": False}
                ),
                "system_prompt": system_text(request) if stored else None,
                "input_items": with_storable_strings(new_input) if stored else [],
                "prompt_tokens": upstream.estimate,  # until the upstream reports its usage
                "usage_estimated": True,
            }
        )
    return Recorded(message_id, thread_id, untitled)


def _in_progress_snapshot(
    recorded: Recorded,
    request: Mapping[str, Any],
    params: Mapping[str, Any],
    created_at: datetime,
) -> dict[str, Any]:
    """The Response as response.created sends it: in progress, no output yet."""
    row = SimpleNamespace(
        id=recorded.message_id, created_at=created_at, model=request["model"], duration_ms=None
    )
    return response_object(row, params, in_progress=True)


def _pending_exchange(
    request: Mapping[str, Any],
    context: ResponseContext,
    upstream: UpstreamRequest,
    recorded: Recorded,
    started: Started,
    created_at: datetime,
    request_id: str | None,
) -> PendingExchange:
    """The exchange's lifecycle parameters: what it ends with, is titled and found by."""
    stored = started.stored
    return PendingExchange(
        message_id=recorded.message_id,
        conversation_id=recorded.conversation_id,
        model=request["model"],
        prompt=prompt_text(context.new_input),
        messages=(),  # the translated request goes to the upstream whole
        needs_title=stored and recorded.untitled,
        endpoint=RESPONSES_ENDPOINT,
        request_id=request_id,
        received_at=request_received_at(),
        response_headers={}
        if upstream.capped is None
        else {"X-Max-Output-Tokens": str(upstream.capped)},
        finish_values=started.finish_values,
        # What a client resending the history finds this exchange by (none kept without
        # store: it cannot be continued).
        next_fingerprint=functools.partial(ended_fingerprint, upstream.history, False)
        if stored
        else None,
        keep_text=stored,
        prompt_estimate=upstream.estimate,
        asked_on=created_at.date(),
    )


def _open_upstream(
    pending: PendingExchange, body: dict[str, Any], request_id: str | None
) -> Exchange:
    """Call the upstream with the translated request and wait for its first event."""
    llm = get_llm()

    def open_upstream() -> ChatStream:
        return llm.stream_request(body, request_id)

    return open_exchange(pending, open_upstream, pass_through_error)


def _settled_layout(layout: Sequence[str], values: Mapping[str, Any]) -> list[str]:
    """The items the chunks opened, as far as the ending holds them (a piece the client
    never received is not kept), then any the chunks did not open (a whole answer)."""
    calls = len(values.get("tool_calls") or ())
    kept = [
        entry
        for entry in layout
        if (entry == "reasoning" and values.get("reasoning_content"))
        or (entry == "message" and any(map(values.get, ("response_content", "refusal_content"))))
        or (entry.startswith("fc:") and int(entry[3:]) < calls)
    ]
    row = SimpleNamespace(
        reasoning_content=values.get("reasoning_content"),
        response_content=values.get("response_content"),
        refusal_content=values.get("refusal_content"),
        tool_calls=values.get("tool_calls"),
    )
    return kept + [entry for entry in default_layout(row) if entry not in kept]


# ------------------------------------------------------------------------ read, delete
def _echoed(row: Message) -> dict[str, Any]:
    """The parameters a response echoes: its request's; other endpoints' exchanges (read
    as responses too) echo their model only."""
    if row.endpoint == RESPONSES_ENDPOINT and isinstance(row.request_params, Mapping):
        return dict(row.request_params)
    return {"model": row.model}


def get_response(actor: Principal, response_id: str) -> dict[str, Any]:
    """A response (any exchange of the caller's reads as one), or UnknownId."""
    row = find_response(ResponseRepository(db.session, actor.scope), response_id)
    return response_object(row, _echoed(row))


def delete_response(actor: Principal, response_id: str) -> Deleted:
    """Delete one response, as OpenAI does: it becomes a tombstone (its content erased, its
    place in the tree and its accounting kept), so the responses that continue it stay
    retrievable and continuable. UnknownId if there is none (a second delete too);
    ExchangeInProgress while it is being generated."""
    with unit_of_work() as session:
        row = find_response(ResponseRepository(session, actor.scope), response_id)
        if not DeleteRepository(session, actor.scope).delete_response(row.conversation_id, row.id):
            raise UnknownId(f"No response with id {response_id!r}.")
    return {"id": response_id, "object": "response", "deleted": True}


def input_items(
    actor: Principal, response_id: str, after: str | None, limit: int, order: str
) -> ItemList:
    """The input items a response added, cursor-paged."""
    row = find_response(ResponseRepository(db.session, actor.scope), response_id)
    items = [listed_item(row, "i", n, item) for n, item in input_slots(row)]
    return page(items, after, limit, order)
