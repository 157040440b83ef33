"""The official openai SDK, sync and async, unchanged but for base_url and key, against the
service under real gunicorn: answers arrive intact, errors raise the SDK's own classes,
and every call is saved in the right conversation."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest
import sqlalchemy as sa

from tests.fake_llm import Behavior
from tests.procfile import WebProcess, create_user, deployment_env, release, wait_until

MODEL = "fake-model"
ANSWER = "tok0 tok1 tok2 tok3 tok4 "


class Gateway:
    """The service under gunicorn with two users, and SDK clients for them."""

    def __init__(self, web: WebProcess, engine: sa.Engine, keys: dict[str, str]) -> None:
        self.web, self.engine, self.keys = web, engine, keys
        self.base_url = f"http://127.0.0.1:{web.port}/v1"

    def client(self, user: str = "alice", max_retries: int = 0) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.base_url, api_key=self.keys.get(user, user), max_retries=max_retries
        )

    def async_client(self, user: str = "alice") -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=self.keys[user], max_retries=0)

    def message(self, message_id: int | str) -> sa.Row:
        with self.engine.connect() as connection:
            return connection.execute(
                sa.text("SELECT * FROM messages WHERE id = :id"), {"id": int(message_id)}
            ).one()

    def messages(self, conversation_id: int | str) -> list[sa.Row]:
        with self.engine.connect() as connection:
            return connection.execute(
                sa.text("SELECT * FROM messages WHERE conversation_id = :c ORDER BY id"),
                {"c": int(conversation_id)},
            ).all()


@pytest.fixture(scope="module")
def gateway(backend, database_factory, llm_server, tmp_path_factory):
    """One gunicorn for the module (per backend), on a database migrated by the release."""
    url = database_factory(backend)
    env = deployment_env(url, llm_server.base_url)
    release(env)
    keys = {name: create_user(env, name) for name in ("alice", "bob")}
    engine = sa.create_engine(url)
    with WebProcess(env, tmp_path_factory.mktemp("gateway") / "gunicorn.log") as web:
        web.headers = {"Authorization": f"Bearer {keys['alice']}"}
        yield Gateway(web, engine, keys)
    engine.dispose()


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def calls_with(fake_llm, messages: list) -> int:
    """Chat requests the upstream received with exactly these messages (a new conversation's
    title call, made after its exchange, sends other messages)."""
    return sum(1 for r in fake_llm.requests if r.body and r.body.get("messages") == messages)


def test_a_non_stream_call_returns_the_completion_and_saves_it(gateway, fake_llm):
    raw = gateway.client().chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "system", "content": "sys"}, user("hello")], seed=3
    )
    completion = raw.parse()

    assert completion.choices[0].message.content == ANSWER
    assert completion.usage is not None
    row = gateway.message(raw.headers["x-message-id"])
    assert row.conversation_id == int(raw.headers["x-conversation-id"])
    assert (row.prompt_content, row.response_content, row.system_prompt) == (
        "hello",
        ANSWER,
        "sys",
    )
    assert (row.is_success, row.outcome, row.status_code, row.endpoint) == (
        True,
        "complete",
        200,
        "v1",
    )
    assert (row.prompt_tokens, row.response_tokens, row.total_tokens) == (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
        completion.usage.total_tokens,
    )
    params = (
        row.request_params
        if isinstance(row.request_params, dict)
        else json.loads(row.request_params)
    )
    assert params == {"model": MODEL, "seed": 3, "stream": False}


@pytest.mark.parametrize("include_usage", [False, True])
def test_a_stream_saves_what_the_sdk_assembled_and_its_tokens(gateway, fake_llm, include_usage):
    fake_llm.behavior = Behavior(tokens=["Hé", "llo ", "wörld ", "🌍"], split_utf8=True)
    options = {"stream_options": {"include_usage": True}} if include_usage else {}

    raw = gateway.client().chat.completions.with_raw_response.create(
        model=MODEL, messages=[user("hi")], stream=True, **options
    )
    chunks = list(raw.parse())

    assembled = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert assembled == "Héllo wörld 🌍"
    usage_chunks = [c for c in chunks if not c.choices]
    assert len(usage_chunks) == (1 if include_usage else 0)
    row = gateway.message(raw.headers["x-message-id"])
    assert row.response_content == assembled
    assert (row.response_tokens, row.outcome) == (4, "complete")
    if include_usage:
        assert usage_chunks[0].usage.completion_tokens == row.response_tokens


def test_a_tool_call_round_trip_arrives_intact_and_is_saved(gateway, fake_llm):
    call = {"id": "call_42", "name": "get_weather", "arguments": '{"city": "Lyon"}'}
    fake_llm.behavior = Behavior(tokens=[], tool_calls=[call], finish_reason="tool_calls")
    client = gateway.client()
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    messages: list = [user("Weather in Lyon?")]

    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=messages, tools=tools, stream=True
    )
    assembled: dict[int, dict] = {}
    finish = None
    for chunk in raw.parse():
        for delta in chunk.choices[0].delta.tool_calls or []:
            entry = assembled.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += delta.id or ""
            entry["name"] += (delta.function.name or "") if delta.function else ""
            entry["arguments"] += (delta.function.arguments or "") if delta.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert (assembled, finish) == ({0: call}, "tool_calls")
    conversation_id = raw.headers["x-conversation-id"]

    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call["id"], "content": "18 °C"},
    ]
    fake_llm.behavior = Behavior(tokens=["It is 18 °C."])
    final = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=messages, tools=tools
    )

    assert final.parse().choices[0].message.content == "It is 18 °C."
    assert final.headers["x-conversation-id"] == conversation_id
    first, second = gateway.messages(conversation_id)
    tool_calls = (
        first.tool_calls if isinstance(first.tool_calls, list) else json.loads(first.tool_calls)
    )
    assert tool_calls == [
        {
            "id": "call_42",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'},
        }
    ]
    assert (first.finish_reason, second.response_content) == ("tool_calls", "It is 18 °C.")
    (forwarded,) = [r.body for r in fake_llm.requests if r.body and r.body.get("tools")][1:]
    assert forwarded["messages"] == messages


def test_a_three_turn_async_chat_loop_lands_in_one_conversation(gateway, fake_llm):
    async def chat_loop() -> list[str]:
        client = gateway.async_client()
        history: list = [{"role": "system", "content": "You are terse."}]
        conversation_ids = []
        for prompt in ("first", "second", "third"):
            history.append(user(prompt))
            stream = await client.chat.completions.with_raw_response.create(
                model=MODEL, messages=history, stream=True
            )
            conversation_ids.append(stream.headers["x-conversation-id"])
            text = ""
            async for chunk in stream.parse():
                text += chunk.choices[0].delta.content or "" if chunk.choices else ""
            history.append({"role": "assistant", "content": text})
        await client.close()
        return conversation_ids

    ids = asyncio.run(chat_loop())

    assert len(set(ids)) == 1
    rows = gateway.messages(ids[0])
    assert [r.prompt_content for r in rows] == ["first", "second", "third"]
    assert all(r.response_content == ANSWER and r.outcome == "complete" for r in rows)
    status, body = gateway.web.request("GET", f"/conversations/{ids[0]}/messages")
    assert status == 200
    assert [m["prompt_content"] for m in json.loads(body)] == ["first", "second", "third"]


def test_an_async_non_stream_call_with_an_explicit_conversation(gateway, fake_llm):
    conversation_id = gateway.web.create_conversation("explicit")

    async def call() -> openai.types.chat.ChatCompletion:
        client = gateway.async_client()
        try:
            return await client.chat.completions.create(
                model=MODEL,
                messages=[user("into this one")],
                extra_headers={"X-Conversation-Id": str(conversation_id)},
            )
        finally:
            await client.close()

    completion = asyncio.run(call())

    assert completion.choices[0].message.content == ANSWER
    assert [r.prompt_content for r in gateway.messages(conversation_id)] == ["into this one"]


def test_another_users_identical_history_never_threads_into_mine(gateway, fake_llm):
    alice, bob = gateway.client("alice"), gateway.client("bob")
    first = alice.chat.completions.with_raw_response.create(model=MODEL, messages=[user("same")])
    history = [user("same"), {"role": "assistant", "content": ANSWER}, user("again")]

    theirs = bob.chat.completions.with_raw_response.create(model=MODEL, messages=history)
    mine = alice.chat.completions.with_raw_response.create(model=MODEL, messages=history)

    assert theirs.headers["x-conversation-id"] != first.headers["x-conversation-id"]
    assert mine.headers["x-conversation-id"] == first.headers["x-conversation-id"]
    assert len(gateway.messages(theirs.headers["x-conversation-id"])) == 1


def test_a_bad_key_raises_authentication_error(gateway, fake_llm):
    with pytest.raises(openai.AuthenticationError) as caught:
        gateway.client("cs_000000000_" + "0" * 43).chat.completions.create(
            model=MODEL, messages=[user("bad key")]
        )

    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert calls_with(fake_llm, [user("bad key")]) == 0


def test_an_unknown_conversation_raises_not_found(gateway, fake_llm):
    with pytest.raises(openai.NotFoundError):
        gateway.client().chat.completions.create(
            model=MODEL, messages=[user("hi")], extra_headers={"X-Conversation-Id": "999999"}
        )


def test_an_invalid_body_raises_bad_request(gateway, fake_llm):
    with pytest.raises(openai.BadRequestError) as caught:
        gateway.client().chat.completions.create(model=MODEL, messages=[])

    assert caught.value.param == "messages"


def test_upstream_rate_limiting_raises_rate_limit_error_with_retry_after(gateway, fake_llm):
    fake_llm.behavior = Behavior(error_status=429, retry_after=7)

    with pytest.raises(openai.RateLimitError) as caught:
        gateway.client().chat.completions.create(model=MODEL, messages=[user("hi")], stream=True)

    assert caught.value.response.headers["retry-after"] == "7"
    row = gateway.message(caught.value.response.headers["x-message-id"])
    assert (row.outcome, row.status_code) == ("failed", 429)


def test_the_sdk_honours_retry_after_and_retries(gateway, fake_llm):
    fake_llm.behavior = Behavior(error_status=429, retry_after=0.01)

    with pytest.raises(openai.RateLimitError):
        gateway.client(max_retries=1).chat.completions.create(
            model=MODEL, messages=[user("retry me")]
        )

    assert calls_with(fake_llm, [user("retry me")]) == 2


def test_an_upstream_server_error_raises_internal_server_error(gateway, fake_llm):
    fake_llm.behavior = Behavior(error_status=503)

    with pytest.raises(openai.InternalServerError) as caught:
        gateway.client().chat.completions.create(model=MODEL, messages=[user("hi")])

    assert caught.value.status_code == 503


def test_an_upstream_drop_mid_stream_raises_and_saves_the_partial_text(gateway, fake_llm):
    fake_llm.behavior = Behavior(n_tokens=10, break_after=3)
    pieces: list[str] = []
    raw = gateway.client().chat.completions.with_raw_response.create(
        model=MODEL, messages=[user("hi")], stream=True
    )

    def read() -> None:
        pieces.extend(chunk.choices[0].delta.content or "" for chunk in raw.parse())

    with pytest.raises(openai.APIError) as caught:
        read()

    received = "".join(pieces)

    assert received == "tok0 tok1 tok2 "
    assert caught.value.type == "server_error"
    row = gateway.message(raw.headers["x-message-id"])
    assert (row.response_content, row.outcome, row.status_code) == (received, "failed", 502)


def test_a_client_that_stops_reading_is_saved_as_client_closed(gateway, fake_llm):
    fake_llm.behavior = Behavior(n_tokens=200, delay=0.02)
    raw = gateway.client().chat.completions.with_raw_response.create(
        model=MODEL, messages=[user("hang up")], stream=True
    )
    stream = raw.parse()
    received = [next(stream) for _ in range(5)]
    stream.close()

    def ended() -> bool:
        return gateway.message(raw.headers["x-message-id"]).outcome is not None

    assert wait_until(ended)
    row = gateway.message(raw.headers["x-message-id"])
    assert (row.outcome, row.status_code, row.is_success) == ("client_closed", 499, False)
    assert row.response_content.startswith("tok0 tok1 tok2 ")
    assert len(received) == 5


def test_models_lists_the_upstreams(gateway, fake_llm):
    models = gateway.client().models.list()

    assert [model.id for model in models] == ["fake-model"]
