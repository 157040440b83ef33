"""The /v1 gateway refuses what it cannot serve in OpenAI's error shape (bodies, keys,
methods, paths), and its OpenAPI document says so; the rest of the API keeps its own shape."""

from __future__ import annotations

import pytest

from tests.gateway.chat import CHAT, chat, openai_error, user


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


def test_the_openapi_document_lists_the_v1_operations_with_openai_errors(anonymous):
    paths = anonymous.get("/openapi.json").json["paths"]

    post = paths["/v1/chat/completions"]["post"]
    assert set(post["responses"]) >= {"200", "400", "401", "404", "429", "502", "504"}
    for status in ("400", "401", "404", "429"):
        schema = post["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/OpenAIErrorOut"}
    assert "X-Conversation-Id" in {p["name"] for p in post["parameters"]}
    assert "200" in paths["/v1/models"]["get"]["responses"]
