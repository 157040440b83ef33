"""The OpenAI-compatible gateway: a client's own chat completion, relayed and saved.

A call is an exchange like any other (app/exchange/lifecycle.py): its row is committed in progress
before the upstream is called, and it ends exactly once. What is particular to /v1 is which
conversation it belongs to, found here:

1. ``X-Conversation-Id`` names one of the caller's conversations (else NotFound);
2. else the request's history (its messages up to the last assistant turn) is matched
   against the fingerprint each complete exchange keeps (the history it ended), among the
   caller's conversations only: a client that resends the growing history stays in one;
3. else a new conversation, titled from its first prompt after the exchange.

A call made with a no-store key keeps none of its text, and so neither leaves a fingerprint
nor is found by one (2. does not apply): without ``X-Conversation-Id`` each such call is a
new, untitled conversation of its own.

Conversations are trees (a chat app's edits and regenerations): the new exchange follows
the exchange whose fingerprint matched, so a client that regenerates or edits an earlier
turn (it resends a shorter history) makes a new branch from there and it becomes current.
In a conversation named by ``X-Conversation-Id``, a history that matches none of its
exchanges follows its current exchange, and one without an assistant turn starts a new
branch at the root.

The fingerprint is a SHA-256 of the messages in a canonical form that keeps what a client
resends (role, text, name, tool calls, tool call id) and drops what SDKs add, omit or
re-encode: ``refusal``, ``annotations``, ``type: "function"``, reasoning, an assistant's
``name``, empty content versus none, text parts versus a string, and tool-call arguments
re-serialized from their parsed JSON (spacing, key order, ``\\u00e9`` versus ``é``, ``1.0``
versus ``1``).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from flask import current_app

from app.errors import DomainError, NotFound
from app.exchange.lifecycle import Exchange, PendingExchange
from app.exchange.outcomes import Outcome
from app.exchange.progress import estimate_tokens
from app.extensions import db
from app.llm.client import get_llm
from app.llm.errors import pass_through_error
from app.llm.events import ChatStream
from app.models import NOT_STORED_PARAMS, Conversation, utcnow
from app.repositories import MessageRepository, ThreadRepository
from app.repositories.threads import Thread
from app.services.auth import Principal
from app.services.budgets import check_budget
from app.services.generation import open_exchange
from app.services.unit_of_work import one_statement, unit_of_work
from app.text import storable
from app.web.request_id import current_request_id, request_received_at

ENDPOINT = "v1"
SYSTEM_ROLES = frozenset({"system", "developer"})
# How non-text content parts are noted in the saved prompt (not dropped silently).
_PART_NOTES = {"image_url": "[image]", "input_audio": "[audio]", "file": "[file]"}


def chat(
    actor: Principal, body: dict[str, Any], conversation_id: int | None, *, temporary: bool = False
) -> Exchange:
    """Record a chat completion call as an exchange in its conversation and call the
    upstream (streamed or not, as the body says); returns the exchange, ready to relay. A
    conversation it creates is ``temporary`` if asked."""
    capped = cap_output(body)
    headers = {} if capped is None else {"X-Max-Output-Tokens": str(capped)}
    pending = _begin(actor, body, conversation_id, headers, temporary)
    llm = get_llm()

    def open_upstream() -> ChatStream:
        if body.get("stream"):
            return llm.relay_chat(body, pending.request_id, asked_for_usage(body))
        return llm.complete_chat(body, pending.request_id)

    try:
        return open_exchange(pending, open_upstream, pass_through_error)
    except DomainError as error:
        # Recorded as failed already; the client still learns where.
        error.headers.update(exchange_headers(pending))
        raise


OUTPUT_LIMIT_FIELDS = ("max_tokens", "max_completion_tokens")


def cap_output(body: dict[str, Any]) -> int | None:
    """Hold ``body`` to MAX_OUTPUT_TOKENS (in place): a request asking for more, or for no
    bound, gets the cap. Returns the cap when the client asked for more than it."""
    config = current_app.config
    cap = config["MAX_OUTPUT_TOKENS"]
    if not cap:
        return None
    asked = [body[f] for f in OUTPUT_LIMIT_FIELDS if isinstance(body.get(f), int)]
    if not asked:
        body[config["MAX_OUTPUT_TOKENS_PARAM"]] = cap
        return None
    if max(asked) <= cap:
        return None
    for field in OUTPUT_LIMIT_FIELDS:
        if isinstance(body.get(field), int) and body[field] > cap:
            body[field] = cap
    return cap


def list_models() -> str:
    """The upstream's model list as it sent it (JSON), cached per process for a while."""
    return get_llm().list_models(current_app.config["MODELS_CACHE_SECONDS"])


def exchange_headers(pending: PendingExchange) -> dict[str, str]:
    """The headers that tell a /v1 client where its call was saved (and what was capped)."""
    return {
        "X-Conversation-Id": str(pending.conversation_id),
        "X-Message-Id": str(pending.message_id),
        **pending.response_headers,
    }


