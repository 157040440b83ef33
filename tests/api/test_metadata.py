"""Conversation metadata: set on create, replaced by PUT, merged by PATCH, filtered on."""

from __future__ import annotations

import pytest

from app.models import Conversation

SIXTEEN = {f"k{n}": f"v{n}" for n in range(16)}


def create(client, **body):
    response = client.post("/conversations", json=body)
    assert response.status_code == 201, response.json
    return response.json


class TestLimits:
    def test_sixteen_pairs_at_the_limits_are_accepted_and_stored(self, client, database):
        metadata = {**SIXTEEN}
        metadata["k0"] = "v" * 512
        metadata["k" * 64] = metadata.pop("k1")

        body = create(client, title="t", metadata=metadata)

        assert body["metadata"] == metadata
        assert database.get(Conversation, body["id"]).meta == metadata

    @pytest.mark.parametrize(
        ("metadata", "errors"),
        [
            ({**SIXTEEN, "k16": "v"}, ["At most 16 pairs."]),
            ({"k" * 65: "v"}, {"k" * 65: {"key": ["Length must be between 1 and 64."]}}),
            ({"": "v"}, {"": {"key": ["Length must be between 1 and 64."]}}),
            ({"k": "v" * 513}, {"k": {"value": ["Longer than maximum length 512."]}}),
            ({"k": 5}, {"k": {"value": ["Not a valid string."]}}),
            ({"k": None}, {"k": {"value": ["Field may not be null."]}}),
            (["k"], ["Not a valid mapping type."]),
        ],
        ids=["17-pairs", "long-key", "empty-key", "long-value", "number", "null", "list"],
    )
    def test_out_of_limits_is_422_and_nothing_is_stored(self, client, database, metadata, errors):
        response = client.post("/conversations", json={"metadata": metadata})

        assert response.status_code == 422
        assert response.json["errors"] == {"json": {"metadata": errors}}
        assert database.scalar("SELECT count(*) FROM conversations") == 0


class TestPut:
    def test_replaces_the_metadata(self, client):
        conversation = create(client, title="t", metadata={"a": "1", "b": "2"})

        response = client.put(
            f"/conversations/{conversation['id']}",
            json={"title": "t", "model_type": "m", "metadata": {"c": "3"}},
        )

        assert response.status_code == 202
        assert response.json["metadata"] == {"c": "3"}

    def test_without_metadata_empties_it(self, client):
        conversation = create(client, title="t", metadata={"a": "1"})

        response = client.put(
            f"/conversations/{conversation['id']}", json={"title": "t", "model_type": "m"}
        )

        assert response.json["metadata"] == {}


class TestPatch:
    def test_changes_only_the_fields_given(self, client, database):
        conversation = create(client, title="before", model_type="m1", metadata={"a": "1"})

        response = client.patch(f"/conversations/{conversation['id']}", json={"title": "after"})

        assert response.status_code == 200
        assert response.json["title"] == "after"
        assert response.json["model_type"] == "m1"
        assert response.json["metadata"] == {"a": "1"}
        assert response.json["updated_at"] > conversation["updated_at"]
        assert database.get(Conversation, conversation["id"]).title == "after"

    def test_merges_metadata_and_a_null_removes_a_key(self, client, database):
        conversation = create(client, title="t", metadata={"keep": "1", "change": "2", "drop": "3"})

        response = client.patch(
            f"/conversations/{conversation['id']}",
            json={"metadata": {"change": "two", "drop": None, "add": "4", "absent": None}},
        )

        assert response.status_code == 200
        expected = {"keep": "1", "change": "two", "add": "4"}
        assert response.json["metadata"] == expected
        assert database.get(Conversation, conversation["id"]).meta == expected

    def test_model_type_alone(self, client):
        conversation = create(client, title="t", model_type="m1")

        response = client.patch(f"/conversations/{conversation['id']}", json={"model_type": "m2"})

        assert (response.json["title"], response.json["model_type"]) == ("t", "m2")

    def test_an_empty_patch_changes_nothing(self, client):
        conversation = create(client, title="t", metadata={"a": "1"})

        response = client.patch(f"/conversations/{conversation['id']}", json={})

        assert response.status_code == 200
        assert response.json == conversation

    def test_a_merge_past_sixteen_pairs_is_422_and_changes_nothing(self, client, database):
        conversation = create(client, title="t", metadata=SIXTEEN)

        response = client.patch(
            f"/conversations/{conversation['id']}", json={"metadata": {"k16": "v", "title": "x"}}
        )

        assert response.status_code == 422
        assert response.json["errors"] == {"json": {"metadata": ["At most 16 pairs once merged."]}}
        assert database.get(Conversation, conversation["id"]).meta == SIXTEEN

    def test_a_merge_that_removes_as_many_as_it_adds_fits(self, client):
        conversation = create(client, title="t", metadata=SIXTEEN)

        response = client.patch(
            f"/conversations/{conversation['id']}", json={"metadata": {"k0": None, "new": "v"}}
        )

        assert response.status_code == 200
        assert len(response.json["metadata"]) == 16
        assert "k0" not in response.json["metadata"]

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"title": ""}, "title"),
            ({"title": None}, "title"),
            ({"model_type": "a b"}, "model_type"),
            ({"other": 1}, "other"),
        ],
    )
    def test_invalid_fields_are_422(self, client, body, field):
        conversation = create(client, title="t")

        response = client.patch(f"/conversations/{conversation['id']}", json=body)

        assert response.status_code == 422
        assert set(response.json["errors"]["json"]) == {field}

    def test_somebody_elses_conversation_is_404_and_unchanged(self, client, database, make_account):
        bob = make_account("bob")
        (other,) = database.add(
            Conversation(title="bob's", model_type="m", owner_id=bob.user_id, meta={"a": "1"})
        )

        response = client.patch(f"/conversations/{other}", json={"metadata": {"a": "2"}})

        assert response.status_code == 404
        assert database.get(Conversation, other).meta == {"a": "1"}

    def test_an_admin_may_patch_anyones(self, app, database, make_account, alice):
        from tests.conftest import keyed_client

        admin = keyed_client(app, make_account("root", admin=True).key)
        (conversation,) = database.add(
            Conversation(title="t", model_type="m", owner_id=alice.user_id)
        )

        response = admin.patch(f"/conversations/{conversation}", json={"metadata": {"x": "y"}})

        assert response.status_code == 200
        assert response.json["metadata"] == {"x": "y"}


