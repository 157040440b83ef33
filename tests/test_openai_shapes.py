"""The checks of tests/openai_shapes.py catch what openai-python's models reject, in process
and off a socket, and let through what they accept."""

from __future__ import annotations

import json

import httpx2
import openai
import pytest
from openai.types.conversations import ConversationDeletedResource
from pydantic import TypeAdapter

from tests import openai_shapes
from tests.openai_shapes import EventChecker, ShapeMismatch, check_body, checked_http_client

CONVERSATION = {"id": "conv_1", "object": "conversation", "created_at": 1, "metadata": {}}
EVENT = {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0,
         "content_index": 0, "delta": "hi", "logprobs": [], "sequence_number": 3}  # fmt: skip


def sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def test_a_body_missing_a_field_of_the_model_is_a_mismatch():
    model = openai_shapes.MODELS[("GET", openai_shapes.CONVERSATION)]
    check_body("GET /v1/conversations/conv_1", model, CONVERSATION)

    with pytest.raises(ShapeMismatch, match="created_at"):
        check_body("GET /v1/conversations/conv_1", model, {**CONVERSATION, "created_at": None})


def test_events_are_checked_once_whole_however_the_bytes_are_cut():
    stream = (": keep-alive\n\n" + sse(EVENT["type"], {**EVENT, "delta": "déjà 🌍"})).encode()
    for size in (1, 2, 3, 7):  # cuts inside the two- and four-byte characters
        checker = EventChecker("POST /v1/responses")
        for cut in range(0, len(stream), size):
            checker.feed(stream[cut : cut + size])

    with pytest.raises(ShapeMismatch, match="delta"):
        checker.feed(sse(EVENT["type"], {**EVENT, "delta": None}))
    with pytest.raises(ShapeMismatch, match="carries"):
        checker.feed(sse("response.created", EVENT))


def test_the_test_app_checks_what_it_answers(client, monkeypatch):
    assert client.post("/v1/conversations", json={}).status_code == 200

    deleted = TypeAdapter(ConversationDeletedResource)
    monkeypatch.setitem(openai_shapes.MODELS, ("POST", "/v1/conversations"), deleted)
    with pytest.raises(ShapeMismatch, match="POST /v1/conversations"):
        client.post("/v1/conversations", json={})


def served(body: bytes, media: str) -> openai.OpenAI:
    """The SDK on the checked HTTP client, answered ``body`` whatever it asks (streamed, as
    off a socket: bytes given whole would be read before the client's hooks run)."""
    transport = httpx2.MockTransport(
        lambda request: httpx2.Response(200, headers={"content-type": media}, content=iter([body]))
    )
    return openai.OpenAI(
        api_key="x",
        base_url="http://served.test/v1",
        max_retries=0,
        http_client=checked_http_client(transport=transport),
    )


def test_the_checked_http_client_checks_json_answers():
    assert (
        served(json.dumps(CONVERSATION).encode(), "application/json")
        .conversations.retrieve("conv_1")
        .id
        == "conv_1"
    )

    wrong = json.dumps({**CONVERSATION, "object": "list"}).encode()
    with pytest.raises(ShapeMismatch, match="object"):
        served(wrong, "application/json").conversations.retrieve("conv_1")


def test_the_checked_http_client_checks_events_as_they_are_read():
    wrong = sse(EVENT["type"], {**EVENT, "output_index": "first"}).encode()
    stream = served(wrong, "text/event-stream").responses.create(model="m", input="hi", stream=True)

    with pytest.raises(ShapeMismatch, match="output_index"):
        list(stream)
