"""The /v1 gateway in process: validation and errors in OpenAI's shape, what is saved, and
how calls thread into conversations (the SDK end to end is tests/gateway/test_gateway_sdk.py)."""

from __future__ import annotations

import json

import httpx2
import openai
import pytest
import sqlalchemy as sa

from app.models import Conversation, Message
from app.services.gateway import (
    canonical_arguments,
    canonical_message,
    fingerprint,
    history_prefix,
)
from app.services.titles import INSTRUCTION
from tests.conftest import keyed_client
from tests.fake_llm import Behavior

CHAT = "/v1/chat/completions"
ANSWER = "tok0 tok1 tok2 tok3 tok4 "


def chat(client, messages, headers=None, **params):
    return client.post(
        CHAT, json={"model": "fake-model", "messages": messages, **params}, headers=headers or {}
    )


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def tool_call_message(arguments, content=""):
    return {
        "role": "assistant",
        "content": content,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": arguments}}
        ],
    }


def title_calls(fake_llm):
    """The title calls the upstream received (their system message is the instruction)."""
    return [
        r
        for r in fake_llm.requests
        if r.body and r.body.get("messages", [{}])[0].get("content") == INSTRUCTION
    ]


def openai_error(response):
    """The error object, checking it has exactly OpenAI's keys."""
    body = response.json
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def messages_in(database, conversation_id):
    with database.app.app_context():
        from app.extensions import db

        return list(
            db.session.scalars(
                sa.select(Message)
                .where(Message.conversation_id == conversation_id)
                .order_by(Message.id)
            )
        )


def sse_data(body: bytes) -> list[str]:
    return [line[6:] for line in body.decode().split("\n") if line.startswith("data: ")]


class TestValidation:
    @pytest.mark.parametrize(
        ("body", "param"),
        [
            ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
            ({"model": "fake-model"}, "messages"),
            ({"model": "fake-model", "messages": []}, "messages"),
            ({"model": "fake-model", "messages": ["hi"]}, "messages"),
            ({"model": "fake-model", "messages": [{"content": "no role"}]}, "messages"),
            ({"model": "has spaces", "messages": [{"role": "user", "content": "x"}]}, "model"),
            ({"model": "fake-model", "messages": [user("x")], "stream": "maybe"}, "stream"),
        ],
    )
    def test_an_invalid_body_is_400_in_openai_shape_and_calls_nothing(
        self, client, fake_llm, database, body, param
    ):
        response = client.post(CHAT, json=body)

        assert response.status_code == 400
        error = openai_error(response)
        assert (error["type"], error["param"]) == ("invalid_request_error", param)
        assert fake_llm.requests == []
        assert database.scalar("SELECT count(*) FROM messages") == 0

    def test_malformed_json_is_400_in_openai_shape(self, client):
        response = client.post(CHAT, data="{not json", content_type="application/json")

        assert response.status_code == 400
        assert openai_error(response)["type"] == "invalid_request_error"

    def test_a_body_that_is_not_json_is_415_in_openai_shape(self, client):
        response = client.post(CHAT, data="model=x", content_type="text/plain")

        assert response.status_code == 415
        openai_error(response)

    def test_a_malformed_conversation_header_is_400(self, client):
        response = chat(client, [user("hi")], headers={"X-Conversation-Id": "abc"})

        assert response.status_code == 400
        assert openai_error(response)["param"] == "X-Conversation-Id"

    def test_a_missing_key_is_401_in_openai_shape_with_the_challenge(self, anonymous):
        response = chat(anonymous, [user("hi")])

        assert response.status_code == 401
        assert openai_error(response)["code"] == "invalid_api_key"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")

    def test_wrong_method_and_unknown_path_are_openai_shaped(self, client):
        assert client.get(CHAT).status_code == 405
        openai_error(client.get(CHAT))
        assert client.get("/v1/embeddings").status_code == 404
        openai_error(client.get("/v1/embeddings"))

    def test_the_rest_of_the_api_keeps_its_own_error_shape(self, client):
        response = client.get("/conversations/999")

        assert response.status_code == 404
        assert response.json["code"] == 404


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


