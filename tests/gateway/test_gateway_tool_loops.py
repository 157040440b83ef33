"""Tool loops through the real openai SDK in process stay in one conversation, whichever
way each client re-encodes the arguments it resends."""

from __future__ import annotations

import json

import httpx2
import openai
import pytest

from tests.fake_llm import Behavior
from tests.gateway.chat import messages_in, user

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
