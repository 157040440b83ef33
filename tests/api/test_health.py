"""Probes and the API's own documentation."""

from __future__ import annotations

import flask_migrate

from app.extensions import db
from tests.conftest import UNKNOWN_KEY, bearer, disposing, make_app


def test_healthz(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_when_migrated(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_is_503_until_migrations_run(backend, database_factory):
    with disposing(make_app(database_factory(backend))) as app:
        client = app.test_client()

        before = client.get("/readyz")
        with app.app_context():
            flask_migrate.upgrade()
        after = client.get("/readyz")

    assert before.status_code == 503
    assert before.json["status"] == "unavailable"
    assert "flask db upgrade" in before.json["detail"]
    assert after.status_code == 200


UNREACHABLE = "postgresql+psycopg://nobody@127.0.0.1:1/none"


def test_readyz_is_503_when_the_database_is_unreachable():
    with disposing(make_app(UNREACHABLE)) as app:
        response = app.test_client().get("/readyz")

    assert response.status_code == 503
    assert response.json == {"status": "unavailable", "detail": "database unreachable"}


def test_requests_get_503_when_the_database_is_unreachable():
    with disposing(make_app(UNREACHABLE)) as app:
        response = app.test_client().get("/conversations", headers=bearer(UNKNOWN_KEY))

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json["message"] == "The database is unavailable; try again shortly."


def test_openapi_documents_every_endpoint(client):
    spec = client.get("/openapi.json").json

    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) >= {
        "/conversations",
        "/conversations/{conversation_id}",
        "/conversations/{conversation_id}/messages",
        "/healthz",
        "/readyz",
    }
    assert set(spec["paths"]["/conversations/{conversation_id}"]) >= {"get", "put", "delete"}
    assert "202" in spec["paths"]["/conversations/{conversation_id}"]["put"]["responses"]


def test_docs_page(client):
    response = client.get("/docs")

    assert response.status_code == 200
    assert b"swagger" in response.data.lower()


def test_no_tables_are_created_outside_migrations(backend, database_factory):
    url = database_factory(backend)
    with disposing(make_app(url, PROPAGATE_EXCEPTIONS=False)) as app:
        response = app.test_client().get("/conversations", headers=bearer(UNKNOWN_KEY))
        with app.app_context():
            tables = db.inspect(db.engine).get_table_names()

    # The schema is behind the code (SQLite: OperationalError, PostgreSQL: ProgrammingError).
    assert response.status_code == 503
    assert response.json["message"] == "The database is not ready; try again shortly."
    assert "conversations" not in tables