class TestThreading:
    def test_a_growing_history_stays_in_one_conversation(self, client, fake_llm, database):
        history = [{"role": "system", "content": "sys"}, user("one")]
        ids = []
        for turn in ("two", "three"):
            response = chat(client, history)
            ids.append(int(response.headers["X-Conversation-Id"]))
            history += [response.json["choices"][0]["message"], user(turn)]
        response = chat(client, history)
        ids.append(int(response.headers["X-Conversation-Id"]))

        assert len(set(ids)) == 1
        assert [m.prompt_content for m in messages_in(database, ids[0])] == ["one", "two", "three"]

    def test_the_same_first_message_twice_is_two_conversations(self, client, fake_llm):
        first = chat(client, [user("hello")])
        second = chat(client, [user("hello")])

        assert first.headers["X-Conversation-Id"] != second.headers["X-Conversation-Id"]

    def test_an_edited_history_starts_a_new_conversation(self, client, fake_llm):
        first = chat(client, [user("one")])
        edited = chat(client, [user("one"), assistant("not what you said"), user("two")])

        assert first.headers["X-Conversation-Id"] != edited.headers["X-Conversation-Id"]

    def test_regenerating_the_last_turn_branches_from_the_exchange_before_it(
        self, client, fake_llm, database
    ):
        first = chat(client, [user("one")])
        history = [user("one"), first.json["choices"][0]["message"], user("two")]
        second = chat(client, history)
        # The client drops the last answer and asks again: the same history as before.
        again = chat(client, history)

        conversation_id = int(first.headers["X-Conversation-Id"])
        assert int(second.headers["X-Conversation-Id"]) == conversation_id
        assert int(again.headers["X-Conversation-Id"]) == conversation_id
        one, two, two_again = messages_in(database, conversation_id)
        assert (one.parent_id, two.parent_id, two_again.parent_id) == (None, one.id, one.id)
        assert two_again.id == int(again.headers["X-Message-Id"])
        conversation = client.get(f"/conversations/{conversation_id}").json
        assert conversation["current_message_id"] == two_again.id
        listed = client.get(f"/conversations/{conversation_id}/messages").json
        assert [m["id"] for m in listed] == [one.id, two_again.id]
        assert [m["siblings"] for m in listed] == [0, 1]

    def test_an_edited_earlier_turn_branches_from_the_exchange_it_follows(
        self, client, fake_llm, database
    ):
        first = chat(client, [user("one")])
        answer = first.json["choices"][0]["message"]
        second = chat(client, [user("one"), answer, user("two")])
        third_history = [user("one"), answer, user("two"), second.json["choices"][0]["message"]]
        chat(client, [*third_history, user("three")])

        edited = chat(client, [user("one"), answer, user("two, edited")])

        conversation_id = int(first.headers["X-Conversation-Id"])
        assert int(edited.headers["X-Conversation-Id"]) == conversation_id
        one, _two, _three, two_edited = messages_in(database, conversation_id)
        assert two_edited.prompt_content == "two, edited"
        assert two_edited.parent_id == one.id

    def test_an_edited_first_turn_in_a_named_conversation_is_a_new_first_exchange(
        self, client, fake_llm, database
    ):
        first = chat(client, [user("one")])
        conversation_id = first.headers["X-Conversation-Id"]
        chat(client, [user("one"), first.json["choices"][0]["message"], user("two")])

        edited = chat(client, [user("one, edited")], {"X-Conversation-Id": conversation_id})

        assert edited.headers["X-Conversation-Id"] == conversation_id
        *_, root = messages_in(database, int(conversation_id))
        assert (root.prompt_content, root.parent_id) == ("one, edited", None)
        listed = client.get(f"/conversations/{conversation_id}/messages").json
        assert [m["prompt_content"] for m in listed] == ["one, edited"]

    def test_a_history_matching_none_of_a_named_conversations_follows_its_current(
        self, client, fake_llm, database
    ):
        conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]
        first = chat(client, [user("hi")], {"X-Conversation-Id": str(conversation_id)})

        later = chat(
            client,
            [user("made"), assistant("up"), user("next")],
            {"X-Conversation-Id": str(conversation_id)},
        )

        assert later.status_code == 200
        one, two = messages_in(database, conversation_id)
        assert one.id == int(first.headers["X-Message-Id"])
        assert two.parent_id == one.id

    def test_a_failed_exchange_does_not_move_the_thread(self, client, fake_llm):
        first = chat(client, [user("one")])
        history = [user("one"), first.json["choices"][0]["message"], user("two")]
        fake_llm.behavior = Behavior(error_status=500)
        assert chat(client, history).status_code == 500
        fake_llm.behavior = Behavior()

        retried = chat(client, history)

        assert retried.headers["X-Conversation-Id"] == first.headers["X-Conversation-Id"]

    @pytest.mark.parametrize("stream", [False, True])
    @pytest.mark.parametrize("status", [500, 429])
    def test_a_retried_failed_first_turn_lands_in_the_conversation_of_the_failure(
        self, client, fake_llm, database, stream, status
    ):
        first_turn = [{"role": "system", "content": "sys"}, user("hello")]
        fake_llm.behavior = Behavior(error_status=status)
        failures = [chat(client, first_turn, stream=stream) for _ in range(2)]
        calls_while_failing = len(fake_llm.requests)
        fake_llm.behavior = Behavior()

        retried = chat(client, first_turn, stream=stream)
        retried.get_data()
        retried.close()  # the close hook titles the conversation

        assert [f.status_code for f in failures] == [status, status]
        assert calls_while_failing == 2  # no service-side retries, no title calls
        ids = {int(r.headers["X-Conversation-Id"]) for r in [*failures, retried]}
        assert len(ids) == 1
        exchanges = messages_in(database, ids.pop())
        assert [(m.outcome, m.prompt_content) for m in exchanges] == [
            ("failed", "hello"),
            ("failed", "hello"),
            ("complete", "hello"),
        ]
        assert len(title_calls(fake_llm)) == 1

    def test_after_a_retry_succeeds_the_same_first_turn_is_a_new_conversation(
        self, client, fake_llm
    ):
        fake_llm.behavior = Behavior(error_status=500)
        failed = chat(client, [user("hello")])
        fake_llm.behavior = Behavior()
        retried = chat(client, [user("hello")])

        again = chat(client, [user("hello")])

        assert retried.headers["X-Conversation-Id"] == failed.headers["X-Conversation-Id"]
        assert again.headers["X-Conversation-Id"] != failed.headers["X-Conversation-Id"]

    def test_a_retry_of_other_messages_is_another_conversation(self, client, fake_llm):
        fake_llm.behavior = Behavior(error_status=500)
        failed = chat(client, [user("hello")])
        fake_llm.behavior = Behavior()

        other = chat(client, [user("hello there")])

        assert other.headers["X-Conversation-Id"] != failed.headers["X-Conversation-Id"]

    def test_a_conversation_whose_exchanges_all_failed_gets_no_title(
        self, client, fake_llm, database
    ):
        fake_llm.behavior = Behavior(error_status=503)

        failed = chat(client, [user("hello")], stream=True)
        failed.close()

        conversation = client.get(f"/conversations/{failed.headers['X-Conversation-Id']}").json
        assert conversation["title"] is None
        assert title_calls(fake_llm) == []

    def test_the_gateway_relays_an_upstream_error_at_once_by_default(
        self, client, fake_llm, configure
    ):
        configure(OPENAI_MAX_RETRIES=2)
        fake_llm.behavior = Behavior(error_status=503)

        response = chat(client, [user("hello")])

        assert response.status_code == 503
        assert len(fake_llm.requests) == 1

    def test_gateway_retries_are_a_setting(self, client, fake_llm, configure):
        configure(GATEWAY_MAX_RETRIES=1)
        fake_llm.behavior = Behavior(error_status=503, retry_after=0)

        response = chat(client, [user("hello")])

        assert response.status_code == 503
        assert len(fake_llm.requests) == 2

    def test_each_exchange_keeps_the_input_new_since_the_previous_answer(
        self, client, fake_llm, database
    ):
        parts = [{"type": "text", "text": "two"}, {"type": "image_url", "image_url": {"url": "x"}}]
        first_turn = [{"role": "system", "content": "sys"}, user("one")]
        first = chat(client, first_turn)
        history = [
            *first_turn,
            first.json["choices"][0]["message"],
            {"role": "user", "content": parts, "name": "ann"},
            {"role": "user", "content": "a\u0000b"},
        ]

        second = chat(client, history)

        assert second.headers["X-Conversation-Id"] == first.headers["X-Conversation-Id"]
        saved = messages_in(database, int(first.headers["X-Conversation-Id"]))
        assert [m.input_items for m in saved] == [
            first_turn,
            [{"role": "user", "content": parts, "name": "ann"}, user("a\ufffdb")],
        ]

    def test_an_explicit_conversation_is_used_and_another_users_is_404(
        self, client, fake_llm, make_account, database
    ):
        mine = client.post("/conversations", json={"title": "mine"}).json["id"]
        bob = keyed_client(client.application, make_account("bob").key)
        theirs = bob.post("/conversations", json={"title": "theirs"}).json["id"]

        response = chat(client, [user("hi")], headers={"X-Conversation-Id": str(mine)})
        missing = chat(client, [user("hi")], headers={"X-Conversation-Id": str(theirs)})

        assert response.headers["X-Conversation-Id"] == str(mine)
        assert [m.prompt_content for m in messages_in(database, mine)] == ["hi"]
        assert missing.status_code == 404
        assert openai_error(missing)["type"] == "invalid_request_error"
        assert messages_in(database, theirs) == []

    @pytest.mark.parametrize("unknown", [2**31, 2**63 - 1])
    def test_an_unknown_conversation_beyond_an_integer_is_404(self, client, fake_llm, unknown):
        response = chat(client, [user("hi")], headers={"X-Conversation-Id": str(unknown)})

        assert response.status_code == 404
        assert openai_error(response)["type"] == "invalid_request_error"
        assert fake_llm.requests == []

    def test_another_users_identical_history_never_threads_into_mine(
        self, client, fake_llm, make_account
    ):
        bob = keyed_client(client.application, make_account("bob").key)
        mine = chat(client, [user("one")])
        history = [user("one"), mine.json["choices"][0]["message"], user("two")]

        theirs = chat(bob, history)

        assert theirs.headers["X-Conversation-Id"] != mine.headers["X-Conversation-Id"]
        assert (
            chat(client, history).headers["X-Conversation-Id"] == mine.headers["X-Conversation-Id"]
        )


