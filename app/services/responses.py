"""The Responses and Conversations APIs over exchanges and conversations.

A response is one exchange (app/exchange/lifecycle.py): committed in progress before the
upstream is called, ended once, checkpointed, reaped. Where it goes in the conversation
tree is what gives it its context:

- ``previous_response_id``: in that response's conversation, its parent that response;
  the context is the branch from the root down to it (one statement);
- ``conversation``: appended to that conversation's current branch (its parent the current
  exchange); the context is that branch;
- neither: a new conversation, as a chat app's new chat; unless the input resends a
  history the client keeps itself (LangChain, pydantic-ai, Vercel's ai, the Agents SDK
  without server state): then it continues the exchange that ended that history, found
  as /v1/chat/completions finds it (app/services/gateway.py: each complete exchange keeps
  the fingerprint of the history it ended), or the response whose output items it
  replays by id; the context is the input as sent, and only what follows is stored.

Either way it becomes its conversation's current exchange. ``store: false`` is accounted
as every exchange (usage, budgets, metrics, outcome) in a conversation of its own, but no
text of it is written, not even by checkpoints, and it cannot be read or continued.
Conversations are REST's own: ``conv_<id>`` is ``/conversations/<id>``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from flask import current_app

from app.errors import NotFound, Unprocessable
from app.exchange.lifecycle import Exchange, PendingExchange
from app.exchange.progress import estimate_tokens
from app.exchange.responses_ids import (
    conversation_id,
    parse_conversation_id,
    parse_item_id,
    parse_response_id,
)
from app.exchange.responses_items import (
    context_items,
    default_layout,
    exchange_items,
    find_item,
    input_slots,
    listed_item,
    stored_inputs,
    stored_layout,
)
from app.exchange.responses_object import ECHOED, response_object, timestamp
from app.exchange.responses_to_chat import chat_body, chat_messages, prompt_text, system_text
from app.exchange.responses_wire import Items
from app.extensions import db
from app.llm.client import get_llm
from app.llm.errors import pass_through_error
from app.llm.events import ChatStream
from app.models import Conversation, Message, utcnow
from app.repositories import ConversationRepository, MessageRepository, ThreadRepository
from app.repositories.responses import ResponseRepository
from app.services.auth import Principal
from app.services.budgets import check_budget
from app.services.gateway import (
    canonical_message,
    cap_output,
    ended_fingerprint,
    fingerprint,
    sent_characters,
    storable_json,
)
from app.services.generation import open_exchange
from app.services.unit_of_work import one_statement, unit_of_work
from app.web.request_id import current_request_id, request_received_at

ENDPOINT = "responses"
ITEMS_ENDPOINT = "conversations"  # exchanges that only add items (no answer)


class UnknownId(NotFound):
    """An id that names nothing of the caller's; ``param`` says which field held it."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        if param is not None:
            self.errors = {"json": {param: [message]}}


@dataclass
class Started:
    """A response whose exchange has begun: what the wire needs to relay it."""

    exchange: Exchange
    items: Items
    snapshot: dict[str, Any]
    params: dict[str, Any]
    stored: bool
    created_at: Any
    ended: dict[str, Any] = field(default_factory=dict)  # the ending's values, as made

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