def asked_for_usage(body: Mapping[str, Any]) -> bool:
    """Whether the client asked for the usage chunk of a stream itself."""
    options = body.get("stream_options")
    return isinstance(options, Mapping) and options.get("include_usage") is True


def _begin(
    actor: Principal,
    body: dict[str, Any],
    conversation_id: int | None,
    response_headers: dict[str, str],
    temporary: bool = False,
) -> PendingExchange:
    messages: list[Any] = body["messages"]
    model: str = body["model"]
    canonical = [canonical_message(m) for m in messages]
    prefix = history_prefix(canonical)
    prompt = last_user_text(messages)
    request_id = current_request_id()
    # The reads in autocommit; then the prompt's INSERT commits by itself, or shares a
    # transaction with a new conversation's.
    asked = utcnow()  # the day it counts on, and so the day whose budget is checked
    check_budget(db.session, actor, asked)
    threads = ThreadRepository(db.session, actor.user_id)
    continued = fingerprint(prefix) if prefix else None
    kept = not actor.no_store  # a no-store key's call keeps none of its text
    if conversation_id is not None:
        thread = threads.find(conversation_id, continued)
        if thread is None:
            raise NotFound(f"Conversation {conversation_id} does not exist.")
    elif not kept:
        thread = None
    elif continued:
        thread = threads.find_by_fingerprint(continued)
    else:
        # A first turn: new, unless it retries one whose last attempt did not complete.
        thread = threads.find_retried(retry_fingerprint(canonical))
    estimate = estimate_tokens(sent_characters(body))
    with one_statement() if thread is not None else unit_of_work() as session:
        if thread is None:
            created = ThreadRepository(session, actor.user_id).create(
                Conversation(
                    title=None, model_type=model, owner_id=actor.user_id, temporary=temporary
                )
            )
            thread = Thread(created.id, untitled=True)
        message_id = MessageRepository(session).insert(
            {
                "conversation_id": thread.id,
                "parent_id": thread.parent_id,
                "model": model,
                "endpoint": ENDPOINT,
                "request_id": request_id,
                "created_at": asked,
                "heartbeat_at": asked,
                "prompt_tokens": estimate,  # until the upstream reports (lifecycle.py)
                "usage_estimated": True,
                **(_texts(body, prefix, prompt) if kept else _NOT_STORED),
            }
        )
    return PendingExchange(
        message_id=message_id,
        conversation_id=thread.id,
        model=model,
        prompt=prompt,
        messages=(),  # the client's own messages go to the upstream in its body
        needs_title=thread.untitled and kept,
        endpoint=ENDPOINT,
        request_id=request_id,
        received_at=request_received_at(),
        next_fingerprint=functools.partial(
            ended_fingerprint, canonical, conversation_id is None and prefix is None
        )
        if kept
        else None,
        response_headers=response_headers,
        prompt_estimate=estimate,
        asked_on=asked.date(),
        keep_text=kept,
        wants_saved_row=False,  # a completion is built from what was relayed
    )


# What a no-store key's call keeps of its request's text: none.
_NOT_STORED = {
    "prompt_content": "",
    "request_params": NOT_STORED_PARAMS,
    "system_prompt": None,
    "input_items": [],
}


def _texts(
    body: Mapping[str, Any], prefix: list[dict[str, Any]] | None, prompt: str
) -> dict[str, Any]:
    """The text columns a call's row keeps of its request."""
    messages = body["messages"]
    return {
        "prompt_content": prompt,
        "request_params": with_storable_strings({k: v for k, v in body.items() if k != "messages"}),
        "system_prompt": system_text(messages),
        # What this call adds to the conversation: what follows the history it continues
        # (all of it on a first turn), as sent.
        "input_items": with_storable_strings(messages[len(prefix) if prefix else 0 :]),
    }


def sent_characters(body: Mapping[str, Any]) -> int:
    """Characters of what the upstream is sent: every message's text and the tools."""
    messages = [m for m in body["messages"] if isinstance(m, Mapping)]
    tools = body.get("tools")
    return sum(len(content_text(m.get("content"))) for m in messages) + (
        len(json.dumps(tools, default=str)) if tools else 0
    )


def ended_fingerprint(
    canonical: list[dict[str, Any]], first_turn: bool, values: dict[str, Any]
) -> str | None:
    """The fingerprint an exchange keeps when it ends. Complete: that of the history the
    client will resend next, its messages and the answer, as an SDK assembles it. A first
    turn that did not complete keeps the one its retry will carry (SDKs retry a failed call
    with the same messages); other failures keep none."""
    if values.get("outcome") != Outcome.COMPLETE:
        return retry_fingerprint(canonical) if first_turn else None
    answer = canonical_message(
        {
            "role": "assistant",
            "content": values.get("response_content") or "",
            "tool_calls": values.get("tool_calls"),
        }
    )
    return fingerprint([*canonical, answer])


