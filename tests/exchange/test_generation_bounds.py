"""Bounds on one exchange: MAX_OUTPUT_TOKENS reaches the LLM, GENERATION_TIMEOUT cuts a slow
answer off and saves what was relayed."""

from __future__ import annotations

import pytest

from app.exchange.wire import StreamBroken
from tests.fake_llm import Behavior
from tests.generation import only_message, parse_sse, post_stream, stream_text


@pytest.fixture
def conversation_id(client):
    return client.post("/conversations", json={"title": "t", "model_type": "fake-model"}).json["id"]


@pytest.mark.parametrize("param", ["max_tokens", "max_completion_tokens"])
def test_max_output_tokens_is_sent_upstream(client, configure, fake_llm, conversation_id, param):
    configure(MAX_OUTPUT_TOKENS=50, MAX_OUTPUT_TOKENS_PARAM=param)

    stream_text(client, conversation_id)

    (call,) = fake_llm.requests
    assert call.body[param] == 50


def test_no_cap_by_default(client, fake_llm, conversation_id):
    stream_text(client, conversation_id)

    (call,) = fake_llm.requests
    assert "max_tokens" not in call.body
    assert "max_completion_tokens" not in call.body


class TestGenerationTimeout:
    @pytest.fixture(autouse=True)
    def slow(self, configure, fake_llm):
        configure(GENERATION_TIMEOUT=0.5)
        fake_llm.behavior = Behavior(n_tokens=40, delay=0.1)

    def assert_cut_off_and_saved(self, database, conversation_id, relayed):
        message = only_message(database, conversation_id)
        assert (message.outcome, message.status_code, message.finish_reason) == (
            "failed",
            504,
            "timeout",
        )
        assert message.response_content == relayed
        assert 0 < len(relayed) < len("".join(f"tok{i} " for i in range(40)))

    def test_plain_text_is_cut_off_uncleanly_and_saved(
        self, client, database, fake_llm, conversation_id
    ):
        response = stream_text(client, conversation_id, buffered=False)
        pieces = []

        def read_all():
            pieces.extend(response.response)

        with pytest.raises(StreamBroken):
            read_all()
        response.close()

        self.assert_cut_off_and_saved(database, conversation_id, b"".join(pieces).decode())
        assert fake_llm.wait_for(lambda server: server.client_disconnects == 1)

    def test_sse_ends_with_an_error_event(self, client, database, conversation_id):
        events = parse_sse(post_stream(client, conversation_id).data)

        assert events[-1] == (
            "error",
            {
                "code": 504,
                "message": "The answer took longer than 0.5 s (GENERATION_TIMEOUT) and was "
                "cut off.",
            },
        )
        relayed = "".join(data["text"] for event, data in events if event == "delta")
        self.assert_cut_off_and_saved(database, conversation_id, relayed)

    def test_the_json_reply_is_504_and_the_part_is_saved(self, client, database, conversation_id):
        response = client.post(f"/conversations/{conversation_id}/messages", json={"prompt": "p"})

        assert response.status_code == 504
        message = only_message(database, conversation_id)
        self.assert_cut_off_and_saved(database, conversation_id, message.response_content)


class TestGatewayOutputCap:
    def chat(self, client, **params):
        body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], **params}
        return client.post("/v1/chat/completions", json=body)

    def test_asking_more_is_clamped_and_the_response_says_so(self, client, configure, fake_llm):
        configure(MAX_OUTPUT_TOKENS=100)

        response = self.chat(client, max_tokens=5000, max_completion_tokens=50)

        assert response.status_code == 200
        assert response.headers["X-Max-Output-Tokens"] == "100"
        (call,) = fake_llm.requests
        assert (call.body["max_tokens"], call.body["max_completion_tokens"]) == (100, 50)

    def test_asking_less_is_left_alone(self, client, configure, fake_llm):
        configure(MAX_OUTPUT_TOKENS=100)

        response = self.chat(client, max_tokens=20)

        assert "X-Max-Output-Tokens" not in response.headers
        (call,) = fake_llm.requests
        assert call.body["max_tokens"] == 20

    def test_asking_nothing_gets_the_cap(self, client, configure, fake_llm):
        configure(MAX_OUTPUT_TOKENS=100, MAX_OUTPUT_TOKENS_PARAM="max_completion_tokens")

        response = self.chat(client, stream=True)

        assert "X-Max-Output-Tokens" not in response.headers
        (call,) = fake_llm.requests
        assert call.body["max_completion_tokens"] == 100
        assert "max_tokens" not in call.body