# ------------------------------------------------------------------------ responses
def create_response(actor: Principal, request: dict[str, Any]) -> Started:
    """Record a Responses request as an exchange in its place in the tree and call the
    upstream with its context; returns it, ready to relay."""
    config = current_app.config
    stored = request["store"] is not False
    # Generation happens in the caller's own conversations only, admins included: the
    # caller is the one charged and checked (README, "Limits and budgets").
    responses = ResponseRepository(db.session, actor.user_id)
    request = {**request, "input": _resolved(responses, request["input"], "input")}
    parent: Any = None  # the exchange it follows: a row with a Message's columns
    context: list[Any] = []
    # truncation auto keeps the last HISTORY_MAX_MESSAGES exchanges: the walk stops there.
    bound = config["HISTORY_MAX_MESSAGES"] if request["truncation"] == "auto" else None
    request_input = sent_input = request["input"]
    conversation: Any = None
    if request.get("previous_response_id") is not None:
        uid = parse_response_id(request["previous_response_id"])
        context = responses.branch(uid, bound) if uid is not None else []
        if not context or not _readable(context[-1]):
            raise UnknownId(
                f"No response with id {request['previous_response_id']!r}.",
                "previous_response_id",
            )
        parent = context[-1]
    elif request.get("conversation") is not None:
        cid = parse_conversation_id(request["conversation"])
        conversation = responses.conversation_branch(cid, bound) if cid is not None else None
        if conversation is None:
            raise UnknownId(f"No conversation with id {request['conversation']!r}.", "conversation")
        context = conversation.branch
        parent = context[-1] if context else None
    else:
        threads = ThreadRepository(db.session, actor.user_id)
        parent, new_from = _continued(responses, threads, request)
        if parent is not None:
            # The client resent the history itself: it is the context as sent, and only
            # the items after the ones it continues are new.
            request = {**request, "input": request["input"][new_from:]}
            sent_input = request_input
    context = [row for row in context if _readable(row)]
    if request["truncation"] == "auto":
        # The REST endpoints' bound on the earlier exchanges sent.
        context = _truncated(context, config["HISTORY_MAX_MESSAGES"], config["HISTORY_MAX_CHARS"])
    body = chat_body(
        {**request, "input": sent_input}, context_items(context), config["MAX_OUTPUT_TOKENS_PARAM"]
    )
    # The history a client that keeps it resends next, less the answer (added when the
    # exchange ends) and the instructions (a request's own, as OpenAI has them).
    history = body["messages"][1:] if request.get("instructions") else body["messages"]
    canonical = [canonical_message(m) for m in history]
    capped = cap_output(body)
    max_output = body.get(config["MAX_OUTPUT_TOKENS_PARAM"])
    params = {key: request.get(key) for key in ECHOED}
    params["max_output_tokens"] = max_output if max_output is not None else None
    if conversation is not None:
        params["conversation"] = conversation_id(conversation.id)
    created_at = utcnow()  # the day it counts on, and so the day whose budget is checked
    check_budget(db.session, actor, created_at)
    estimate = estimate_tokens(sent_characters(body))
    request_id = current_request_id()
    joins = stored and (parent is not None or conversation is not None)
    with one_statement() if joins else unit_of_work() as session:
        if not joins:
            # store: false never joins a tree: it is a record of use, not of content.
            created = ConversationRepository(session).create(
                Conversation(title=None, model_type=request["model"], owner_id=actor.user_id)
            )
            thread_id, untitled, parent_id = created.id, True, None
        else:
            thread_id = parent.conversation_id if parent is not None else conversation.id
            untitled = conversation.title is None if conversation is not None else False
            parent_id = parent.id if parent is not None else None
        message_id = MessageRepository(session).insert(
            {
                "conversation_id": thread_id,
                "parent_id": parent_id,
                "prompt_content": prompt_text(request["input"]) if stored else "",
                "model": request["model"],
                "endpoint": ENDPOINT,
                "request_id": request_id,
                "heartbeat_at": created_at,
                "created_at": created_at,
                "request_params": storable_json(params if stored else {"store": False}),
                "system_prompt": system_text(request) if stored else None,
                "input_items": storable_json(request["input"]) if stored else [],
                "prompt_tokens": estimate,  # until the upstream reports (lifecycle.py)
                "usage_estimated": True,
            }
        )
    items = Items(message_id, emit=bool(request["stream"]))
    started = Started(
        exchange=None,  # type: ignore[arg-type]  # set once the upstream is open
        items=items,
        snapshot={},
        params=params,
        stored=stored,
        created_at=created_at,
    )

    def finish_values(values: dict[str, Any]) -> dict[str, Any]:
        values = {**values, "output_items": _settled_layout(items.layout, values)}
        started.ended = values
        if stored:
            return values
        return {
            **values,
            "response_content": "",
            "reasoning_content": None,
            "refusal_content": None,
            "tool_calls": None,
            "output_items": None,
        }

    pending = PendingExchange(
        message_id=message_id,
        conversation_id=thread_id,
        model=request["model"],
        prompt=prompt_text(request["input"]),
        messages=(),  # the translated request goes to the upstream whole
        needs_title=stored and untitled,
        endpoint=ENDPOINT,
        request_id=request_id,
        received_at=request_received_at(),
        response_headers={} if capped is None else {"X-Max-Output-Tokens": str(capped)},
        finish_values=finish_values,
        # What a client resending the history finds this exchange by (none kept without
        # store: it cannot be continued).
        next_fingerprint=functools.partial(ended_fingerprint, canonical, False) if stored else None,
        keep_text=stored,
        prompt_estimate=estimate,
        asked_on=created_at.date(),
    )
    snapshot_row = SimpleNamespace(
        id=message_id, created_at=created_at, model=request["model"], duration_ms=None
    )
    started.snapshot = response_object(snapshot_row, params, in_progress=True)
    llm = get_llm()

    def open_upstream() -> ChatStream:
        return llm.stream_request(body, request_id)

    started.exchange = open_exchange(pending, open_upstream, pass_through_error)
    return started


