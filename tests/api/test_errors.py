"""One JSON error shape for everything; never an HTML page, never internals."""

from __future__ import annotations

import flask_migrate
import pytest

from app.services import users as users_service
from tests.conftest import bearer, disposing, make_app


def test_unknown_route_is_json_404(client):
    response = client.get("/nope")

    assert response.status_code == 404
    assert response.is_json
    assert response.json["code"] == 404
    assert response.json["status"] == "Not Found"
    assert response.json["message"]


def test_wrong_method_is_json_405_with_allow(client):
    response = client.patch("/conversations")

    assert response.status_code == 405
    assert response.json["status"] == "Method Not Allowed"
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}


def test_unexpected_exception_is_json_500_without_internals(backend, database_factory):
    app = make_app(database_factory(backend), PROPAGATE_EXCEPTIONS=False)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret connection string postgres://user:pw@host")

    with disposing(app), app.app_context():
        flask_migrate.upgrade()
        key = users_service.create_user("alice").secret
        response = app.test_client().get("/boom", headers=bearer(key))

    assert response.status_code == 500
    assert response.is_json
    assert response.json["code"] == 500
    assert response.json["status"] == "Internal Server Error"
    assert "secret" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/conversations/1", 404),
        ("post", "/conversations", 415),
        ("get", "/conversations?take=0", 422),
    ],
)
def test_errors_are_never_html(client, method, path, status):
    response = getattr(client, method)(path, data="<html>", content_type="text/html")

    assert response.status_code == status
    assert response.is_json
    assert b"<html" not in response.data.lower()


def operations(spec):
    methods = {"get", "put", "post", "delete", "patch"}
    return {
        (method.upper(), path): operation
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in methods
    }


def test_openapi_lists_each_error_an_operation_can_answer(anonymous):
    spec = anonymous.get("/openapi.json").json
    documented = {key: " ".join(sorted(op["responses"])) for key, op in operations(spec).items()}

    assert documented[("GET", "/conversations")] == "200 401 403 414 422 429 503"
    assert documented[("POST", "/conversations")] == "201 400 401 413 414 415 422 429 503"
    assert documented[("GET", "/conversations/{conversation_id}")] == "200 401 404 414 422 429 503"
    assert documented[("PUT", "/conversations/{conversation_id}")] == (
        "202 400 401 404 413 414 415 422 429 503"
    )
    assert (
        documented[("DELETE", "/conversations/{conversation_id}")]
        == "204 401 404 409 414 422 429 503"
    )
    assert documented[("GET", "/conversations/{conversation_id}/messages")] == (
        "200 401 404 414 422 429 503"
    )
    assert documented[("POST", "/conversations/{conversation_id}/messages")] == (
        "200 201 400 401 404 409 413 414 415 422 429 502 503 504"
    )
    assert documented[("GET", "/text/generate/stream")] == (
        "200 401 404 409 414 422 429 502 503 504"
    )
    assert documented[("GET", "/healthz")] == "200 414"
    assert documented[("GET", "/readyz")] == "200 414 503"


def test_openapi_error_schema_is_the_one_error_shape(anonymous):
    spec = anonymous.get("/openapi.json").json
    unauthorized = operations(spec)[("GET", "/conversations")]["responses"]["401"]
    error = spec["components"]["schemas"]["ErrorOut"]

    body = anonymous.get("/conversations").json

    assert unauthorized == {"$ref": "#/components/responses/Error401"}
    assert "WWW-Authenticate" in spec["components"]["responses"]["Error401"]["headers"]
    assert set(error["required"]) == {"code", "status", "message"}
    assert set(error["properties"]) == {"code", "status", "message", "errors"}
    assert set(body) == {"code", "status", "message"}


def test_openapi_gives_the_streams_their_content_types(anonymous):
    spec = anonymous.get("/openapi.json").json
    text = operations(spec)[("GET", "/text/generate/stream")]["responses"]["200"]
    sse = operations(spec)[("POST", "/conversations/{conversation_id}/messages")]["responses"]

    assert list(text["content"]) == ["text/plain; charset=utf-8"]
    assert list(sse["200"]["content"]) == ["text/event-stream"]
    assert list(sse["201"]["content"]) == ["application/json"]


def test_openapi_lists_the_errors_of_search_metadata_feedback_and_export(anonymous):
    spec = anonymous.get("/openapi.json").json
    documented = {key: " ".join(sorted(op["responses"])) for key, op in operations(spec).items()}
    feedback = "/conversations/{conversation_id}/messages/{message_id}/feedback"

    assert documented[("GET", "/search")] == "200 401 403 414 422 429 503"
    assert documented[("PATCH", "/conversations/{conversation_id}")] == (
        "200 400 401 404 413 414 415 422 429 503"
    )
    assert documented[("PUT", feedback)] == "200 400 401 404 413 414 415 422 429 503"
    assert documented[("DELETE", feedback)] == "204 401 404 414 422 429 503"
    assert documented[("GET", "/conversations/{conversation_id}/export")] == (
        "200 401 404 414 422 429 503"
    )
    assert documented[("GET", "/export")] == "200 401 403 414 422 429 503"
    assert documented[("POST", "/import")] == "201 400 401 403 413 414 415 422 429 503"
