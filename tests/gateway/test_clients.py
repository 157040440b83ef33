"""The client libraries people use against an OpenAI-compatible server, unchanged but for base
URL and key, against the service under real gunicorn: LangChain's ChatOpenAI (plain and
bind_tools), a pydantic-ai Agent with a tool, Simon Willison's llm (library and CLI), the npm
openai package and Vercel's ai with @ai-sdk/openai-compatible (tests/js, driven with node).

Each runs a plain chat, a 3-turn chat and a tool loop, streamed and not: every chat is one
conversation, and what was saved is what the client received (answers, tool calls) and sent
(prompts, tool results)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from tests.clients import (
    ANSWER,
    MODEL,
    TOOL_LOOP,
    Received,
    answer,
    as_json,
    deploy,
    lookup,
    run_node,
    saved_answer,
)
from tests.fake_llm import Behavior
from tests.procfile import BIN

PROMPTS = {"plain": ["hello"], "three": ["one", "two", "three"], "tool": ["look up déjà vu"]}


@pytest.fixture(scope="module")
def deployment(backend, database_factory, llm_server, tmp_path_factory):
    """One gunicorn for the module (per backend), on a database migrated by the release."""
    yield from deploy(backend, database_factory, llm_server, tmp_path_factory.mktemp("clients"))


# ------------------------------------------------------------------------ the clients
def drive_langchain(base_url: str, key: str, chat: str, stream: bool) -> Received:
    from langchain_core.messages import BaseMessage, HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    model: Any = ChatOpenAI(
        model=MODEL, base_url=base_url, api_key=key, use_responses_api=False, max_retries=0
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
        for _ in range(5):  # the tool loop, as LangChain's docs write it
            ai = call(messages)
            messages.append(ai)
            answers.append(
                answer(ai.content, [(c["id"], c["name"], c["args"]) for c in ai.tool_calls])
            )
            if not ai.tool_calls:
                break
            for c in ai.tool_calls:
                result = ToolMessage(content=lookup_tool.invoke(c["args"]), tool_call_id=c["id"])
                messages.append(result)
                results.append({"tool_call_id": c["id"], "content": result.content})
    return {"answers": answers, "tool_results": results}


def drive_pydantic_ai(base_url: str, key: str, chat: str, stream: bool) -> Received:
    from pydantic_ai import Agent
    from pydantic_ai.messages import ModelResponse, ToolReturnPart
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIChatModel(MODEL, provider=OpenAIProvider(base_url=base_url, api_key=key))
    agent = Agent(model, tools=[lookup] if chat == "tool" else [])

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
        answer(
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
        {"tool_call_id": p.tool_call_id, "content": p.model_response_str()}
        for m in history
        for p in getattr(m, "parts", ())
        if isinstance(p, ToolReturnPart)
    ]
    return {"answers": answers, "tool_results": results}


def drive_llm(base_url: str, key: str, chat: str, stream: bool) -> Received:
    from llm.default_plugins.openai_models import Chat

    model = Chat("convstore", key=key, model_name=MODEL, api_base=base_url, supports_tools=True)
    conversation = model.conversation()
    responses = []
    for prompt in PROMPTS[chat]:
        if chat == "tool":
            # responses() runs the chain (each call anew): one pass, read as it goes.
            chain = conversation.chain(prompt, tools=[lookup], stream=stream, key=key)
            for response in chain.responses():
                response.text()
                responses.append(response)
        else:
            response = conversation.prompt(prompt, stream=stream, key=key)
            response.text()
            responses.append(response)
    answers = [
        answer(r.text(), [(c.tool_call_id, c.name, c.arguments) for c in r.tool_calls()])
        for r in responses
    ]
    results = [
        {"tool_call_id": result.tool_call_id, "content": result.output}
        for r in responses
        for result in r.prompt.tool_results
    ]
    return {"answers": answers, "tool_results": results}


def javascript(client: str) -> Callable[[str, str, str, bool], Received]:
    def drive(base_url: str, key: str, chat: str, stream: bool) -> Received:
        return run_node("drive.mjs", [client, chat, "stream" if stream else "whole"], base_url, key)

    return drive


CLIENTS = {
    "langchain": drive_langchain,
    "pydantic_ai": drive_pydantic_ai,
    "llm": drive_llm,
    "openai_npm": javascript("openai"),
    "vercel_ai": javascript("ai"),
}


# ----------------------------------------------------------------- what was saved
def text_of(content: Any) -> str:
    if isinstance(content, list):  # text parts
        return "".join(part.get("text", "") for part in content)
    return content


def saved_input(rows: list[sa.Row], role: str) -> list[dict[str, Any]]:
    return [item for row in rows for item in as_json(row.input_items) if item["role"] == role]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("chat", ["plain", "three", "tool"])
@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_a_chat_is_one_conversation_saved_as_the_client_received_it(
    deployment, fake_llm, client, chat, stream
):
    fake_llm.behavior = TOOL_LOOP if chat == "tool" else Behavior(tokens=ANSWER)
    last = deployment.last_conversation()

    received = CLIENTS[client](deployment.base_url, deployment.key, chat, stream)

    (conversation,) = deployment.conversations_after(last)
    rows = deployment.exchanges(conversation, len(received["answers"]))
    assert [row.outcome for row in rows] == ["complete"] * len(rows)
    assert [saved_answer(row) for row in rows] == received["answers"]
    assert [text_of(item["content"]) for item in saved_input(rows, "user")] == PROMPTS[chat]
    tool_results = [
        {"tool_call_id": item["tool_call_id"], "content": text_of(item["content"])}
        for item in saved_input(rows, "tool")
    ]
    assert tool_results == received["tool_results"]
    if chat == "tool":
        assert len(rows) == 2
        assert received["answers"][0]["tool_calls"] == [
            {"id": "call_lookup_1", "name": "lookup", "arguments": {"q": "déjà vu"}}
        ]
        assert received["tool_results"] == [
            {"tool_call_id": "call_lookup_1", "content": "result for déjà vu"}
        ]
        assert received["answers"][1]["content"] == "Déjà vu means seen"
    else:
        assert [a["content"] for a in received["answers"]] == ["Héllo wörld 🌍"] * len(rows)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_the_llm_cli_continues_one_conversation(deployment, fake_llm, tmp_path, stream):
    fake_llm.behavior = Behavior(tokens=ANSWER)
    (tmp_path / "extra-openai-models.yaml").write_text(
        "- model_id: convstore\n"
        f"  model_name: {MODEL}\n"
        f'  api_base: "{deployment.base_url}"\n'
        "  api_key_name: convstore\n",
        "utf-8",
    )
    (tmp_path / "keys.json").write_text(json.dumps({"convstore": deployment.key}), "utf-8")
    env = {**os.environ, "LLM_USER_PATH": str(tmp_path)}
    flags = [] if stream else ["--no-stream"]
    last = deployment.last_conversation()

    outputs = []
    for n, prompt in enumerate(PROMPTS["three"]):
        model = ["-c"] if n else ["-m", "convstore"]
        done = subprocess.run(
            [str(BIN / "llm"), *model, *flags, prompt], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout.rstrip("\n"))

    (conversation,) = deployment.conversations_after(last)
    rows = deployment.exchanges(conversation, 3)
    assert [row.response_content for row in rows] == outputs == ["Héllo wörld 🌍"] * 3
    assert [row.prompt_content for row in rows] == PROMPTS["three"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_the_sdks_retries_of_a_failing_first_turn_are_one_conversation(
    deployment, fake_llm, stream
):
    import openai

    fake_llm.behavior = Behavior(error_status=503, retry_after=0)
    sdk = openai.OpenAI(base_url=deployment.base_url, api_key=deployment.key)  # 2 retries
    last = deployment.last_conversation()

    with pytest.raises(openai.InternalServerError):
        sdk.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": f"retried {stream}"}], stream=stream
        )

    (conversation,) = deployment.conversations_after(last)
    rows = deployment.exchanges(conversation, 3)
    assert [(row.outcome, row.status_code) for row in rows] == [("failed", 503)] * 3
    # One upstream call per client attempt: no retries of the service's, no title calls.
    assert len(fake_llm.requests) == 3
