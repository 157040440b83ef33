"""The canary after erasing a person: a unique string in every kind of text they stored (REST,
/v1/chat/completions, /v1/responses, titles, metadata, feedback) is, once `flask users
erase` has run, found nowhere: endpoints, tables (PostgreSQL: every text column; SQLite: the
file's and the WAL's bytes), logs."""

from __future__ import annotations

import importlib
import logging

from app.services import users as users_service
from tests.conftest import keyed_client
from tests.deletion.canary import places_holding
from tests.deletion.helpers import branch
from tests.fake_llm import Behavior

CANARY = "zqxerased5k8"


def store_canaries(client, fake_llm) -> None:
    """The canary in a title, metadata, a prompt, an answer, a feedback comment, a system
    prompt, a /v1 request's parameters and a Responses input."""
    fake_llm.behavior = Behavior(tokens=[f"answer {CANARY}"])
    conversation = client.post(
        "/conversations", json={"title": f"title {CANARY}", "metadata": {"k": CANARY}}
    ).json["id"]
    (message_id,) = branch(client, conversation, f"prompt {CANARY}")
    client.put(
        f"/conversations/{conversation}/messages/{message_id}/feedback",
        json={"rating": 1, "comment": f"comment {CANARY}"},
    )
    completion = client.post(
        "/v1/chat/completions",
        json={
            "model": "m",
            "user": CANARY,
            "messages": [
                {"role": "system", "content": f"system {CANARY}"},
                {"role": "user", "content": f"question {CANARY}"},
            ],
        },
    )
    assert completion.status_code == 200, completion.json
    response = client.post("/v1/responses", json={"model": "m", "input": f"input {CANARY}"})
    assert response.status_code == 200, response.json


def test_nothing_of_an_erased_person_is_left(pooled_app, fake_llm, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(importlib.import_module("app.cli.users"), "sleep", lambda _s: None)
    client = keyed_client(pooled_app, pooled_app.config["TEST_KEY"])
    with pooled_app.app_context():
        admin = keyed_client(pooled_app, users_service.create_user("root", admin=True).secret)
    store_canaries(client, fake_llm)
    assert places_holding(pooled_app, CANARY)

    result = pooled_app.test_cli_runner().invoke(args=["users", "erase", "alice"])

    assert result.exit_code == 0, result.output
    assert places_holding(pooled_app, CANARY) == []
    assert admin.get("/search", query_string={"q": CANARY, "owner": "all"}).json["results"] == []
    assert CANARY not in admin.get("/export", query_string={"owner": "all"}).get_data(as_text=True)
    assert CANARY not in caplog.text
