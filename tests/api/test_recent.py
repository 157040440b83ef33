"""Sidebars: conversations most recently active first, pinned first, archived apart."""

from __future__ import annotations

import re

import pytest


def create(client, title):
    return client.post("/conversations", json={"title": title, "model_type": "fake-model"}).json


def titles(response):
    assert response.status_code == 200, response.json
    return [c["title"] for c in response.json]


def recent(client, **query):
    return client.get("/conversations", query_string={"order": "recent", **query})


def next_url(response):
    link = response.headers.get("Link")
    if link is None:
        return None
    return re.fullmatch(r'<(.+)>; rel="next"', link)[1]


@pytest.fixture
def three(client):
    return [create(client, name) for name in ("old", "middle", "new")]


def test_recent_first_and_a_new_exchange_moves_a_conversation_up(client, fake_llm, three):
    assert titles(recent(client)) == ["new", "middle", "old"]

    client.post(f"/conversations/{three[0]['id']}/messages", json={"prompt": "hi"})

    assert titles(recent(client)) == ["old", "new", "middle"]
    # The seed's order stays the default.
    assert titles(client.get("/conversations")) == ["old", "middle", "new"]


def test_an_edit_is_activity_and_pinning_is_not(client, three):
    client.patch(f"/conversations/{three[0]['id']}", json={"title": "old, renamed"})
    client.patch(f"/conversations/{three[1]['id']}", json={"pinned": True})

    assert titles(recent(client)) == ["middle", "old, renamed", "new"]


def test_archived_ones_leave_the_lists_unless_asked_for(client, three):
    response = client.patch(f"/conversations/{three[1]['id']}", json={"archived": True})

    assert response.status_code == 200
    assert (response.json["archived"], response.json["pinned"]) == (True, False)
    assert titles(recent(client)) == ["new", "old"]
    assert titles(client.get("/conversations")) == ["old", "new"]
    assert titles(recent(client, archived="true")) == ["middle"]
    assert titles(client.get("/conversations", query_string={"archived": "true"})) == ["middle"]


def test_the_cursor_pages_through_pinned_then_recent(client, three):
    client.patch(f"/conversations/{three[0]['id']}", json={"pinned": True})
    seen = []

    url = "/conversations?order=recent&take=1"
    while url is not None:
        response = client.get(url)
        seen += titles(response)
        url = next_url(response)

    assert seen == ["old", "new", "middle"]


@pytest.mark.parametrize(
    "query",
    [
        {"order": "recent", "cursor": "not-a-cursor"},
        {"order": "recent", "cursor": "W10"},  # base64 of []
        {"order": "recent", "after": "1"},
        {"order": "created", "cursor": "WzAsIjIwMjYtMDEtMDFUMDA6MDA6MDArMDA6MDAiLDFd"},
        {"order": "newest"},
    ],
)
def test_a_bad_order_or_cursor_is_422(client, three, query):
    response = client.get("/conversations", query_string=query)

    assert response.status_code == 422
    assert response.json["code"] == 422
