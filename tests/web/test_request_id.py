"""Request ids: the client's when sane, else a new one; echoed on every response."""

from __future__ import annotations

import re

from flask.testing import FlaskClient


def test_a_sane_client_request_id_is_echoed(client: FlaskClient) -> None:
    response = client.get("/conversations", headers={"X-Request-ID": "trace-42.abc"})

    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "trace-42.abc"


def test_an_insane_client_request_id_is_replaced_by_a_generated_one(client: FlaskClient) -> None:
    response = client.get("/conversations", headers={"X-Request-ID": "x" * 500})

    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


def test_errors_carry_a_request_id_too(anonymous: FlaskClient) -> None:
    response = anonymous.get("/conversations")

    assert response.status_code == 401
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])
