"""Every database-unavailable condition is a 503 with Retry-After, never a 500."""

from __future__ import annotations

import flask_migrate
import pytest
import sqlalchemy as sa

from app.extensions import db
from app.services import users as users_service
from tests.conftest import disposing, keyed_client, make_app


@pytest.mark.parametrize(
    "error",
    [
        sa.exc.InterfaceError("SELECT", {}, Exception("connection already closed")),
        sa.exc.OperationalError("SELECT", {}, Exception("server closed the connection")),
        sa.exc.DBAPIError("SELECT", {}, Exception("terminating"), connection_invalidated=True),
    ],
    ids=["interface", "operational", "invalidated"],
)
def test_a_lost_connection_is_503(app, client, error):
    with app.app_context():
        connection = db.engines[None]

    def fail(*_args):
        raise error

    sa.event.listen(connection, "before_cursor_execute", fail)
    try:
        response = client.get("/conversations")
    finally:
        sa.event.remove(connection, "before_cursor_execute", fail)

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json["message"] == "The database is unavailable; try again shortly."


def test_an_exhausted_pool_is_503(backend, database_factory):
    options = {"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.2}
    app = make_app(database_factory(backend), SQLALCHEMY_ENGINE_OPTIONS=options)
    with disposing(app):
        with app.app_context():
            flask_migrate.upgrade()
            key = users_service.create_user("alice").secret
            engine = db.engine
        client = keyed_client(app, key)

        with engine.connect():  # the pool's only connection, held
            response = client.get("/conversations")

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.is_json
