"""The canonical form of chat messages a history's fingerprint is taken over: one form for
what different SDKs resend of the same turn, and different forms for different turns."""

from __future__ import annotations

import pytest

from app.services.gateway import (
    canonical_arguments,
    canonical_message,
    fingerprint,
    history_prefix,
)
from tests.gateway.chat import assistant, user


def tool_call_message(arguments, content=""):
    return {
        "role": "assistant",
        "content": content,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": arguments}}
        ],
    }


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
