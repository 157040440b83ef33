"""The shapes of the Responses API's objects (items, the Response) and of the exchange rows
they are read from: types only, for readers and checkers; at run time they are plain dicts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, NotRequired, Protocol, TypedDict

from app.exchange.progress import ToolCall


# --------------------------------------------------------------------- the rows read
class AnswerRow(Protocol):
    """An exchange's answer as every endpoint saves it (a ``Message``, a Core row, or an
    ending's values): what its output items are read from."""

    response_content: str | None
    reasoning_content: str | None
    refusal_content: str | None
    tool_calls: list[ToolCall] | None


class ResponseRow(AnswerRow, Protocol):
    """The columns of an exchange a Response is built from."""

    id: int
    created_at: datetime | None
    model: str | None
    # The output items' layout ("reasoning", "message", "fc:<n>"; None where one was
    # deleted); None: the exchange was saved without one (``default_layout``).
    output_items: list[str | None] | None
    is_success: bool | None
    outcome: str | None
    status_code: int | None
    finish_reason: str | None
    duration_ms: int | None
    prompt_tokens: int | None
    response_tokens: int | None
    total_tokens: int | None
    cached_tokens: int | None
    reasoning_tokens: int | None


class ExchangeRow(ResponseRow, Protocol):
    """The columns of an exchange its items are read from, inputs included."""

    endpoint: str | None
    prompt_content: str | None
    # What the client sent that was not stored before, in its endpoint's format (Responses
    # items, or chat messages); None where one was deleted.
    input_items: list[Any] | None


# ------------------------------------------------------------------------- the items
class InputTextPart(TypedDict):
    type: Literal["input_text"]
    text: str


class InputImagePart(TypedDict):
    type: Literal["input_image"]
    image_url: str
    detail: NotRequired[str]


class OutputTextPart(TypedDict):
    type: Literal["output_text"]
    text: str
    annotations: list[Any]
    logprobs: list[Any]


class RefusalPart(TypedDict):
    type: Literal["refusal"]
    refusal: str


class ReasoningTextPart(TypedDict):
    type: Literal["reasoning_text"]
    text: str


ItemStatus = Literal["in_progress", "completed", "incomplete"]


class MessageItem(TypedDict):
    id: NotRequired[str]
    type: Literal["message"]
    role: Literal["user", "assistant", "system", "developer"]
    content: list[InputTextPart | InputImagePart | OutputTextPart | RefusalPart]
    status: NotRequired[ItemStatus]


class FunctionCallItem(TypedDict):
    id: NotRequired[str]
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str  # JSON
    status: NotRequired[ItemStatus]


class FunctionCallOutputItem(TypedDict):
    id: NotRequired[str]
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[InputTextPart | InputImagePart]
    status: NotRequired[ItemStatus]


class ReasoningItem(TypedDict):
    id: NotRequired[str]
    type: Literal["reasoning"]
    summary: list[Any]
    content: list[ReasoningTextPart]
    encrypted_content: str | None
    status: NotRequired[ItemStatus]


Item = MessageItem | FunctionCallItem | FunctionCallOutputItem | ReasoningItem
AnswerPart = OutputTextPart | RefusalPart  # a content part of an answer (output) message
Slot = tuple[int, Item]  # (position among the exchange's inputs or outputs, item)


# ---------------------------------------------------------------------- the Response
ResponseStatus = Literal["in_progress", "completed", "incomplete", "failed", "cancelled"]


class ResponseError(TypedDict):
    code: str
    message: str


class IncompleteDetails(TypedDict):
    reason: Literal["max_output_tokens", "content_filter"]


class InputTokensDetails(TypedDict):
    cached_tokens: int
    cache_write_tokens: int


class OutputTokensDetails(TypedDict):
    reasoning_tokens: int


class ResponseUsage(TypedDict):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class FunctionTool(TypedDict):
    type: Literal["function"]
    name: str
    description: str | None
    parameters: dict[str, Any] | None
    strict: bool | None


class ResponseObject(TypedDict):
    """OpenAI's Response (``openai.types.responses.Response``) as this service answers it."""

    id: str
    object: Literal["response"]
    created_at: int
    status: ResponseStatus
    background: bool
    completed_at: int | None
    error: ResponseError | None
    incomplete_details: IncompleteDetails | None
    instructions: str | None
    max_output_tokens: int | None
    max_tool_calls: int | None
    model: str
    output: list[Item]
    parallel_tool_calls: bool
    previous_response_id: str | None
    prompt_cache_key: str | None
    service_tier: str | None
    conversation: dict[str, str] | None
    reasoning: dict[str, Any]
    safety_identifier: str | None
    store: bool
    temperature: float | None
    text: dict[str, Any]
    tool_choice: str | dict[str, Any]
    tools: list[FunctionTool]
    top_p: float | None
    truncation: str
    usage: ResponseUsage | None
    user: str | None
    metadata: dict[str, str]
