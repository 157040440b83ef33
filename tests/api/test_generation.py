"""Generation: the LLM's answer is relayed as it comes and every exchange is saved.

The LLM is tests/fake_llm.py, a real OpenAI-compatible HTTP server reached through the real
openai client; each test steers it.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from app.exchange.wire import StreamBroken
from app.schemas.fields import QUERY_PROMPT_MAX
from tests.fake_llm import Behavior
from tests.generation import only_message, parse_sse, post_stream, stream_text

TOKENS = ["Hello", ", ", "wor", "ld", "!"]


@pytest.fixture
def conversation_id(client):
    return client.post("/conversations", json={"title": "chat", "model_type": "fake-model"}).json[
        "id"
    ]


class TestPlainTextStream:
    def test_relays_the_text_and_saves_it_byte_for_byte(
        self, client, database, fake_llm, conversation_id
    ):
        fake_llm.behavior = Behavior(tokens=TOKENS)

        response = stream_text(client, conversation_id)

        assert response.status_code == 200
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["X-Accel-Buffering"] == "no"
        assert response.data == "".join(TOKENS).encode()
        message = only_message(database, conversation_id)
        assert message.response_content.encode() == response.data
        assert message.prompt_content == "Say hello"
        assert (message.is_success, message.status_code) == (True, 200)

    def test_saves_the_usage_the_upstream_reported(
        self, client, database, fake_llm, conversation_id
    ):
        fake_llm.behavior = Behavior(
            tokens=TOKENS,
            usage={
                "prompt_tokens": 11,
                "completion_tokens": 5,
                "total_tokens": 16,
            },
        )

        response = stream_text(client, conversation_id)

        assert response.status_code == 200, response.json
        message = only_message(database, conversation_id)
        assert (message.prompt_tokens, message.response_tokens, message.total_tokens) == (
            11,
            5,
            16,
        )
        assert fake_llm.requests[-1].body["stream_options"] == {"include_usage": True}

    def test_sends_each_piece_as_it_arrives(self, client, fake_llm, conversation_id):
        fake_llm.behavior = Behavior(tokens=TOKENS, delay=0.02)

        response = stream_text(client, conversation_id, buffered=False)
        pieces = list(response.response)
        response.close()

        assert pieces == [token.encode() for token in TOKENS]

    def test_multibyte_characters_split_across_chunks_arrive_intact(
        self, client, database, fake_llm, conversation_id
    ):
        tokens = ["é", "日本", "🙂", " ok"]
        fake_llm.behavior = Behavior(tokens=tokens, split_utf8=True)

        response = stream_text(client, conversation_id)

        assert response.data.decode() == "é日本🙂 ok"
        assert only_message(database, conversation_id).response_content == "é日本🙂 ok"

    def test_upstream_breaking_off_ends_the_stream_uncleanly_and_saves_the_part(
        self, client, database, fake_llm, conversation_id
    ):
        fake_llm.behavior = Behavior(tokens=TOKENS, break_after=2)

        response = stream_text(client, conversation_id, buffered=False)
        pieces = iter(response.response)
        received = [next(pieces), next(pieces)]
        with pytest.raises(StreamBroken, match="broke off"):
            next(pieces)
        response.close()

        assert b"".join(received) == b"Hello, "
        message = only_message(database, conversation_id)
        assert message.response_content == "Hello, "
        assert (message.is_success, message.status_code) == (False, 502)


class TestServerSentEvents:
    def test_deltas_then_done_with_the_saved_message(
        self, client, database, fake_llm, conversation_id
    ):
        fake_llm.behavior = Behavior(tokens=TOKENS)

        response = post_stream(client, conversation_id)

        assert response.status_code == 200
        assert response.mimetype == "text/event-stream"
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["X-Accel-Buffering"] == "no"
        events = parse_sse(response.data)
        assert events[:-1] == [("delta", {"text": token}) for token in TOKENS]
        event, data = events[-1]
        assert event == "done"
        listed = client.get(f"/conversations/{conversation_id}/messages").json
        assert data["message"] == listed[0]
        assert data["message"]["response_content"] == "".join(TOKENS)
        assert data["message"]["is_success"] is True
        assert data["message"]["total_tokens"] is not None

    def test_upstream_breaking_off_sends_an_error_event_and_saves_the_part(
        self, client, database, fake_llm, conversation_id
    ):
        fake_llm.behavior = Behavior(tokens=TOKENS, break_after=3)

        events = parse_sse(post_stream(client, conversation_id).data)

        assert events[:3] == [("delta", {"text": token}) for token in TOKENS[:3]]
        assert events[3][0] == "error"
        assert events[3][1]["code"] == 502
        assert "broke off" in events[3][1]["message"]
        message = only_message(database, conversation_id)
        assert message.response_content == "Hello, wor"
        assert (message.is_success, message.status_code) == (False, 502)

    def test_keep_alive_comments_while_the_upstream_is_silent(
        self, client, configure, fake_llm, conversation_id
    ):
        configure(SSE_KEEPALIVE_SECONDS=0.05)
        fake_llm.behavior = Behavior(tokens=["a", "b"], delay=0.3)

        events = parse_sse(post_stream(client, conversation_id).data)

        kinds = [kind for kind, _ in events]
        assert kinds[0] == "delta"
        assert "comment" in kinds[1 : kinds.index("delta", 1)]
        assert kinds[-1] == "done"
        assert [d["text"] for kind, d in events if kind == "delta"] == ["a", "b"]


@pytest.mark.parametrize("endpoint", ["text", "sse", "json"])
def test_consecutive_exchanges_reuse_one_upstream_connection(
    client, fake_llm, conversation_id, endpoint
):
    # A new connection per exchange would cost a TCP and TLS handshake before every answer.
    fake_llm.behavior = Behavior(n_tokens=3)
    before = fake_llm.connections

    # Streams answer 200 as they start; the JSON endpoint answers 201 with the saved message.
    status = {"text": 200, "sse": 200, "json": 201}[endpoint]
    for prompt in ("one", "two", "three"):
        if endpoint == "text":
            response = stream_text(client, conversation_id, prompt=prompt)
        elif endpoint == "sse":
            response = post_stream(client, conversation_id, prompt=prompt)
        else:
            response = client.post(
                f"/conversations/{conversation_id}/messages", json={"prompt": prompt}
            )
        assert response.status_code == status
        response.close()

    assert fake_llm.connections - before <= 1


class TestClientHangsUp:
    @pytest.mark.parametrize("endpoint", ["text", "sse"])
    def test_partial_text_is_saved_as_499_and_the_upstream_closed(
        self, client, database, fake_llm, conversation_id, endpoint
    ):
        fake_llm.behavior = Behavior(n_tokens=50, delay=0.05)
        send = stream_text if endpoint == "text" else post_stream

        response = send(client, conversation_id, buffered=False)
        pieces = iter(response.response)
        received = [next(pieces) for _ in range(3)]
        response.close()  # the client goes away

        message = only_message(database, conversation_id)
        assert (message.is_success, message.status_code) == (False, 499)
        # A piece counts as relayed once the server came back for the next one: the last
        # piece handed over may have been lost with the connection, the others were not.
        assert message.response_content == "tok0 tok1 "
        assert len(received) == 3
        assert fake_llm.wait_for(lambda server: server.client_disconnects == 1)
        assert fake_llm.active_streams == 0


class TestNonStreaming:
    def test_returns_201_with_the_saved_message(self, client, database, fake_llm, conversation_id):
        fake_llm.behavior = Behavior(tokens=TOKENS)

        response = client.post(
            f"/conversations/{conversation_id}/messages", json={"prompt": "Say hello"}
        )

        assert response.status_code == 201
        assert response.json["response_content"] == "Hello, world!"
        assert response.json["is_success"] is True
        assert response.json["status_code"] == 200
        assert client.get(f"/conversations/{conversation_id}/messages").json == [response.json]

    def test_upstream_breaking_off_is_502_and_the_part_is_saved(
        self, client, database, fake_llm, conversation_id
    ):
        fake_llm.behavior = Behavior(tokens=TOKENS, break_after=1)

        response = client.post(f"/conversations/{conversation_id}/messages", json={"prompt": "x"})

        assert response.status_code == 502
        message = only_message(database, conversation_id)
        assert (message.response_content, message.status_code) == ("Hello", 502)


class TestUpstreamFailsBeforeTheFirstToken:
    @pytest.mark.parametrize(
        ("behavior", "status", "recorded"),
        [
            (Behavior(error_status=429, retry_after=7), 429, 429),
            (Behavior(error_status=500), 502, 500),
            (Behavior(error_status=503), 502, 503),
            (Behavior(error_status=404), 422, 404),
            (Behavior(hang_after_headers=True), 504, 504),
            (Behavior(headers_delay=3), 504, 504),
        ],
        ids=[
            "rate-limited",
            "upstream-500",
            "upstream-503",
            "unknown-model",
            "silent-after-headers",
            "no-headers",
        ],
    )
    @pytest.mark.parametrize("endpoint", ["text", "sse", "json"])
    def test_json_error_and_a_recorded_failure(
        self, client, database, fake_llm, conversation_id, behavior, status, recorded, endpoint
    ):
        fake_llm.behavior = behavior
        if endpoint == "text":
            response = stream_text(client, conversation_id)
        else:
            response = client.post(
                f"/conversations/{conversation_id}/messages",
                json={"prompt": "Say hello", "stream": endpoint == "sse"},
            )

        assert response.status_code == status
        assert response.is_json
        assert response.json["code"] == status
        if status == 429:
            assert response.headers["Retry-After"] == "7"
        message = only_message(database, conversation_id)
        assert (message.is_success, message.status_code) == (False, recorded)
        assert message.prompt_content == "Say hello"
        assert message.response_content == ""

    def test_unreachable_upstream_is_502(self, client, configure, database, conversation_id):
        configure(OPENAI_BASE_URL="http://127.0.0.1:9/v1")

        response = stream_text(client, conversation_id)

        assert response.status_code == 502
        assert response.json["message"] == "The LLM provider could not be reached or broke off."
        assert only_message(database, conversation_id).status_code == 502

    def test_no_llm_configured_is_503(self, client, configure, database, conversation_id):
        configure(OPENAI_API_KEY=None, OPENAI_BASE_URL=None)

        response = stream_text(client, conversation_id)

        assert response.status_code == 503
        assert "OPENAI_API_KEY" in response.json["message"]
        assert only_message(database, conversation_id).status_code == 503


class TestUpstreamQuirks:
    def test_no_usage_is_charged_an_estimate(self, client, database, fake_llm, conversation_id):
        fake_llm.behavior = Behavior(tokens=TOKENS, send_usage=False)

        response = stream_text(client, conversation_id)

        assert response.status_code == 200
        message = only_message(database, conversation_id)
        # ceil(characters / 4): "Say hello" sent (9), "Hello, world!" received (13).
        assert (message.prompt_tokens, message.response_tokens, message.total_tokens) == (
            3,
            4,
            7,
        )
        assert (message.usage_estimated, message.is_success) == (True, True)

    def test_servers_rejecting_stream_options_work_with_the_option_off(
        self, client, configure, database, fake_llm, conversation_id
    ):
        fake_llm.behavior = Behavior(tokens=TOKENS, reject_stream_options=True)
        rejected = stream_text(client, conversation_id)
        configure(OPENAI_STREAM_USAGE=False)

        accepted = stream_text(client, conversation_id)

        assert rejected.status_code == 502
        assert "400" in rejected.json["message"]
        assert accepted.status_code == 200
        assert accepted.data == b"Hello, world!"
        assert "stream_options" not in fake_llm.requests[-1].body

    @pytest.mark.parametrize("reason", ["length", "content_filter"])
    def test_a_truncated_answer_is_complete(
        self, client, database, fake_llm, conversation_id, reason
    ):
        fake_llm.behavior = Behavior(tokens=TOKENS, finish_reason=reason)

        stream_text(client, conversation_id)

        message = only_message(database, conversation_id)
        assert (message.is_success, message.status_code) == (True, 200)


class TestHistory:
    def send(self, client, conversation_id, prompt):
        return client.post(f"/conversations/{conversation_id}/messages", json={"prompt": prompt})

    def test_earlier_successful_exchanges_are_sent_oldest_first(
        self, client, fake_llm, conversation_id
    ):
        fake_llm.behavior = Behavior(tokens=["A1"])
        self.send(client, conversation_id, "Q1")
        fake_llm.behavior = Behavior(tokens=["A2"])
        self.send(client, conversation_id, "Q2")
        fake_llm.behavior = Behavior(error_status=500)
        self.send(client, conversation_id, "failed")
        fake_llm.behavior = Behavior(tokens=["A3"])

        self.send(client, conversation_id, "Q3")

        assert fake_llm.requests[-1].body["messages"] == [
            {"role": "user", "content": "Q1"},
            {"role": "assistant", "content": "A1"},
            {"role": "user", "content": "Q2"},
            {"role": "assistant", "content": "A2"},
            {"role": "user", "content": "Q3"},
        ]

    def test_history_keeps_to_its_count_budget(self, client, configure, fake_llm, conversation_id):
        configure(HISTORY_MAX_MESSAGES=1)
        for prompt in ["Q1", "Q2"]:
            self.send(client, conversation_id, prompt)

        self.send(client, conversation_id, "Q3")

        sent = fake_llm.requests[-1].body["messages"]
        assert [m["content"] for m in sent if m["role"] == "user"] == ["Q2", "Q3"]

    def test_history_keeps_to_its_character_budget(
        self, client, configure, fake_llm, conversation_id
    ):
        fake_llm.behavior = Behavior(tokens=["x" * 40])
        for prompt in ["Q1", "Q2", "Q3"]:
            self.send(client, conversation_id, prompt)
        configure(HISTORY_MAX_CHARS=100)  # two exchanges of 42 characters fit, three don't

        self.send(client, conversation_id, "Q4")

        sent = fake_llm.requests[-1].body["messages"]
        assert [m["content"] for m in sent if m["role"] == "user"] == ["Q2", "Q3", "Q4"]

    def test_the_conversations_model_is_sent(self, client, fake_llm):
        conversation = client.post("/conversations", json={"title": "t", "model_type": "m-7b"}).json

        self.send(client, conversation["id"], "hi")

        assert fake_llm.requests[-1].body["model"] == "m-7b"


class TestInput:
    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({}, "prompt"),
            ({"prompt": ""}, "prompt"),
            ({"prompt": "  "}, "prompt"),
            ({"prompt": "x", "stream": "maybe"}, "stream"),
            ({"prompt": "x", "extra": 1}, "extra"),
        ],
    )
    def test_bad_message_body_is_422(self, client, conversation_id, body, field):
        response = client.post(f"/conversations/{conversation_id}/messages", json=body)

        assert response.status_code == 422
        assert field in response.json["errors"]["json"]

    @pytest.mark.parametrize(
        ("query", "field"),
        [
            ("prompt=hi", "conversation_id"),
            ("conversation_id=1", "prompt"),
            ("prompt=hi&conversation_id=x", "conversation_id"),
            ("prompt=hi&conversation_id=0", "conversation_id"),
        ],
    )
    def test_bad_generate_query_is_422(self, client, query, field):
        response = client.get(f"/text/generate/stream?{query}")

        assert response.status_code == 422
        assert field in response.json["errors"]["query"]

    def test_a_query_prompt_is_bounded_so_the_url_fits_a_request_line(
        self, client, conversation_id
    ):
        # gunicorn answers a request line over 4094 bytes with its own HTML 414; the
        # document once allowed a 100,000-character prompt here.
        longest = "\U0010ffff" * QUERY_PROMPT_MAX  # 12 bytes a character once encoded
        query = urlencode({"prompt": longest, "conversation_id": 2**63 - 1})
        line = f"GET /text/generate/stream?{query} HTTP/1.1"
        documented = client.get("/openapi.json").json["paths"]["/text/generate/stream"]["get"]

        response = client.get(f"/text/generate/stream?prompt={'x' * (QUERY_PROMPT_MAX + 1)}")

        assert len(line.encode()) <= 4094
        assert response.status_code == 422
        assert response.json["errors"]["query"]["prompt"] == [
            f"Length must be between 1 and {QUERY_PROMPT_MAX}."
        ]
        prompt = next(p for p in documented["parameters"] if p["name"] == "prompt")
        assert prompt["schema"]["maxLength"] == QUERY_PROMPT_MAX

    # The largest id a BIGINT holds, and one above what an INTEGER does.
    @pytest.mark.parametrize("unknown", [424242, 2**31, 2**63 - 1])
    def test_unknown_conversation_is_404_and_nothing_is_called(
        self, client, fake_llm, database, unknown
    ):
        text = stream_text(client, unknown)
        sse = post_stream(client, unknown)

        assert (text.status_code, sse.status_code) == (404, 404)
        assert fake_llm.requests == []
        assert database.scalar("SELECT count(*) FROM messages") == 0
