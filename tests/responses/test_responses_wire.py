"""The Responses wire format, item ids and the translation to Chat Completions, checked
against the openai SDK itself: its models parse every event and object, and its stream
accumulator rebuilds from the events the same Response the non-streamed call returns."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import httpx2
import openai
import pydantic
import pytest
from marshmallow import ValidationError
from openai.types.responses import Response, ResponseStreamEvent

from app.exchange.responses_ids import parse_item_id
from app.exchange.responses_items import context_items, exchange_items, input_slots
from app.exchange.responses_object import response_object
from app.exchange.responses_to_chat import chat_body
from app.exchange.responses_wire import Items
from app.llm.events import Chunk, Usage
from app.schemas.responses import ResponseCreate

CREATED = datetime(2026, 12, 2, 12, 0, 0, 250000, tzinfo=UTC)
TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": None,
}


def row(**values: Any) -> SimpleNamespace:
    """A saved exchange's columns."""
    base = {
        "id": 7,
        "created_at": CREATED,
        "model": "m",
        "prompt_content": "hi",
        "response_content": "",
        "reasoning_content": None,
        "refusal_content": None,
        "tool_calls": None,
        "input_items": None,
        "output_items": None,
        "is_success": True,
        "outcome": "complete",
        "status_code": 200,
        "finish_reason": "stop",
        "duration_ms": 1800,
        "prompt_tokens": 3,
        "response_tokens": 4,
        "total_tokens": 7,
        "cached_tokens": None,
        "reasoning_tokens": None,
    }
    return SimpleNamespace(**{**base, **values})


def params(**extra: Any) -> dict[str, Any]:
    request = ResponseCreate().load({"model": "m", "input": "hi", **extra})
    return {k: v for k, v in request.items() if k not in ("input", "stream")}


def stream_of(chunks: list[Chunk], saved: SimpleNamespace, echo: dict[str, Any]) -> bytes:
    """The bytes the wire sends for these chunks, the final Response built from ``saved``
    with the layout the chunks made."""
    items = Items(saved.id)
    snapshot = response_object(saved, echo, in_progress=True)
    body = [items.event("response.created", response=snapshot)]
    body.append(items.event("response.in_progress", response=snapshot))
    body += [data for chunk in chunks if (data := items.feed(chunk))]
    saved.output_items = items.layout
    body += list(items.finish(response_object(saved, echo)))
    return b"".join(body)


def sdk(handler: Any) -> openai.OpenAI:
    return openai.OpenAI(
        api_key="x",
        base_url="http://test/v1",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )


def serve(stream: bytes, whole: dict[str, Any]) -> openai.OpenAI:
    def handler(request: httpx2.Request) -> httpx2.Response:
        if json.loads(request.content).get("stream"):
            return httpx2.Response(
                200, headers={"content-type": "text/event-stream"}, content=stream
            )
        return httpx2.Response(200, json=whole)

    return sdk(handler)


def events_of(stream: bytes) -> list[dict[str, Any]]:
    events = []
    for block in stream.decode().split("\n\n"):
        if not block:
            continue
        event_line, data_line = block.split("\n")
        data = json.loads(data_line.removeprefix("data: "))
        assert event_line == f"event: {data['type']}"
        events.append(data)
    return events


def strip_parsed(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: strip_parsed(v) for k, v in value.items() if k not in ("parsed", "parsed_arguments")
        }
    if isinstance(value, list):
        return [strip_parsed(v) for v in value]
    return value