class TestListFilter:
    def test_lists_only_conversations_holding_every_pair(self, client, database, owner_id):
        ids = database.add(
            Conversation(
                title="a", model_type="m", owner_id=owner_id, meta={"team": "x", "env": "prod"}
            ),
            Conversation(title="b", model_type="m", owner_id=owner_id, meta={"team": "x"}),
            Conversation(
                title="c", model_type="m", owner_id=owner_id, meta={"team": "y", "env": "prod"}
            ),
            Conversation(title="d", model_type="m", owner_id=owner_id),
        )

        both = client.get("/conversations?metadata[team]=x&metadata[env]=prod")
        team = client.get("/conversations?metadata[team]=x")

        assert [row["id"] for row in both.json] == [ids[0]]
        assert [row["id"] for row in team.json] == ids[:2]

    def test_keys_with_quotes_and_brackets_match_exactly(self, client, database, owner_id):
        (match,) = database.add(
            Conversation(title="a", model_type="m", owner_id=owner_id, meta={'we"ird]': "é v"})
        )

        response = client.get("/conversations", query_string={'metadata[we"ird]]': "é v"})

        assert [row["id"] for row in response.json] == [match]

    def test_a_nested_filter_is_422(self, client):
        response = client.get("/conversations", query_string={"metadata[a][b]": "v"})

        assert response.status_code == 422
        assert response.json["errors"] == {
            "query": {"metadata": {"a][b": {"key": ["Not a valid key here."]}}}
        }

    def test_a_value_is_compared_as_a_string(self, client, database, owner_id):
        database.add(Conversation(title="a", model_type="m", owner_id=owner_id, meta={"n": "1"}))

        assert client.get("/conversations?metadata[n]=1").json != []
        assert client.get("/conversations?metadata[n]=01").json == []

    def test_a_filter_value_over_the_limit_is_422(self, client):
        response = client.get("/conversations", query_string={"metadata[k]": "v" * 513})

        assert response.status_code == 422
        assert response.json["errors"] == {
            "query": {"metadata": {"k": {"value": ["Longer than maximum length 512."]}}}
        }

    def test_never_lists_somebody_elses(self, client, database, make_account):
        bob = make_account("bob")
        database.add(Conversation(title="b", model_type="m", owner_id=bob.user_id, meta={"k": "v"}))

        assert client.get("/conversations?metadata[k]=v").json == []


def test_patch_reads_locked_then_writes_once(client, database):
    conversation = create(client, title="t", metadata={"a": "1"})

    with database.count_statements() as statements:
        response = client.patch(
            f"/conversations/{conversation['id']}", json={"title": "u", "metadata": {"b": "2"}}
        )

    assert response.status_code == 200
    verbs = [statement.split(None, 1)[0].upper() for statement in statements]
    assert verbs == ["SELECT", "UPDATE"]
    if database.app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        assert statements[0].rstrip().endswith("FOR UPDATE")