class TestFingerprint:
    def test_sdk_variants_of_one_message_have_one_canonical_form(self):
        plain = {"role": "assistant", "content": "hi"}
        sdk = {
            "role": "assistant",
            "content": "hi",
            "refusal": None,
            "tool_calls": None,
            "audio": None,
        }
        parts = {
            "role": "assistant",
            "content": [{"type": "text", "text": "h"}, {"type": "text", "text": "i"}],
        }

        assert canonical_message(plain) == canonical_message(sdk) == canonical_message(parts)

    def test_tool_calls_are_compared_without_what_sdks_add(self):
        streamed = {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        }
        whole = {**streamed, "content": None}

        assert fingerprint([canonical_message(streamed)]) == fingerprint([canonical_message(whole)])

    @pytest.mark.parametrize(
        "resent",
        [
            '{"q":"d\u00e9j\u00e0 vu","n":1}',  # JSON.stringify (Vercel ai)
            '{"q":"déjà vu","n":1.0}',  # pydantic-ai: compact, not ASCII
            '{"q": "déjà vu", "n": 1.0}',  # LangChain: json.dumps(ensure_ascii=False)
            '{"n": 1.0, "q": "d\\u00e9j\\u00e0 vu"}',  # other key order, escaped
            ' {\n  "q" : "déjà vu",\n  "n" : 1e0\n} ',
        ],
    )
    def test_arguments_that_parse_as_json_compare_as_parsed_json(self, resent):
        sent = '{ "q" :"d\\u00e9j\\u00e0 vu",  "n": 1.0 }'

        assert fingerprint([canonical_message(tool_call_message(resent))]) == fingerprint(
            [canonical_message(tool_call_message(sent))]
        )

    def test_the_canonical_arguments_are_one_serialization(self):
        assert canonical_arguments('{"b": [1.0, 2.5, {"z": null, "a": true}], "a": "é"}') == (
            '{"a":"é","b":[1,2.5,{"a":true,"z":null}]}'
        )

    @pytest.mark.parametrize(
        ("arguments", "canonical"),
        [
            ("", "{}"),
            ("  ", "{}"),
            (None, "{}"),
            ("{}", "{}"),
            ("not json", "not json"),
            ('{"q": NaN}', '{"q": NaN}'),
            ('{"q": 1', '{"q": 1'),
            ("[" * 100_000, "[" * 100_000),
        ],
    )
    def test_arguments_that_are_not_json_compare_as_they_are(self, arguments, canonical):
        assert canonical_arguments(arguments) == canonical

    def test_different_arguments_differ(self):
        one = canonical_message(tool_call_message('{"q": "x"}'))
        other = canonical_message(tool_call_message('{"q": "y"}'))

        assert fingerprint([one]) != fingerprint([other])

    def test_what_sdks_add_to_an_assistant_turn_is_left_out(self):
        upstream = tool_call_message('{"q": "x"}', content=None)
        openai_python = {
            **tool_call_message('{"q": "x"}', content=None),
            "refusal": None,
            "annotations": [],
            "audio": None,
            "function_call": None,
            "reasoning_content": "hmm",
        }
        langchain_named = {**tool_call_message('{"q":"x"}', content=""), "name": "bot"}
        missing_content = tool_call_message('{"q":"x"}')
        del missing_content["content"]
        untyped = tool_call_message('{"q":"x"}')
        del untyped["tool_calls"][0]["type"]
        parts = {**tool_call_message('{"q":"x"}'), "content": []}

        forms = [openai_python, langchain_named, missing_content, untyped, parts]

        assert {fingerprint([canonical_message(m)]) for m in forms} == {
            fingerprint([canonical_message(upstream)])
        }

    def test_a_user_name_still_tells_histories_apart(self):
        assert canonical_message({**user("hi"), "name": "ann"}) != canonical_message(user("hi"))

    def test_text_parts_and_a_string_are_the_same_content(self):
        parts = {"role": "tool", "tool_call_id": "c", "content": [{"type": "text", "text": "r"}]}

        assert canonical_message(parts) == canonical_message(
            {"role": "tool", "tool_call_id": "c", "content": "r"}
        )

    def test_the_prefix_ends_at_the_last_assistant_turn(self):
        messages = [
            canonical_message(m)
            for m in (
                user("a"),
                assistant("b"),
                {"role": "tool", "tool_call_id": "c", "content": "r"},
            )
        ]

        assert history_prefix(messages) == messages[:2]
        assert history_prefix(messages[:1]) is None