CASES = {
    "text": (
        [
            Chunk(text="Hel"),
            Chunk(text="lo"),
            Chunk(finish_reason="stop"),
            Chunk(usage=Usage(3, 4, 7)),
        ],
        {"response_content": "Hello"},
        {},
    ),
    "reasoning then text": (
        [Chunk(reasoning="think"), Chunk(reasoning="ing"), Chunk(text="Yes.")],
        {"response_content": "Yes.", "reasoning_content": "thinking"},
        {},
    ),
    "two tool calls": (
        [
            Chunk(
                tool_calls=(
                    {
                        "index": 0,
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    },
                )
            ),
            Chunk(tool_calls=({"index": 0, "function": {"arguments": '{"city":'}},)),
            Chunk(tool_calls=({"index": 0, "function": {"arguments": '"Lyon"}'}},)),
            Chunk(
                tool_calls=(
                    {
                        "index": 1,
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"},
                    },
                )
            ),
            Chunk(finish_reason="tool_calls"),
        ],
        {
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Lyon"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                },
            ],
            "finish_reason": "tool_calls",
        },
        {"tools": [TOOL]},
    ),
    "empty answer": ([Chunk(finish_reason="stop")], {}, {}),
    "refusal": (
        [Chunk(refusal="I can't "), Chunk(refusal="help."), Chunk(finish_reason="stop")],
        {"refusal_content": "I can't help."},
        {},
    ),
    "text then refusal": (
        [Chunk(text="Well. "), Chunk(refusal="No."), Chunk(finish_reason="stop")],
        {"response_content": "Well. ", "refusal_content": "No."},
        {},
    ),
    "reported usage details": (
        [Chunk(text="Hi."), Chunk(usage=Usage(3, 4, 7, 2, 1))],
        {"response_content": "Hi.", "cached_tokens": 2, "reasoning_tokens": 1},
        {},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_sdk_accumulator_rebuilds_the_non_streamed_response(case):
    chunks, saved_values, extra = CASES[case]
    saved, echo = row(**saved_values), params(**extra)
    stream = stream_of(chunks, saved, echo)
    whole = response_object(saved, echo)
    client = serve(stream, whole)
    kwargs: dict[str, Any] = {"model": "m", "input": "hi"}
    if extra.get("tools"):
        kwargs["tools"] = [TOOL]

    plain = client.responses.create(**kwargs)
    with client.responses.stream(**kwargs) as events:
        seen = list(events)
        final = events.get_final_response()

    assert strip_parsed(final.to_dict()) == plain.to_dict()
    assert Response.model_validate(whole).to_dict() == plain.to_dict()
    adapter = pydantic.TypeAdapter(ResponseStreamEvent)
    raw = events_of(stream)
    for event in raw:
        adapter.validate_python(event)
    assert [e["sequence_number"] for e in raw] == list(range(len(raw)))
    assert raw[0]["type"] == "response.created"
    assert raw[-1]["type"] == "response.completed"
    assert seen[-1].type == "response.completed"


def test_the_output_items_follow_the_order_the_chunks_opened_them():
    chunks = [
        Chunk(text="Let me look. "),
        Chunk(tool_calls=({"index": 0, "id": "call_a",
                           "function": {"name": "f", "arguments": "{}"}},)),
    ]  # fmt: skip
    saved = row(
        response_content="Let me look. ",
        tool_calls=[{"id": "call_a", "type": "function",
                     "function": {"name": "f", "arguments": "{}"}}],
    )  # fmt: skip
    stream_of(chunks, saved, params())

    output = response_object(saved, params())["output"]

    assert [(item["id"], item["type"]) for item in output] == [
        ("msg_7o0", "message"),
        ("fc_7o1", "function_call"),
    ]


def test_a_length_stop_is_an_incomplete_response_with_its_reason():
    saved = row(response_content="Par", finish_reason="length")
    stream = stream_of([Chunk(text="Par"), Chunk(finish_reason="length")], saved, params())

    raw = events_of(stream)

    assert raw[-1]["type"] == "response.incomplete"
    final = Response.model_validate(raw[-1]["response"])
    assert (final.status, final.incomplete_details.reason) == ("incomplete", "max_output_tokens")
    assert final.output[0].status == "incomplete"


def test_a_failed_answer_ends_with_response_failed_and_its_error():
    saved = row(
        response_content="Par",
        is_success=False,
        outcome="failed",
        status_code=502,
        finish_reason=None,
    )
    raw = events_of(stream_of([Chunk(text="Par")], saved, params()))

    failed = Response.model_validate(raw[-1]["response"])
    assert raw[-1]["type"] == "response.failed"
    assert (failed.status, failed.error.code) == ("failed", "server_error")
    assert failed.output[0].content[0].text == "Par"


def test_a_request_translates_to_one_chat_completions_body():
    request = ResponseCreate().load(
        {
            "model": "m",
            "instructions": "Be brief.",
            "input": [
                {"role": "developer", "content": "Use metric units."},
                {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
                {
                    "type": "function_call",
                    "call_id": "c1",
                    "name": "get_weather",
                    "arguments": '{"city":"Lyon"}',
                },
                {"type": "function_call_output", "call_id": "c1", "output": "21 C"},
            ],
            "tools": [TOOL],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "parallel_tool_calls": False,
            "temperature": 0.5,
            "top_p": 0.9,
            "max_output_tokens": 100,
            "text": {
                "format": {
                    "type": "json_schema",
                    "name": "w",
                    "schema": {"type": "object"},
                    "strict": True,
                }
            },
            "reasoning": {"effort": "low"},
            "user": "u1",
            "safety_identifier": "s1",
        }
    )
    earlier = row(response_content="Hello")

    body = chat_body(request, context_items([earlier]), "max_tokens")

    assert body == {
        "model": "m",
        "stream": True,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "system", "content": "Use metric units."},
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Lyon"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "21 C"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather in a city",
                    "parameters": TOOL["parameters"],
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "temperature": 0.5,
        "top_p": 0.9,
        "max_tokens": 100,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": True},
        },
        "reasoning_effort": "low",
        "user": "u1",
        "safety_identifier": "s1",
    }