def _continued(
    responses: ResponseRepository, threads: ThreadRepository, request: Mapping[str, Any]
) -> tuple[Message | None, int]:
    """The exchange an input that resends its history continues, and the position of the
    input's first new item; (None, 0) if it continues none. The exchange that ended the
    history up to the input's last answer (its fingerprint: clients resend answers
    without their ids, as pydantic-ai and Vercel's ai do, and re-encode tool-call
    arguments), else the response whose output items the input replays last by id: a
    fingerprint is found among all the caller's conversations, and so is only taken in
    the replayed response's conversation when there is one."""
    items = request["input"]
    replayed, position = _replayed(responses, request)
    last = _last_answer(items)
    if last > position:
        prefix = [canonical_message(m) for m in chat_messages(items[: last + 1])]
        thread = threads.find_by_fingerprint(fingerprint(prefix))
        if thread is not None and (replayed is None or thread.id == replayed.conversation_id):
            row = responses.find(thread.parent_id) if thread.parent_id is not None else None
            if row is not None and _readable(row):
                return row, last + 1
    return replayed, position + 1


def _last_answer(items: Sequence[Mapping[str, Any]]) -> int:
    """The position of the input's last answer item (an assistant message or a function
    call: what a Chat Completions history has as an assistant turn); -1 if none."""
    for position in range(len(items) - 1, -1, -1):
        item = items[position]
        if item.get("type") == "function_call" or (
            item.get("type") == "message" and item.get("role") == "assistant"
        ):
            return position
    return -1


def _replayed(
    responses: ResponseRepository, request: Mapping[str, Any]
) -> tuple[Message | None, int]:
    """The stored response whose output items the input replays last (a client that keeps
    the history itself, as the Agents SDK does without server state), and the position of
    that item in the input; (None, -1) if it replays none of the caller's."""
    for position in range(len(request.get("input_ids") or ()) - 1, -1, -1):
        parsed = parse_item_id(request["input_ids"][position] or "")
        if parsed is None or parsed[2] != "o":
            continue
        row = responses.find(parsed[1])
        if row is None or not _readable(row) or row.endpoint != ENDPOINT:
            continue
        found = find_item(row, "o", parsed[3])
        if found is not None and found["id"] == request["input_ids"][position]:
            return row, position
    return None, -1


def _resolved(
    repository: ResponseRepository, items: list[dict[str, Any]], field: str
) -> list[dict[str, Any]]:
    """``items`` with each ``item_reference`` replaced by the stored item it names (one of
    the caller's); UnknownId naming ``field`` if there is none."""
    resolved = []
    for item in items:
        if item.get("type") != "item_reference":
            resolved.append(item)
            continue
        parsed = parse_item_id(item["id"])
        row = repository.find(parsed[1]) if parsed is not None else None
        found = (
            find_item(row, parsed[2], parsed[3])
            if parsed is not None and row is not None and _readable(row)
            else None
        )
        if found is None or found["id"] != item["id"]:
            raise UnknownId(f"No item with id {item['id']!r}.", field)
        resolved.append({k: v for k, v in found.items() if k not in ("id", "status")})
    return resolved


