"""Exchanges: prompts in, MessageOut and its SSE events out, feedback."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm.base import NO_VALUE

from app.models import FEEDBACK_COMMENT_MAX, RATINGS
from app.schemas.fast_dump import FastDumpSchema
from app.schemas.fields import MAX_ID, QUERY_PROMPT_MAX, Text, prompt_field, strict_boolean
from app.schemas.paging import PageArgs


class MessageCreate(Schema):
    prompt = prompt_field(metadata={"description": "The user's message."})
    stream = strict_boolean(
        load_default=False,
        metadata={"description": "true: answer as Server-Sent Events while the LLM writes."},
    )
    parent_id = fields.Integer(
        allow_none=True,
        validate=validate.Range(min=1, max=MAX_ID),
        metadata={
            "description": "The exchange the new one follows (an edit: the parent of the "
            "exchange whose prompt is edited); null: a new first exchange; omitted: after "
            "the current exchange. Either way the new exchange becomes current. Not one of "
            "the conversation's exchanges: 422."
        },
    )


class RegenerateIn(Schema):
    stream = strict_boolean(
        load_default=False,
        metadata={"description": "true: answer as Server-Sent Events while the LLM writes."},
    )


BRANCHES = ("current", "all")


class MessageListArgs(PageArgs):
    branch = fields.String(
        load_default="current",
        validate=validate.OneOf(BRANCHES),
        metadata={
            "description": "current (default): the current branch, root first. all: every "
            "exchange of the tree in creation order, each with its parent_id (a parent "
            "always comes before its children)."
        },
    )
    leaf = fields.Integer(
        load_default=None,
        validate=validate.Range(min=1, max=MAX_ID),
        metadata={
            "description": "The branch that ends at this exchange, root first, instead of "
            "the current one; not one of the conversation's exchanges: 422."
        },
    )


class GenerateArgs(Schema):
    prompt = prompt_field(
        QUERY_PROMPT_MAX,
        metadata={
            "description": f"At most {QUERY_PROMPT_MAX} characters, so that the URL fits the "
            "request line a server accepts; longer prompts go to "
            "POST /conversations/{conversation_id}/messages."
        },
    )
    conversation_id = fields.Integer(required=True, validate=validate.Range(min=1, max=MAX_ID))


class FeedbackIn(Schema):
    rating = fields.Integer(
        required=True,
        strict=True,
        validate=validate.OneOf(RATINGS),
        metadata={"description": "1 (good) or -1 (bad)."},
    )
    comment = Text(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=FEEDBACK_COMMENT_MAX),
    )


class FeedbackOut(Schema):
    message_id = fields.Integer()
    rating = fields.Integer()
    comment = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()


class LoadedOnly(fields.Nested):
    """A relationship serialized only if already loaded: never a lazy load (they raise).

    An exchange just generated has no feedback; lists join it in their one statement.
    """

    def get_value(self, obj: Any, attr: str, accessor: Any = None, default: Any = None) -> Any:
        state = sa_inspect(obj, raiseerr=False)
        if state is None:
            return super().get_value(obj, attr, accessor, default)
        # What state.attrs[attr].loaded_value reads, without building an AttributeState for
        # every attribute of the row first (state.attrs does, on each access: a large share
        # of a branch read's CPU).
        value = state.dict.get(attr, NO_VALUE)
        return None if value is NO_VALUE else value


class MessageOut(FastDumpSchema):
    id = fields.Integer()
    conversation_id = fields.Integer()
    parent_id = fields.Integer(
        allow_none=True,
        metadata={"description": "The exchange it follows in its branch; null: a first one."},
    )
    siblings = fields.Integer(
        metadata={
            "description": "How many other exchanges follow the same parent (other answers "
            "to, or edits of, this prompt); 0: none."
        }
    )
    prompt_content = fields.String()
    response_content = fields.String()
    deleted = fields.Boolean(
        metadata={
            "description": "Deleted through DELETE /v1/responses/{id} or of all its items: "
            "its prompt, answer and items are gone (empty); it stays in its branch, with its "
            "tokens, so the exchanges after it keep their place."
        }
    )
    prompt_tokens = fields.Integer(allow_none=True)
    response_tokens = fields.Integer(allow_none=True)
    total_tokens = fields.Integer(allow_none=True)
    cached_tokens = fields.Integer(
        allow_none=True,
        metadata={"description": "Prompt tokens the LLM read from its cache; null: not reported."},
    )
    reasoning_tokens = fields.Integer(
        allow_none=True,
        metadata={"description": "Response tokens spent reasoning; null: not reported."},
    )
    usage_estimated = fields.Boolean(
        metadata={
            "description": "The tokens are an estimate: the LLM's usage was not received "
            "(docs: architecture, the exchange lifecycle)."
        }
    )
    is_success = fields.Boolean(
        allow_none=True, metadata={"description": "null while the exchange is in progress."}
    )
    status_code = fields.Integer(allow_none=True)
    outcome = fields.String(
        allow_none=True,
        metadata={
            "description": "complete, failed, client_closed or interrupted; null while the "
            "exchange is in progress."
        },
    )
    reasoning_content = fields.String(
        allow_none=True, metadata={"description": "What a reasoning model thought, if it said."}
    )
    refusal_content = fields.String(
        allow_none=True,
        metadata={"description": "What the LLM said instead of answering (its refusal), if any."},
    )
    model = fields.String(allow_none=True, metadata={"description": "The model that answered."})
    endpoint = fields.String(
        allow_none=True, metadata={"description": "The API that made it: text, messages, v1."}
    )
    request_id = fields.String(allow_none=True)
    finish_reason = fields.String(allow_none=True)
    ttft_ms = fields.Integer(
        allow_none=True,
        metadata={"description": "Request received to first piece of the answer relayed."},
    )
    duration_ms = fields.Integer(
        allow_none=True, metadata={"description": "Request received to exchange ended."}
    )
    feedback = LoadedOnly(
        FeedbackOut,
        allow_none=True,
        metadata={"description": "The user's rating of this exchange, or null."},
    )
    tool_calls = fields.List(
        fields.Dict(),
        allow_none=True,
        metadata={"description": "/v1: the tool calls the model requested ({id, type, function})."},
    )
    request_params = fields.Dict(
        allow_none=True,
        metadata={"description": "/v1: the request's parameters other than its messages."},
    )
    system_prompt = fields.String(
        allow_none=True, metadata={"description": "/v1: the request's system message(s)."}
    )
    input_items = fields.List(
        fields.Dict(),
        allow_none=True,
        metadata={
            "description": "The input new since the previous exchange, in order, as sent: "
            "chat messages (user turns, tool results, ...)."
        },
    )
    created_at = fields.AwareDateTime()
    updated_at = fields.AwareDateTime()


class SseEventOut(Schema):
    """One Server-Sent Event of a streamed answer (keep-alive comments are not events)."""

    event = fields.String(
        required=True, validate=validate.OneOf(["reasoning", "delta", "done", "error"])
    )
    data = fields.String(
        required=True,
        metadata={
            "description": "JSON. reasoning: {text}, the next piece of a reasoning model's "
            "thinking; delta: {text}, the next piece of the answer; done (last): {message}, "
            "the saved MessageOut; error (last): {code, message}, the LLM broke off or the "
            "answer could not be saved."
        },
    )
