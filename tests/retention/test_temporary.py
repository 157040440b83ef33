"""Temporary conversations: made by REST's temporary: true or /v1's X-Conversation-Temporary
header, left out of lists and search, otherwise ordinary, and purged
TEMPORARY_RETENTION_HOURS after their last activity."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.deletion.helpers import branch
from tests.fake_llm import Behavior
from tests.retention.helpers import HOUR, exists, iso, purge, purged_ids

MODEL = "fake-model"
HEADER = "X-Conversation-Temporary"


def create(client, **body) -> int:
    response = client.post("/conversations", json={"title": "t", **body})
    assert response.status_code == 201, response.json
    return response.json["id"]


def listed(client, query: str = "") -> list[int]:
    return [c["id"] for c in client.get(f"/conversations{query}").json]


def temporary(client, uid: int) -> bool:
    return client.get(f"/conversations/{uid}").json["temporary"]


class TestREST:
    def test_lists_leave_it_out_unless_asked(self, client):
        kept = create(client)
        hidden = create(client, temporary=True)

        assert temporary(client, hidden)
        assert not temporary(client, kept)
        assert listed(client) == [kept]
        assert listed(client, "?order=recent") == [kept]
        assert listed(client, "?temporary=true") == [hidden]
        assert listed(client, "?temporary=true&order=recent") == [hidden]
        assert listed(client, "?temporary=true&archived=true") == []

    def test_search_never_finds_it_and_everything_else_works(self, client, fake_llm):
        fake_llm.behavior = Behavior(tokens=["answer okapiword"])
        hidden = create(client, title="okapiword title", temporary=True)
        shown = create(client, title="other")
        branch(client, hidden, "prompt okapiword", "again")
        branch(client, shown, "prompt okapiword")

        found = client.get("/search", query_string={"q": "okapiword"}).json["results"]

        assert {hit["conversation_id"] for hit in found} == {shown}
        messages = client.get(f"/conversations/{hidden}/messages").json
        assert [m["prompt_content"] for m in messages] == ["prompt okapiword", "again"]
        exported = client.get(f"/conversations/{hidden}/export")
        assert exported.status_code == 200
        assert "okapiword" in exported.get_data(as_text=True)

    def test_a_patch_cannot_make_it_ordinary(self, client):
        uid = create(client, temporary=True)

        response = client.patch(f"/conversations/{uid}", json={"temporary": False})

        assert response.status_code == 422
        assert temporary(client, uid)

    @pytest.mark.parametrize("value", ["true", 1, None])
    def test_temporary_is_a_json_boolean(self, client, value):
        response = client.post("/conversations", json={"title": "t", "temporary": value})

        assert response.status_code == 422


class TestExpiry:
    def test_it_expires_hours_after_its_last_activity(
        self, app, client, configure, fake_llm, wall_clock
    ):
        configure(TEMPORARY_RETENTION_HOURS=24)
        uid = create(client, temporary=True)
        ordinary = create(client)
        wall_clock.advance(23 * HOUR)
        branch(client, uid, "still talking")
        wall_clock.advance(23 * HOUR)

        assert purge(app).deleted == []
        wall_clock.advance(1 * HOUR)
        report = purge(app)
        assert [(i.conversation_id, i.rule, i.exchanges) for i in report.deleted] == [
            (uid, "temporary", 1)
        ]
        assert exists(client, ordinary)

    def test_pinning_does_not_keep_it_but_its_own_expires_at_does(self, app, client, wall_clock):
        pinned = create(client, temporary=True)
        client.patch(f"/conversations/{pinned}", json={"pinned": True})
        later = iso(wall_clock.now + timedelta(days=7))
        own = create(client, temporary=True, expires_at=later)
        wall_clock.advance(25 * HOUR)

        assert purged_ids(purge(app)) == {pinned}
        wall_clock.advance(6 * 24 * HOUR)
        assert purged_ids(purge(app)) == {own}


class TestV1Header:
    def test_chat_completions_makes_a_temporary_conversation(self, client, fake_llm):
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}

        made = client.post("/v1/chat/completions", json=body, headers={HEADER: "true"})
        ordinary = client.post(
            "/v1/chat/completions",
            json={**body, "messages": [{"role": "user", "content": "other"}]},
        )

        assert made.status_code == ordinary.status_code == 200
        assert temporary(client, int(made.headers["X-Conversation-Id"]))
        assert not temporary(client, int(ordinary.headers["X-Conversation-Id"]))

    def test_a_call_that_continues_a_conversation_leaves_it_as_it_is(self, client, fake_llm):
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
        first = client.post("/v1/chat/completions", json=body)
        uid = first.headers["X-Conversation-Id"]

        again = client.post(
            "/v1/chat/completions",
            json=body,
            headers={HEADER: "true", "X-Conversation-Id": uid},
        )

        assert again.headers["X-Conversation-Id"] == uid
        assert not temporary(client, int(uid))

    def test_responses_makes_a_temporary_conversation(self, client, fake_llm):
        made = client.post(
            "/v1/responses", json={"model": MODEL, "input": "hi"}, headers={HEADER: "true"}
        )

        assert made.status_code == 200
        assert temporary(client, int(made.headers["X-Conversation-Id"]))
        assert listed(client) == []

    def test_conversations_makes_a_temporary_conversation(self, client):
        made = client.post("/v1/conversations", json={"items": []}, headers={HEADER: "true"})
        ordinary = client.post("/v1/conversations", json={"items": []})

        assert made.status_code == ordinary.status_code == 200
        assert temporary(client, int(made.json["id"].removeprefix("conv_")))
        assert not temporary(client, int(ordinary.json["id"].removeprefix("conv_")))

    def test_a_value_not_a_boolean_is_refused_in_openai_shape(self, client, fake_llm):
        response = client.post(
            "/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
            headers={HEADER: "perhaps"},
        )

        assert response.status_code == 400
        assert HEADER in response.json["error"]["message"]
        assert fake_llm.requests == []
