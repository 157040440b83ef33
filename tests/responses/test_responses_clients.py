"""The client libraries that speak OpenAI's Responses API, unchanged but for base URL and
key, against /v1/responses under real gunicorn on both engines: pydantic-ai's
OpenAIResponsesModel and LangChain's ChatOpenAI(use_responses_api=True), each as it comes
(resending the whole history) and chained by previous_response_id as their docs offer, and
Vercel's ai with @ai-sdk/openai's default provider (tests/js/drive_responses.mjs).
pydantic-ai also runs with an OpenAI reasoning model's name, where it asks for
``include: ["reasoning.encrypted_content"]`` and resends item ids.

Each runs a two-turn chat and a tool loop, streamed and not: every chat is one
conversation, each call continuing the one before (found by the history resent, with or
without item ids, or named by previous_response_id) and keeping only what it added; what
the client received is what was saved and what GET /v1/responses/{id} returns."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.clients import (
    ANSWER,
    MODEL,
    TOOL_LOOP,
    Deployment,
    Received,
    answer,
    as_json,
    chat_requests,
    deploy,
    lookup,
    run_node,
    saved_answer,
)
from tests.fake_llm import Behavior

PROMPTS = {"two": ["one", "two"], "tool": ["look up déjà vu"]}
# In the tool loop the model reasons first: the clients get a reasoning item and resend it
# their own way (by id, by item_reference, or not at all).
REASONING = ["Hm, ", "easy."]
BEHAVIORS = {
    "two": Behavior(tokens=ANSWER),
    "tool": dataclasses.replace(TOOL_LOOP, reasoning=REASONING),
}
Driver = Callable[[str, str, str, bool], Received]


@pytest.fixture(scope="module")
def deployment(backend, database_factory, llm_server, tmp_path_factory):
    """One gunicorn for the module (per backend), on a database migrated by the release."""
    yield from deploy(backend, database_factory, llm_server, tmp_path_factory.mktemp("clients"))


def turn(response_id: str | None, content: Any, calls: list[tuple[str, str, Any]]) -> dict:
    """One call's answer as the client received it: the response's id, text and tool calls."""
    return {"id": response_id, **answer(content, calls)}


# ------------------------------------------------------------------------ the clients
def pydantic_ai(chained: bool, model_name: str = MODEL) -> Driver:
    """An Agent on OpenAIResponsesModel; ``chained``: openai_previous_response_id="auto"
    (only the new messages are sent, after the last response). With an OpenAI reasoning
    model's name, it asks for reasoning.encrypted_content and resends item ids."""

    def drive(base_url: str, key: str, chat: str, stream: bool) -> Received:
        from pydantic_ai import Agent
        from pydantic_ai.messages import ModelResponse, ToolReturnPart
        from pydantic_ai.models.openai import OpenAIResponsesModel, OpenAIResponsesModelSettings
        from pydantic_ai.providers.openai import OpenAIProvider

        model = OpenAIResponsesModel(
            model_name, provider=OpenAIProvider(base_url=base_url, api_key=key)
        )
        settings = OpenAIResponsesModelSettings(openai_previous_response_id="auto")
        agent = Agent(
            model,
            tools=[lookup] if chat == "tool" else [],
            model_settings=settings if chained else None,
        )

        async def run(prompt: str, history: list[Any] | None) -> list[Any]:
            if not stream:
                result = await agent.run(prompt, message_history=history)
                return result.all_messages()
            async with agent.run_stream(prompt, message_history=history) as result:
                async for _text in result.stream_text(delta=True):
                    pass
                return result.all_messages()

        history: list[Any] | None = None
        for prompt in PROMPTS[chat]:
            history = asyncio.run(run(prompt, history))
        assert history is not None
        answers = [
            turn(
                m.provider_response_id,
                "".join(p.content for p in m.parts if p.part_kind == "text"),
                [
                    (p.tool_call_id, p.tool_name, p.args_as_dict())
                    for p in m.parts
                    if p.part_kind == "tool-call"
                ],
            )
            for m in history
            if isinstance(m, ModelResponse)
        ]
        results = [
            {"call_id": p.tool_call_id, "output": p.model_response_str()}
            for m in history
            for p in getattr(m, "parts", ())
            if isinstance(p, ToolReturnPart)
        ]
        return {"answers": answers, "tool_results": results}

    return drive


def langchain(chained: bool) -> Driver:
    """ChatOpenAI(use_responses_api=True), bind_tools and the documented tool loop;
    ``chained``: use_previous_response_id=True."""

    def drive(base_url: str, key: str, chat: str, stream: bool) -> Received:
        from langchain_core.messages import BaseMessage, HumanMessage, ToolMessage
        from langchain_core.tools import tool
        from langchain_openai import ChatOpenAI

        model: Any = ChatOpenAI(
            model=MODEL,
            base_url=base_url,
            api_key=key,
            use_responses_api=True,
            use_previous_response_id=chained,
            max_retries=0,
        )
        lookup_tool = tool(lookup)
        if chat == "tool":
            model = model.bind_tools([lookup_tool])

        def call(messages: list[BaseMessage]) -> Any:
            if not stream:
                return model.invoke(messages)
            whole = None
            for chunk in model.stream(messages):
                whole = chunk if whole is None else whole + chunk
            return whole

        answers, results, messages = [], [], []
        for prompt in PROMPTS[chat]:
            messages.append(HumanMessage(prompt))
            for _ in range(5):
                ai = call(messages)
                messages.append(ai)
                calls = [(c["id"], c["name"], c["args"]) for c in ai.tool_calls]
                answers.append(turn(ai.id, str(ai.text), calls))
                if not ai.tool_calls:
                    break
                for c in ai.tool_calls:
                    result = ToolMessage(
                        content=lookup_tool.invoke(c["args"]), tool_call_id=c["id"]
                    )
                    messages.append(result)
                    results.append({"call_id": c["id"], "output": result.content})
        return {"answers": answers, "tool_results": results}

    return drive