def _readable(row: Any) -> bool:
    """Whether an exchange's content is kept (store: false keeps none)."""
    params = row.request_params if isinstance(row.request_params, Mapping) else {}
    return not (row.endpoint == ENDPOINT and params.get("store") is False)


def _truncated(rows: list[Any], max_rows: int, max_chars: int) -> list[Any]:
    kept: list[Any] = []
    used = 0
    for row in reversed(rows[-max_rows:] if max_rows else []):
        used += len(row.prompt_content or "") + len(row.response_content or "")
        if used > max_chars:
            break
        kept.append(row)
    return kept[::-1]


def _response_row(actor: Principal, text: str) -> Message:
    uid = parse_response_id(text)
    row = ResponseRepository(db.session, actor.scope).find(uid) if uid is not None else None
    if row is None or not _readable(row):
        raise UnknownId(f"No response with id {text!r}.")
    return row


def _echoed(row: Message) -> dict[str, Any]:
    """The parameters a response echoes: its request's; other endpoints' exchanges (read
    as responses too) echo their model only."""
    if row.endpoint == ENDPOINT and isinstance(row.request_params, Mapping):
        return dict(row.request_params)
    return {"model": row.model}


def get_response(actor: Principal, text: str) -> dict[str, Any]:
    """A response (any exchange of the caller's reads as one), or UnknownId."""
    row = _response_row(actor, text)
    return response_object(row, _echoed(row))


def delete_response(actor: Principal, text: str) -> dict[str, Any]:
    """Delete a response, and the responses that continue it (its subtree in the tree)."""
    with unit_of_work() as session:
        uid = parse_response_id(text)
        row = ResponseRepository(session, actor.scope).find(uid) if uid is not None else None
        if row is None or not _readable(row):
            raise UnknownId(f"No response with id {text!r}.")
        MessageRepository(session).delete_subtree(row.conversation_id, row.id, row.parent_id)
    return {"id": text, "object": "response", "deleted": True}


def input_items(
    actor: Principal, text: str, after: str | None, limit: int, order: str
) -> dict[str, Any]:
    """The input items a response added, cursor-paged."""
    row = _response_row(actor, text)
    items = [listed_item(row, "i", n, item) for n, item in input_slots(row)]
    return page(items, after, limit, order)


def page(items: list[dict[str, Any]], after: str | None, limit: int, order: str) -> dict[str, Any]:
    """One page of a list, OpenAI's shape: ``after`` an item id of the list."""
    ordered = items if order == "asc" else items[::-1]
    start = 0
    if after is not None:
        ids = [item["id"] for item in ordered]
        if after not in ids:
            raise Unprocessable(
                f"No item {after!r} in this list.", {"query": {"after": ["No such item."]}}
            )
        start = ids.index(after) + 1
    data = ordered[start : start + limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(ordered) > start + limit,
    }


# -------------------------------------------------------------------- conversations
def conversation_object(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation_id(conversation.id),
        "object": "conversation",
        "created_at": timestamp(conversation.created_at),
        "metadata": dict(conversation.meta or {}),
    }


def _conversation(actor: Principal, text: str, session: Any = None) -> Conversation:
    uid = parse_conversation_id(text)
    repository = ConversationRepository(session or db.session, actor.scope)
    conversation = repository.get(uid) if uid is not None else None
    if conversation is None:
        raise UnknownId(f"No conversation with id {text!r}.")
    return conversation


def _add_items(session: Any, conversation: Conversation, items: list[dict[str, Any]]) -> Message:
    """An exchange that only adds items after the conversation's current one (no answer:
    never sent to an upstream, never counted as a call)."""
    now = utcnow()
    message_id = MessageRepository(session).insert(
        {
            "conversation_id": conversation.id,
            "parent_id": conversation.current_message_id,
            "prompt_content": prompt_text(items),
            "model": conversation.model_type,
            "endpoint": ITEMS_ENDPOINT,
            "request_id": current_request_id(),
            "created_at": now,
            "input_items": storable_json(items),
        }
    )
    # Ended as it is made: a success with no outcome, so no usage rollup counts it.
    row = MessageRepository(session).update(
        message_id, {"is_success": True, "status_code": 200, "output_items": [], "duration_ms": 0}
    )
    assert row is not None
    return row