def test_the_openapi_document_lists_the_v1_operations_with_openai_errors(anonymous):
    paths = anonymous.get("/openapi.json").json["paths"]

    post = paths["/v1/chat/completions"]["post"]
    assert set(post["responses"]) >= {"200", "400", "401", "404", "429", "502", "504"}
    for status in ("400", "401", "404", "429"):
        schema = post["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/OpenAIErrorOut"}
    assert "X-Conversation-Id" in {p["name"] for p in post["parameters"]}
    assert "200" in paths["/v1/models"]["get"]["responses"]


# What clients resend as a tool call's arguments, rebuilt from the parsed JSON.
RESENT_ARGUMENTS = {
    "pydantic_ai": lambda args: json.dumps(args, separators=(",", ":"), ensure_ascii=False),
    "langchain": lambda args: json.dumps(args, ensure_ascii=False),
    # JSON.stringify: compact, not ASCII, and 1.0 is 1.
    "vercel_ai": lambda args: json.dumps(
        {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in args.items()},
        separators=(",", ":"),
        ensure_ascii=False,
    ),
}


@pytest.fixture
def sdk(client, alice):
    """The real openai SDK, its HTTP going straight into the app (no socket)."""
    transport = httpx2.WSGITransport(app=client.application)
    return openai.OpenAI(
        base_url="http://convstore.test/v1",
        api_key=alice.key,
        max_retries=0,
        http_client=openai.DefaultHttpxClient(transport=transport),
    )


