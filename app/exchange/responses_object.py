"""The Response object of an exchange, as the Responses API returns and streams it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from app.exchange.responses_ids import response_id
from app.exchange.responses_items import output_slots, with_id
from app.exchange.responses_status import response_status
from app.exchange.responses_types import (
    FunctionTool,
    IncompleteDetails,
    ResponseError,
    ResponseObject,
    ResponseRow,
    ResponseStatus,
    ResponseUsage,
)

# Parameters a Response echoes, as ``messages.request_params`` keeps them.
ECHOED = (
    "model",
    "instructions",
    "previous_response_id",
    "conversation",
    "store",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "temperature",
    "top_p",
    "max_output_tokens",
    "text",
    "reasoning",
    "metadata",
    "user",
    "safety_identifier",
    "truncation",
    "prompt_cache_key",
    "service_tier",
)


def timestamp(moment: datetime | None) -> int:
    """A time as the API shows it: whole seconds since the epoch (0 for none)."""
    return int(moment.timestamp()) if moment is not None else 0


def _usage(row: ResponseRow) -> ResponseUsage | None:
    if row.prompt_tokens is None and row.response_tokens is None and row.total_tokens is None:
        return None
    prompt, output = row.prompt_tokens or 0, row.response_tokens or 0
    # Details the upstream did not report are 0 (the shape wants integers), not a guess.
    cached = row.cached_tokens or 0
    reasoning = row.reasoning_tokens or 0
    return {
        "input_tokens": prompt,
        # Chat Completions reports no cache writes.
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": row.total_tokens if row.total_tokens is not None else prompt + output,
    }


def public_tool(tool: Mapping[str, Any]) -> FunctionTool:
    """A function tool as a Response lists it (every field present)."""
    return {
        "type": "function",
        "name": tool["name"],
        "description": tool.get("description"),
        "parameters": tool.get("parameters"),
        "strict": tool.get("strict"),
    }


def response_object(
    row: ResponseRow, params: Mapping[str, Any], *, in_progress: bool = False
) -> ResponseObject:
    """The Response of an exchange: ``row`` has a message's columns, ``params`` the request's
    echoed parameters (as ``messages.request_params`` keeps them). ``in_progress``: the
    snapshot sent by response.created (no output yet)."""
    status: ResponseStatus
    incomplete: IncompleteDetails | None
    error: ResponseError | None
    if in_progress:
        status, incomplete, error = "in_progress", None, None
    else:
        status, incomplete, error = response_status(row)
    created = timestamp(row.created_at)
    duration = row.duration_ms
    finished = status == "completed" and duration is not None
    message_status = "incomplete" if status == "incomplete" else "completed"
    output = (
        []
        if in_progress
        else [with_id(row.id, "o", n, item) for n, item in output_slots(row, message_status)]
    )
    conversation = params.get("conversation")
    text = params.get("text") or {"format": {"type": "text"}, "verbosity": None}
    return {
        "id": response_id(row.id),
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "completed_at": created + round(duration / 1000) if finished else None,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": params.get("instructions"),
        "max_output_tokens": params.get("max_output_tokens"),
        "max_tool_calls": None,
        "model": row.model or params.get("model") or "",
        "output": output,
        "parallel_tool_calls": params.get("parallel_tool_calls", True),
        "previous_response_id": params.get("previous_response_id"),
        "prompt_cache_key": params.get("prompt_cache_key"),
        "service_tier": params.get("service_tier"),
        "conversation": {"id": conversation} if conversation else None,
        "reasoning": params.get("reasoning") or {"effort": None, "summary": None},
        "safety_identifier": params.get("safety_identifier"),
        "store": params.get("store", True),
        "temperature": params.get("temperature"),
        "text": text,
        "tool_choice": params.get("tool_choice", "auto"),
        "tools": [public_tool(t) for t in params.get("tools") or ()],
        "top_p": params.get("top_p"),
        "truncation": params.get("truncation", "disabled"),
        "usage": None if in_progress else _usage(row),
        "user": params.get("user"),
        "metadata": params.get("metadata") or {},
    }