@pytest.mark.parametrize(
    ("field", "body"),
    [
        ("tools", {"tools": [{"type": "web_search"}]}),
        ("tools", {"tools": [{"type": "mcp", "server_label": "x"}]}),
        ("background", {"background": True}),
        ("truncation", {"truncation": "middle"}),
        ("input", {"input": [{"type": "web_search_call", "id": "ws_1"}]}),
        (
            "input",
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
        ),
        ("include", {"include": ["reasoning.encrypted_content", "file_search_call.results"]}),
        ("tool_choice", {"tool_choice": {"type": "web_search_preview"}}),
        ("reasoning", {"reasoning": {"summary": "auto"}}),
        ("prompt", {"prompt": {"id": "pmpt_1"}}),
        ("service_tier", {"service_tier": "flex"}),
        ("store", {"store": False, "conversation": "conv_1"}),
    ],
)
def test_unsupported_features_are_refused_by_name(field, body):
    with pytest.raises(ValidationError) as raised:
        ResponseCreate().load({"model": "m", "input": "hi", **body})

    assert field in raised.value.messages


def test_exchanges_of_other_endpoints_read_as_items_with_stable_ids():
    saved = row(
        id=12,
        prompt_content="Hi",
        response_content="Hello",
        tool_calls=[{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
    )

    items = exchange_items(saved)

    assert [item["id"] for item in items] == ["msg_12i0", "msg_12o0", "fc_12o1"]
    assert parse_item_id("fc_12o1") == ("fc", 12, "o", 1)
    assert parse_item_id("fc_012o1") is None


def test_a_chat_exchanges_input_reads_as_items():
    chat_turn = row(
        endpoint="v1",
        input_items=[
            {"role": "tool", "tool_call_id": "call_1", "content": "21 degrees"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "and "},
                    {"type": "text", "text": "tomorrow?"},
                ],
            },
            None,  # an item deleted through the Conversations API
        ],
    )

    assert [item for _, item in input_slots(chat_turn)] == [
        {"type": "function_call_output", "call_id": "call_1", "output": "21 degrees"},
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "and tomorrow?"}],
        },
    ]