# ----------------------------------------------------------------- messages as text
def content_text(content: Any) -> str:
    """A message's content as text: its text parts, other parts noted as ``[image]`` etc."""
    if isinstance(content, str):
        return storable(content)
    if not isinstance(content, list):
        return ""
    pieces = []
    for part in content:
        if isinstance(part, str):
            pieces.append(part)
        elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
            pieces.append(part["text"])
        elif isinstance(part, Mapping):
            kind = part.get("type")
            kind = kind if isinstance(kind, str) and kind.isidentifier() else "part"
            pieces.append(_PART_NOTES.get(kind, f"[{kind[:32]}]"))
    return storable("\n".join(pieces))


def last_user_text(messages: Sequence[Any]) -> str:
    """The text of the last user message ("" if there is none)."""
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def system_text(messages: Sequence[Any]) -> str | None:
    """The system (and developer) messages' text, or None."""
    texts = [
        content_text(m.get("content"))
        for m in messages
        if isinstance(m, Mapping) and m.get("role") in SYSTEM_ROLES
    ]
    return "\n\n".join(texts) if texts else None


def with_storable_strings(value: Any) -> Any:
    """A copy of the JSON ``value`` with every string and key made storable (``storable``):
    JSON columns hold strings too."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, Mapping):
        return {storable(str(k)): with_storable_strings(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [with_storable_strings(v) for v in value]
    return value


# -------------------------------------------------------------------- fingerprints
def canonical_message(message: Any) -> dict[str, Any]:
    """What of a message identifies a history, in one form whichever SDK resent it."""
    if not isinstance(message, Mapping):
        return {"role": None, "content": with_storable_strings(message)}
    canonical: dict[str, Any] = {
        "role": message.get("role"),
        "content": _canonical_content(message.get("content")),
    }
    # An assistant's name is the client's addition (the upstream sends none).
    name = message.get("name")
    if isinstance(name, str) and name and canonical["role"] != "assistant":
        canonical["name"] = storable(name)
    calls = message.get("tool_calls")
    if isinstance(calls, list) and calls:
        canonical["tool_calls"] = [_canonical_call(call) for call in calls]
    if isinstance(message.get("tool_call_id"), str):
        canonical["tool_call_id"] = storable(message["tool_call_id"])
    return canonical


def _canonical_content(content: Any) -> Any:
    if content is None:
        return ""
    if isinstance(content, str):
        return storable(content)
    # A list of text parts says what the same text as a string says.
    if isinstance(content, list) and all(
        isinstance(part, Mapping) and part.get("type") == "text" for part in content
    ):
        return "".join(storable(str(part.get("text") or "")) for part in content)
    return with_storable_strings(content)


def _canonical_call(call: Any) -> dict[str, Any]:
    call = call if isinstance(call, Mapping) else {}
    function = call.get("function")
    function = function if isinstance(function, Mapping) else {}
    return {
        "id": storable(str(call.get("id") or "")),
        "name": storable(str(function.get("name") or "")),
        "arguments": canonical_arguments(function.get("arguments")),
    }


def canonical_arguments(arguments: Any) -> str:
    """Tool-call arguments in one serialization: clients resend them re-encoded from the
    parsed JSON (``{"q":"x"}`` for ``{"q": "x"}``, ``é`` for ``\\u00e9``, ``1`` for ``1.0``),
    so arguments that parse as JSON compare as parsed JSON; others as they are. No
    arguments are ``{}`` (what a client parses and resends them as)."""
    text = arguments if isinstance(arguments, str) else ""
    if not text.strip():
        return "{}"
    try:
        parsed = _integral_floats(json.loads(text, parse_constant=_reject_constant))
        canonical = json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (ValueError, RecursionError):  # not JSON (or nested past what we parse)
        return storable(text)
    return storable(canonical)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _integral_floats(value: Any) -> Any:
    """``value`` with floats that are whole numbers as ints: JavaScript's JSON.stringify
    writes ``1.0`` as ``1``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: _integral_floats(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral_floats(item) for item in value]
    return value


def history_prefix(canonical: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The history a request continues: its messages up to its last assistant turn (what
    follows is the new input: user turns, tool results). None: it continues nothing."""
    for index in range(len(canonical) - 1, -1, -1):
        if canonical[index]["role"] == "assistant":
            return canonical[: index + 1]
    return None


def retry_fingerprint(canonical: list[dict[str, Any]]) -> str:
    """What a conversation whose first turn did not complete is found by: the request's
    messages, tagged apart from any history (a history always ends with an answer)."""
    return fingerprint([{"role": "retry"}, *canonical])


def fingerprint(canonical: list[dict[str, Any]]) -> str:
    """SHA-256 of canonical messages."""
    data = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(data.encode()).hexdigest()