def create_conversation(
    actor: Principal, items: list[dict[str, Any]], metadata: Mapping[str, str]
) -> dict[str, Any]:
    with unit_of_work() as session:
        conversation = ConversationRepository(session).create(
            Conversation(
                title=None,
                model_type=current_app.config["DEFAULT_MODEL"],
                owner_id=actor.user_id,
                meta=dict(metadata),
            )
        )
        if items:
            items = _resolved(ResponseRepository(session, actor.scope), items, "items")
            _add_items(session, conversation, items)
        return conversation_object(conversation)


def get_conversation(actor: Principal, text: str) -> dict[str, Any]:
    return conversation_object(_conversation(actor, text))


def update_conversation(actor: Principal, text: str, metadata: Mapping[str, str]) -> dict[str, Any]:
    """Replace a conversation's metadata."""
    uid = parse_conversation_id(text)
    with unit_of_work() as session:
        repository = ConversationRepository(session, actor.scope)
        conversation = repository.update(uid, {"meta": dict(metadata)}) if uid else None
        if conversation is None:
            raise UnknownId(f"No conversation with id {text!r}.")
        return conversation_object(conversation)


def delete_conversation(actor: Principal, text: str) -> dict[str, Any]:
    uid = parse_conversation_id(text)
    with unit_of_work() as session:
        if uid is None or not ConversationRepository(session, actor.scope).delete(uid):
            raise UnknownId(f"No conversation with id {text!r}.")
    return {"id": text, "object": "conversation.deleted", "deleted": True}


def _branch_items(conversation: Conversation) -> list[dict[str, Any]]:
    if conversation.current_message_id is None:
        return []
    rows = ResponseRepository(db.session).branch(conversation.current_message_id)
    return [item for row in rows if _readable(row) for item in exchange_items(row)]


def list_items(
    actor: Principal, text: str, after: str | None, limit: int, order: str
) -> dict[str, Any]:
    """The items of a conversation's current branch, in order, cursor-paged."""
    return page(_branch_items(_conversation(actor, text)), after, limit, order)


def add_items(actor: Principal, text: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    with unit_of_work() as session:
        conversation = _conversation(actor, text, session)
        items = _resolved(ResponseRepository(session, actor.scope), items, "items")
        row = _add_items(session, conversation, items)
        listed = exchange_items(row)
    return {
        "object": "list",
        "data": listed,
        "first_id": listed[0]["id"] if listed else None,
        "last_id": listed[-1]["id"] if listed else None,
        "has_more": False,
    }


def _item_place(actor: Principal, text: str, item: str, session: Any) -> tuple[Message, str, int]:
    conversation = _conversation(actor, text, session)
    parsed = parse_item_id(item)
    row = ResponseRepository(session).find(parsed[1]) if parsed is not None else None
    if parsed is None or row is None or row.conversation_id != conversation.id:
        raise UnknownId(f"No item with id {item!r} in conversation {text!r}.")
    found = find_item(row, parsed[2], parsed[3]) if _readable(row) else None
    if found is None or found["id"] != item:
        raise UnknownId(f"No item with id {item!r} in conversation {text!r}.")
    return row, parsed[2], parsed[3]


def get_item(actor: Principal, text: str, item: str) -> dict[str, Any]:
    row, side, position = _item_place(actor, text, item, db.session)
    found = find_item(row, side, position)
    assert found is not None
    return found


def delete_item(actor: Principal, text: str, item: str) -> dict[str, Any]:
    """Delete one item of a conversation (null at its position: the others keep their
    ids); returns the conversation."""
    with unit_of_work() as session:
        row, side, position = _item_place(actor, text, item, session)
        inputs, layout = stored_inputs(row), stored_layout(row)
        if side == "i":
            inputs[position] = None
        else:
            layout[position] = None
        ResponseRepository(session).set_items(row.id, inputs, layout)
        return conversation_object(_conversation(actor, text, session))
