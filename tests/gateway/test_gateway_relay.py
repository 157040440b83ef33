"""What the /v1 gateway relays of the upstream's answer, streamed or not, and what it saves
of each exchange, failed ones included."""

from __future__ import annotations

import json

from app.models import Conversation
from tests.fake_llm import Behavior
from tests.gateway.chat import ANSWER, chat, messages_in, openai_error, user


def sse_data(body: bytes) -> list[str]:
    return [line[6:] for line in body.decode().split("\n") if line.startswith("data: ")]


class TestWhatIsSaved:
    def test_a_non_stream_call_returns_the_upstream_json_and_saves_the_exchange(
        self, client, fake_llm, database
    ):
        messages = [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look:"},
                    {"type": "image_url", "image_url": {"url": "data:x"}},
                ],
            },
        ]

        response = chat(client, messages, temperature=0.2, seed=7, future_field={"a": 1})
        response.close()  # the close hook titles the new conversation

        assert response.status_code == 200
        assert response.json["object"] == "chat.completion"
        assert response.json["choices"][0]["message"]["content"] == ANSWER
        (sent,) = [r.body for r in fake_llm.requests if r.body.get("seed") == 7]
        assert sent["messages"] == messages
        assert (sent["temperature"], sent["future_field"], sent["stream"]) == (0.2, {"a": 1}, False)
        conversation_id = int(response.headers["X-Conversation-Id"])
        (message,) = messages_in(database, conversation_id)
        assert message.id == int(response.headers["X-Message-Id"])
        assert message.prompt_content == "Look:\n[image]"
        assert message.response_content == ANSWER
        assert message.system_prompt == "Be brief."
        assert message.request_params == {
            "model": "fake-model",
            "temperature": 0.2,
            "seed": 7,
            "future_field": {"a": 1},
            "stream": False,
        }
        assert (message.endpoint, message.outcome, message.status_code) == ("v1", "complete", 200)
        assert (message.prompt_tokens, message.response_tokens) == (3, 5)
        conversation = database.get(Conversation, conversation_id)
        assert (conversation.model_type, conversation.title) == (
            "fake-model",
            "tok0 tok1 tok2 tok3 tok4",
        )

    def test_a_stream_relays_the_upstream_events_byte_for_byte(self, client, fake_llm, database):
        fake_llm.behavior = Behavior(tokens=["a\u0000b", "\u00e9"], reasoning=["hmm"])

        response = chat(client, [user("hi")], stream=True)

        data = sse_data(response.data)
        assert data[-1] == "[DONE]"
        events = [json.loads(d) for d in data[:-1]]
        # The raw JSON escape reaches the client; what is saved is storable.
        assert "\\u0000" in response.data.decode()
        assert [e["choices"][0]["delta"].get("content") for e in events] == [
            None,
            "a\u0000b",
            "\u00e9",
            None,
        ]
        assert all(e["choices"] for e in events)  # no usage chunk: the client did not ask
        (message,) = messages_in(database, int(response.headers["X-Conversation-Id"]))
        assert message.response_content == "a\ufffdb\u00e9"
        assert message.reasoning_content == "hmm"
        assert message.response_tokens == 2  # usage asked for and saved all the same
        (sent,) = [r.body for r in fake_llm.requests if r.body.get("stream")]
        assert sent["stream_options"] == {"include_usage": True}

    def test_the_usage_chunk_reaches_a_client_that_asked(self, client, fake_llm):
        response = chat(client, [user("hi")], stream=True, stream_options={"include_usage": True})

        events = [json.loads(d) for d in sse_data(response.data)[:-1]]
        assert events[-1]["choices"] == []
        assert events[-1]["usage"]["completion_tokens"] == 5

    def test_streamed_tool_calls_are_relayed_and_saved_whole(self, client, fake_llm, database):
        calls = [
            {"id": "call_1", "name": "weather", "arguments": '{"city": "Lyon", "unit": "C"}'},
            {"id": "call_2", "name": "time", "arguments": '{"tz": "CET"}'},
        ]
        fake_llm.behavior = Behavior(tokens=[], tool_calls=calls, finish_reason="tool_calls")

        response = chat(client, [user("weather?")], stream=True, tools=[{"type": "function"}])

        assert response.status_code == 200
        assert sse_data(response.data)[-1] == "[DONE]"
        (message,) = messages_in(database, int(response.headers["X-Conversation-Id"]))
        assert message.tool_calls == [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": c["arguments"]},
            }
            for c in calls
        ]
        assert (message.finish_reason, message.response_content) == ("tool_calls", "")
        assert message.request_params["tools"] == [{"type": "function"}]

    def test_non_stream_tool_calls_and_reasoning_are_saved(self, client, fake_llm, database):
        call = {"id": "call_9", "name": "lookup", "arguments": '{"q": "x"}'}
        fake_llm.behavior = Behavior(
            tokens=[], tool_calls=[call], reasoning=["think"], finish_reason="tool_calls"
        )

        response = chat(client, [user("look it up")])

        assert response.json["choices"][0]["message"]["tool_calls"][0]["id"] == "call_9"
        (message,) = messages_in(database, int(response.headers["X-Conversation-Id"]))
        assert message.tool_calls == [
            {
                "id": "call_9",
                "type": "function",
                "function": {"name": "lookup", "arguments": '{"q": "x"}'},
            }
        ]
        assert (message.reasoning_content, message.response_content) == ("think", "")
        assert message.finish_reason == "tool_calls"

    def test_an_upstream_error_before_the_first_byte_passes_on_status_and_message(
        self, client, fake_llm, database
    ):
        fake_llm.behavior = Behavior(error_status=400)

        response = chat(client, [user("hi")], stream=True)

        assert response.status_code == 400
        assert openai_error(response)["message"] == "Fake error 400 for model fake-model."
        (message,) = messages_in(database, int(response.headers["X-Conversation-Id"]))
        assert (message.outcome, message.status_code, message.is_success) == ("failed", 400, False)

    def test_an_unreachable_upstream_is_502(self, client, configure, database):
        configure(OPENAI_BASE_URL="http://127.0.0.1:9/v1")

        response = chat(client, [user("hi")])

        assert response.status_code == 502
        assert openai_error(response)["type"] == "server_error"

    def test_an_upstream_too_slow_to_answer_is_504(self, client, fake_llm, configure, database):
        configure(OPENAI_READ_TIMEOUT=0.2)
        fake_llm.behavior = Behavior(headers_delay=2)

        response = chat(client, [user("slow")])

        assert response.status_code == 504
        assert openai_error(response)["type"] == "server_error"
        (message,) = messages_in(database, int(response.headers["X-Conversation-Id"]))
        assert (message.outcome, message.status_code) == ("failed", 504)

    def test_a_body_over_the_limit_is_413_in_openai_shape(self, client, configure):
        configure(MAX_CONTENT_LENGTH=200)

        response = chat(client, [user("x" * 300)])

        assert response.status_code == 413
        openai_error(response)

    def test_models_are_the_upstreams_list_cached(self, client, fake_llm, configure):
        configure(MODELS_CACHE_SECONDS=60)

        first, second = client.get("/v1/models"), client.get("/v1/models")

        assert first.status_code == second.status_code == 200
        assert first.json == second.json
        assert [m["id"] for m in first.json["data"]] == ["fake-model"]
        assert len([r for r in fake_llm.requests if r.path == "/v1/models"]) == 1
