"""Daily token budgets: counted from the usage rollups, refused before any upstream call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.extensions import db
from app.models.usage import UsageDaily
from tests.conftest import keyed_client
from tests.fake_llm import Behavior

USAGE = {"prompt_tokens": 40, "completion_tokens": 20, "total_tokens": 60}


@pytest.fixture(autouse=True)
def sixty_tokens_an_answer(fake_llm):
    fake_llm.behavior = Behavior(usage=USAGE)


@pytest.fixture
def conversation_id(client):
    return client.post("/conversations", json={"title": "t", "model_type": "fake-model"}).json["id"]


def ask(client, conversation_id):
    return client.post(f"/conversations/{conversation_id}/messages", json={"prompt": "p"})


def test_at_budget_the_next_exchange_is_429_before_any_upstream_call(
    client, configure, fake_llm, conversation_id
):
    configure(TOKEN_BUDGET_DAILY=100)

    statuses = [ask(client, conversation_id).status_code for _ in range(3)]
    refused = ask(client, conversation_id)

    assert statuses == [201, 201, 429]
    assert len(fake_llm.requests) == 2
    assert refused.json["message"].startswith("Today's token budget (100) is spent (120 used)")
    tomorrow = datetime.combine(
        datetime.now(UTC).date() + timedelta(days=1), datetime.min.time(), UTC
    )
    assert 0 < int(refused.headers["Retry-After"]) <= (tomorrow - datetime.now(UTC)).seconds + 1


def test_a_user_under_budget_is_unaffected(app, client, configure, make_account, conversation_id):
    configure(TOKEN_BUDGET_DAILY=100)
    for _ in range(2):
        ask(client, conversation_id)
    bob = keyed_client(app, make_account("bob").key)
    bobs = bob.post("/conversations", json={"title": "b", "model_type": "fake-model"}).json["id"]

    assert ask(bob, bobs).status_code == 201


def test_yesterdays_spending_does_not_count(client, configure, database, owner_id, conversation_id):
    configure(TOKEN_BUDGET_DAILY=100)
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    with database.app.app_context():
        db.session.add(
            UsageDaily(
                owner_id=owner_id,
                day=yesterday,
                model="fake-model",
                kind="exchange",
                outcome="complete",
                shard=0,
                calls=50,
                total_tokens=10_000,
            )
        )
        db.session.commit()

    assert ask(client, conversation_id).status_code == 201


def test_a_users_own_budget_replaces_the_service_wide_one(
    app, client, configure, fake_llm, conversation_id, alice
):
    configure(TOKEN_BUDGET_DAILY=0)
    app.test_cli_runner().invoke(args=["users", "limits", "alice", "--tokens-per-day", "50"])
    app.extensions["api_key_cache"].clear()

    statuses = [ask(client, conversation_id).status_code for _ in range(2)]

    assert statuses == [201, 429]


def test_the_gateway_refuses_in_openai_shape(client, configure, fake_llm):
    configure(TOKEN_BUDGET_DAILY=50)
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
    assert client.post("/v1/chat/completions", json=body).status_code == 200

    refused = client.post("/v1/chat/completions", json=body)

    assert refused.status_code == 429
    assert refused.json["error"]["message"].startswith("Today's token budget (50) is spent")
    assert "Retry-After" in refused.headers
    assert len(fake_llm.requests) == 1


def test_responses_spend_the_budget_and_are_refused_at_it_in_openai_shape(
    client, configure, fake_llm
):
    configure(TOKEN_BUDGET_DAILY=100)
    body = {"model": "fake-model", "input": "p", "store": False}

    statuses = [client.post("/v1/responses", json=body).status_code for _ in range(3)]
    refused = client.post("/v1/responses", json=body)

    assert statuses == [200, 200, 429]
    assert len(fake_llm.requests) == 2
    assert refused.json["error"]["message"].startswith("Today's token budget (100) is spent")
    assert refused.json["error"]["code"] == "rate_limit_exceeded"