class TestToolLoopsWithTheSDK:
    @pytest.mark.parametrize("stream", [False, True])
    @pytest.mark.parametrize("client_kind", sorted(RESENT_ARGUMENTS))
    def test_a_tool_round_trip_with_re_encoded_arguments_stays_in_one_conversation(
        self, sdk, fake_llm, database, stream, client_kind
    ):
        sent = '{ "q" :"d\\u00e9j\\u00e0 vu",  "n": 1.0 }'
        fake_llm.behavior = Behavior(
            tokens=["done"],
            tool_calls=[{"id": "call_1", "name": "lookup", "arguments": sent}],
            tool_loop=True,
        )
        messages = [user("look up déjà vu")]

        first, first_id = self._call(sdk, messages, stream)
        (call,) = first["tool_calls"]
        call["function"]["arguments"] = RESENT_ARGUMENTS[client_kind](
            json.loads(call["function"]["arguments"])
        )
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "result for déjà vu"},
        ]
        second, second_id = self._call(sdk, messages, stream)
        messages += [{"role": "assistant", "content": second["content"]}, user("thanks")]
        _third, third_id = self._call(sdk, messages, stream)

        assert first_id == second_id == third_id
        # The third turn asks the tool again (the fake answers a user turn with tool calls).
        saved = messages_in(database, first_id)
        assert [(m.response_content, bool(m.tool_calls)) for m in saved] == [
            ("", True),
            ("done", False),
            ("", True),
        ]
        # Each exchange keeps what the client added since the previous answer.
        assert [m.input_items for m in saved] == [
            [user("look up déjà vu")],
            [{"role": "tool", "tool_call_id": "call_1", "content": "result for déjà vu"}],
            [user("thanks")],
        ]

    @staticmethod
    def _call(sdk, messages, stream):
        """One call; the answer as the SDK assembled it, and the conversation it went to."""
        create = sdk.chat.completions.with_raw_response.create
        raw = create(model="fake-model", messages=messages, stream=stream)
        conversation_id = int(raw.headers["x-conversation-id"])
        if not stream:
            message = raw.parse().choices[0].message
            return message.model_dump(include={"content", "tool_calls"}), conversation_id
        text, calls = [], {}
        for chunk in raw.parse():
            for choice in chunk.choices:
                text.append(choice.delta.content or "")
                for delta in choice.delta.tool_calls or ():
                    call = calls.setdefault(
                        delta.index, {"id": "", "type": "function", "function": {}}
                    )
                    call["id"] += delta.id or ""
                    function = call["function"]
                    function["name"] = function.get("name", "") + (delta.function.name or "")
                    function["arguments"] = function.get("arguments", "") + (
                        delta.function.arguments or ""
                    )
        return {"content": "".join(text), "tool_calls": list(calls.values())}, conversation_id
