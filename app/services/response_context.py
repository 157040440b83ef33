"""Where a new response goes in the conversation tree, and the earlier exchanges it is sent
with: its ``previous_response_id``, its ``conversation``, or the history its input resends."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flask import current_app

from app.exchange.responses_ids import parse_conversation_id, parse_item_id, parse_response_id
from app.exchange.responses_items import find_item
from app.exchange.responses_to_chat import chat_messages
from app.extensions import db
from app.models import Message
from app.repositories import ThreadRepository
from app.repositories.responses import BranchedConversation, ResponseRepository
from app.services.gateway import canonical_message, fingerprint
from app.services.response_lookup import RESPONSES_ENDPOINT, UnknownId, readable


@dataclass(frozen=True)
class ResponseContext:
    """A new response's place in the tree and what is sent before its input."""

    parent: Any  # the exchange it follows (a row with a Message's columns); None: a root
    conversation: BranchedConversation | None  # the conversation the request named
    context: list[Any]  # the earlier exchanges sent, root first (rows, as ``parent``)
    new_input: list[dict[str, Any]]  # the input items it adds: what is stored
    sent_input: list[dict[str, Any]]  # the input items sent after the context


def resolve_context(
    responses: ResponseRepository, owner_id: int, request: Mapping[str, Any]
) -> ResponseContext:
    """Where a response to ``request`` (its item references resolved) goes, and its context:

    - ``previous_response_id``: in that response's conversation, its parent that response;
      the context is the branch from the root down to it (one statement);
    - ``conversation``: appended to that conversation's current branch (its parent the
      current exchange); the context is that branch;
    - neither: a new conversation, as a chat app's new chat; unless the input resends a
      history the client keeps itself (LangChain, pydantic-ai, Vercel's ai, the Agents SDK
      without server state): then it continues the exchange that ended that history, found
      as /v1/chat/completions finds it (each complete exchange keeps the fingerprint of the
      history it ended), or the response whose output items it replays by id; the context
      is the input as sent, and only what follows is stored.

    UnknownId if the response or conversation named is not the caller's.
    """
    config = current_app.config
    # truncation auto keeps the last HISTORY_MAX_MESSAGES exchanges: the walk stops there.
    bound = config["HISTORY_MAX_MESSAGES"] if request["truncation"] == "auto" else None
    new_input = sent_input = request["input"]
    parent: Any = None
    context: list[Any] = []
    conversation: BranchedConversation | None = None
    if request.get("previous_response_id") is not None:
        uid = parse_response_id(request["previous_response_id"])
        context = responses.branch(uid, bound) if uid is not None else []
        if not context or not readable(context[-1]):
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
        threads = ThreadRepository(db.session, owner_id)
        parent, new_from = _continued(responses, threads, request)
        if parent is not None:
            # The client resent the history itself: it is the context as sent, and only
            # the items after the ones it continues are new.
            new_input = request["input"][new_from:]
    context = [row for row in context if readable(row)]
    if request["truncation"] == "auto":
        # The REST endpoints' bound on the earlier exchanges sent.
        context = _truncated(context, config["HISTORY_MAX_MESSAGES"], config["HISTORY_MAX_CHARS"])
    return ResponseContext(parent, conversation, context, new_input, sent_input)


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
            if row is not None and readable(row):
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
        if row is None or not readable(row) or row.endpoint != RESPONSES_ENDPOINT:
            continue
        found = find_item(row, "o", parsed[3])
        if found is not None and found["id"] == request["input_ids"][position]:
            return row, position
    return None, -1


def _truncated(rows: list[Any], max_rows: int, max_chars: int) -> list[Any]:
    """The last of ``rows`` that fit both bounds (at most ``max_rows``, their prompts and
    answers at most ``max_chars`` characters together)."""
    kept: list[Any] = []
    used = 0
    for row in reversed(rows[-max_rows:] if max_rows else []):
        used += len(row.prompt_content or "") + len(row.response_content or "")
        if used > max_chars:
            break
        kept.append(row)
    return kept[::-1]
