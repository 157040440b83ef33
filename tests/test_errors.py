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
    ("method", "path"),
    [("get", "/conversations/1"), ("post", "/conversations"), ("get", "/conversations?take=0")],
)
def test_errors_are_never_html(client, method, path):
    response = getattr(client, method)(path, data="<html>", content_type="text/html")

    assert response.is_json
    assert b"<html" not in response.data.lower() or response.status_code == 415