def vercel_ai(base_url: str, key: str, chat: str, stream: bool) -> Received:
    return run_node("drive_responses.mjs", [chat, "stream" if stream else "whole"], base_url, key)


CLIENTS: dict[str, Driver] = {
    "pydantic_ai": pydantic_ai(chained=False),
    "pydantic_ai_chained": pydantic_ai(chained=True),
    "pydantic_ai_reasoning_model": pydantic_ai(chained=False, model_name="gpt-5-mini"),
    "langchain": langchain(chained=False),
    "langchain_chained": langchain(chained=True),
    "vercel_ai": vercel_ai,
}
CHAINED = {"pydantic_ai_chained", "langchain_chained"}


# ----------------------------------------------------------------- what was saved
def retrieved(deployment: Deployment, response_id: str) -> dict[str, Any]:
    """GET /v1/responses/{id}."""
    status, body = deployment.web.request("GET", f"/v1/responses/{response_id}")
    assert status == 200, body
    return json.loads(body)


def as_turn(response: dict[str, Any]) -> dict[str, Any]:
    """A retrieved Response in ``turn``'s form."""
    text = "".join(
        part["text"]
        for item in response["output"]
        if item["type"] == "message"
        for part in item["content"]
    )
    calls = [
        (item["call_id"], item["name"], json.loads(item["arguments"]))
        for item in response["output"]
        if item["type"] == "function_call"
    ]
    return turn(response["id"], text, calls)


def with_parsed_arguments(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages with their tool calls' arguments parsed (clients resend them
    re-encoded)."""

    def parsed(call: dict[str, Any]) -> dict[str, Any]:
        function = call["function"]
        return {**call, "function": {**function, "arguments": json.loads(function["arguments"])}}

    return [
        {**m, "tool_calls": [parsed(c) for c in m["tool_calls"]]} if m.get("tool_calls") else m
        for m in messages
    ]


CONTEXT = {  # what the upstream is sent for the last call of each chat
    "two": [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "".join(ANSWER)},
        {"role": "user", "content": "two"},
    ],
    "tool": [
        {"role": "user", "content": "look up déjà vu"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_lookup_1", "type": "function",
             "function": {"name": "lookup", "arguments": {"q": "déjà vu"}}}]},
        {"role": "tool", "tool_call_id": "call_lookup_1", "content": "result for déjà vu"},
    ],
}  # fmt: skip
# The items each exchange keeps: what its call added, not the history a client resent.
ADDED = {"two": [["message"], ["message"]], "tool": [["message"], ["function_call_output"]]}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("chat", ["two", "tool"])
@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_a_chat_is_one_conversation_saved_and_retrieved_as_the_client_received_it(
    deployment, fake_llm, client, chat, stream
):
    fake_llm.behavior = BEHAVIORS[chat]
    last = deployment.last_conversation()

    received = CLIENTS[client](deployment.base_url, deployment.key, chat, stream)

    (conversation,) = deployment.conversations_after(last)
    rows = deployment.exchanges(conversation, len(received["answers"]))
    assert [(row.endpoint, row.outcome) for row in rows] == [("responses", "complete")] * 2
    # One exchange after the other, each the response the client received.
    assert [row.parent_id for row in rows] == [None, rows[0].id]
    ids = [f"resp_{row.id}" for row in rows]
    saved = [{"id": i, **saved_answer(row)} for i, row in zip(ids, rows, strict=True)]
    assert saved == received["answers"]
    responses = [retrieved(deployment, i) for i in ids]
    assert [as_turn(r) for r in responses] == received["answers"]
    assert [r["status"] for r in responses] == ["completed"] * 2
    reasoning = "".join(REASONING) if chat == "tool" else None
    assert [row.reasoning_content for row in rows] == [reasoning] * 2
    # Chained clients name the response they continue; the others resend the history.
    chain = [None, ids[0]] if client in CHAINED else [None, None]
    assert [r["previous_response_id"] for r in responses] == chain
    added = [as_json(row.input_items) for row in rows]
    assert [[item["type"] for item in items] for items in added] == ADDED[chat]
    inputs = [item for items in added for item in items]
    assert [
        part["text"] for item in inputs if item["type"] == "message" for part in item["content"]
    ] == PROMPTS[chat]
    assert [
        {"call_id": item["call_id"], "output": item["output"]}
        for item in inputs
        if item["type"] == "function_call_output"
    ] == received["tool_results"]
    assert with_parsed_arguments(chat_requests(fake_llm)[-1]["messages"]) == CONTEXT[chat]
    if chat == "tool":
        assert received["answers"][0]["tool_calls"] == [
            {"id": "call_lookup_1", "name": "lookup", "arguments": {"q": "déjà vu"}}
        ]
        assert received["tool_results"] == [
            {"call_id": "call_lookup_1", "output": "result for déjà vu"}
        ]
        assert received["answers"][1]["content"] == "Déjà vu means seen"
    else:
        assert [a["content"] for a in received["answers"]] == ["Héllo wörld 🌍"] * 2
