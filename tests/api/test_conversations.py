"""The /conversations endpoints, as DESIGN.md's contract table specifies them."""

from __future__ import annotations

import io
from datetime import datetime

import pytest

from app.models import Conversation, Message

MODEL_NAME_MESSAGE = "Must be a model name: printable ASCII, no spaces."


def create(client, **body):
    response = client.post("/conversations", json=body)
    assert response.status_code == 201, response.json
    return response.json


def chunked(body: bytes, content_type: str) -> dict:
    """Request arguments for a body sent as gunicorn hands a chunked one over: no
    Content-Length, and the server vouching that the stream ends (wsgi.input_terminated)."""
    return {
        "input_stream": io.BytesIO(body),
        "headers": {"Transfer-Encoding": "chunked", "Content-Type": content_type},
        "environ_overrides": {"wsgi.input_terminated": True},
    }


def parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() is not None, f"{value} is not timezone-aware"
    return parsed


class TestCreate:
    def test_returns_201_the_conversation_and_its_location(self, client, app):
        response = client.post("/conversations", json={"title": "Trip", "model_type": "llama3"})

        assert response.status_code == 201
        body = response.json
        assert body["title"] == "Trip"
        assert body["model_type"] == "llama3"
        assert set(body) == {
            "id",
            "owner_id",
            "title",
            "model_type",
            "metadata",
            "created_at",
            "updated_at",
            "last_activity_at",
            "message_count",
            "archived",
            "pinned",
            "expires_at",
            "temporary",
            "current_message_id",
        }
        assert body["metadata"] == {}
        assert (body["message_count"], body["archived"], body["pinned"]) == (0, False, False)
        assert (body["expires_at"], body["temporary"]) == (None, False)
        assert body["current_message_id"] is None
        assert response.headers["Location"] == f"/conversations/{body['id']}"
        assert client.get(response.headers["Location"]).json == body

    def test_defaults_model_and_leaves_title_for_the_first_prompt(self, client, app):
        body = create(client)

        assert body["model_type"] == app.config["DEFAULT_MODEL"]
        assert body["title"] is None

    def test_is_saved_in_the_database(self, client, database):
        body = create(client, title="Saved")

        row = database.get(Conversation, body["id"])
        assert row.title == "Saved"

    def test_timestamps_are_utc_and_per_row(self, client, wall_clock):
        created = wall_clock.now
        first = create(client, title="one")
        later = wall_clock.advance(1)
        second = create(client, title="two")

        assert parse_time(first["created_at"]) == created
        assert parse_time(second["created_at"]) == later
        assert parse_time(first["created_at"]).utcoffset().total_seconds() == 0

    @pytest.mark.parametrize(
        ("body", "field", "message"),
        [
            ({"title": ""}, "title", "Length must be between 1 and 200."),
            ({"title": "   "}, "title", "Must not be blank."),
            ({"title": "x" * 201}, "title", "Length must be between 1 and 200."),
            ({"title": 5}, "title", "Not a valid string."),
            ({"title": "a\u0000b"}, "title", "Must not contain NUL characters."),
            ({"model_type": ""}, "model_type", "Length must be between 1 and 100."),
            # No LLM serves such names; a line break even broke generation (502) at servers
            # that echo the model in a response header.
            ({"model_type": "a\nb"}, "model_type", MODEL_NAME_MESSAGE),
            ({"model_type": "gpt 4o"}, "model_type", MODEL_NAME_MESSAGE),
            ({"model_type": "\U0001f9b7"}, "model_type", MODEL_NAME_MESSAGE),
            ({"title": "ok", "owner": "me"}, "owner", "Unknown field."),
        ],
    )
    def test_invalid_body_is_422_naming_the_field(self, client, database, body, field, message):
        response = client.post("/conversations", json=body)

        assert response.status_code == 422
        assert response.json["code"] == 422
        assert response.json["status"] == "Unprocessable Entity"
        assert response.json["errors"] == {"json": {field: [message]}}
        assert database.scalar("SELECT count(*) FROM conversations") == 0

    def test_a_lone_surrogate_becomes_a_replacement_character(self, client):
        # Issue 20: the OpenAPI document cannot refuse one, so the service takes it, made
        # storable as model output is (U+FFFD), rather than a 422 the document denies.
        response = client.post(
            "/conversations", data='{"title": "a\\ud800b"}', content_type="application/json"
        )

        assert response.status_code == 201
        assert response.json["title"] == "a\ufffdb"

    def test_malformed_json_is_400(self, client):
        response = client.post("/conversations", data="{nope", content_type="application/json")

        assert response.status_code == 400
        assert response.json["errors"] == {"json": ["Invalid JSON body."]}

    @pytest.mark.parametrize(
        ("body", "reason"),
        [
            # json.loads refuses integers of more than 4300 digits with a plain ValueError...
            ('{"title": ' + "1" * 5000 + "}", "An integer of more than 4300 digits."),
            # ...and arrays nested deeper than the recursion limit with a RecursionError.
            ("[" * 100_000 + "]" * 100_000, "Nested deeper than 64 levels."),
        ],
        ids=["huge-integer", "deep-nesting"],
    )
    def test_json_python_cannot_load_is_400_not_500(self, client, database, body, reason):
        response = client.post("/conversations", data=body, content_type="application/json")

        assert response.status_code == 400
        assert response.json["errors"] == {"json": [f"Invalid JSON body: {reason}"]}
        assert database.scalar("SELECT count(*) FROM conversations") == 0

    def test_no_body_at_all_creates_one_with_the_defaults_as_documented(self, client, app):
        response = client.post("/conversations")
        documented = client.get("/openapi.json").json["paths"]["/conversations"]["post"]

        assert response.status_code == 201
        assert response.json["model_type"] == app.config["DEFAULT_MODEL"]
        assert documented["requestBody"]["required"] is False

    def test_json_that_is_not_an_object_is_422(self, client):
        response = client.post("/conversations", json=["title"])

        assert response.status_code == 422
        assert response.json["errors"] == {"json": {"_schema": ["Invalid input type."]}}

    def test_form_body_is_415_rather_than_silently_ignored(self, client, database):
        response = client.post("/conversations", data={"title": "x"})

        assert response.status_code == 415
        assert "application/json" in response.json["message"]
        assert database.scalar("SELECT count(*) FROM conversations") == 0

    def test_chunked_form_body_is_415_too(self, client, database):
        response = client.post(
            "/conversations",
            **chunked(b"title=x", "application/x-www-form-urlencoded"),
        )

        assert response.status_code == 415
        assert response.json["code"] == 415
        assert database.scalar("SELECT count(*) FROM conversations") == 0

    def test_chunked_body_over_the_limit_is_413_not_cut_short(self, client, app, database):
        # Werkzeug stops reading a chunked body at MAX_CONTENT_LENGTH without an error; the
        # rest must not be parsed as if it were the whole body.
        padding = b" " * app.config["MAX_CONTENT_LENGTH"]
        response = client.post(
            "/conversations", **chunked(b'{"title": "x"}' + padding, "application/json")
        )

        assert response.status_code == 413
        assert response.json["code"] == 413
        assert database.scalar("SELECT count(*) FROM conversations") == 0

    def test_body_over_the_limit_is_413(self, client, app):
        big = "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)

        response = client.post("/conversations", json={"title": big})

        assert response.status_code == 413
        assert response.json["code"] == 413


class TestList:
    def test_oldest_first(self, client):
        ids = [create(client, title=f"c{i}")["id"] for i in range(3)]

        response = client.get("/conversations")

        assert response.status_code == 200
        assert [c["id"] for c in response.json] == ids

    def test_skip_and_take(self, client):
        ids = [create(client, title=f"c{i}")["id"] for i in range(5)]

        assert [c["id"] for c in client.get("/conversations?skip=1&take=2").json] == ids[1:3]
        assert [c["id"] for c in client.get("/conversations?skip=4&take=100").json] == ids[4:]

    def test_after_pages_by_id(self, client):
        ids = [create(client, title=f"c{i}")["id"] for i in range(5)]

        first = client.get("/conversations?take=2").json
        second = client.get(f"/conversations?take=2&after={first[-1]['id']}").json
        last = client.get(f"/conversations?take=2&after={second[-1]['id']}").json
        beyond = client.get(f"/conversations?after={ids[-1]}").json

        assert [c["id"] for c in first + second + last] == ids
        assert beyond == []

    @pytest.mark.parametrize("after", ["-1", "x", str(2**63)])
    def test_bad_after_is_422(self, client, after):
        response = client.get(f"/conversations?after={after}")

        assert response.status_code == 422
        assert "after" in response.json["errors"]["query"]

    def test_skip_past_the_end_is_an_empty_list(self, client):
        create(client, title="only")

        response = client.get("/conversations?skip=10")

        assert response.status_code == 200
        assert response.json == []

    @pytest.mark.parametrize("skip", [2**31, 2**63 - 1])
    def test_skip_past_a_32_bit_integer_is_an_empty_list(self, client, skip):
        create(client, title="only")

        response = client.get(f"/conversations?skip={skip}")

        assert response.status_code == 200
        assert response.json == []

    def test_take_defaults_to_100(self, client, database, owner_id):
        database.add(
            *[Conversation(title=f"c{i}", model_type="m", owner_id=owner_id) for i in range(101)]
        )

        assert len(client.get("/conversations").json) == 100

    @pytest.mark.parametrize(
        ("query", "field", "message"),
        [
            ("take=0", "take", "Must be greater than or equal to 1 and less than or equal to 100."),
            (
                "take=101",
                "take",
                "Must be greater than or equal to 1 and less than or equal to 100.",
            ),
            (
                "take=-1",
                "take",
                "Must be greater than or equal to 1 and less than or equal to 100.",
            ),
            ("take=ten", "take", "Not a valid integer."),
            ("take=1.5", "take", "Not a valid integer."),
            (
                "skip=-1",
                "skip",
                "Must be greater than or equal to 0 and less than or equal to 9223372036854775807.",
            ),
            (
                "skip=99999999999999999999",
                "skip",
                "Must be greater than or equal to 0 and less than or equal to 9223372036854775807.",
            ),
            # More digits than int() converts: a ValueError that was a 500.
            ("owner=" + "1" * 5000, "owner", "Must be me, all, or a user id."),
        ],
    )
    def test_out_of_range_or_non_integer_is_422(self, client, query, field, message):
        response = client.get(f"/conversations?{query}")

        assert response.status_code == 422
        assert response.json["errors"] == {"query": {field: [message]}}


class TestGet:
    def test_returns_the_conversation(self, client):
        created = create(client, title="Mine")

        response = client.get(f"/conversations/{created['id']}")

        assert response.status_code == 200
        assert response.json == created

    @pytest.mark.parametrize(
        "path",
        [
            "/conversations/424242",
            "/conversations/0",
            "/conversations/abc",
            "/conversations/99999999999999999999",
        ],
    )
    def test_unknown_or_impossible_id_is_404(self, client, path):
        response = client.get(path)

        assert response.status_code == 404
        assert response.json["code"] == 404
        assert response.json["status"] == "Not Found"

    def test_unknown_id_says_which(self, client):
        assert client.get("/conversations/424242").json["message"] == (
            "Conversation 424242 does not exist."
        )


class TestUpdate:
    def test_returns_202_with_the_new_values(self, client, database):
        created = create(client, title="Old", model_type="m1")

        response = client.put(
            f"/conversations/{created['id']}", json={"title": "New", "model_type": "m2"}
        )

        assert response.status_code == 202
        assert response.json["title"] == "New"
        assert response.json["model_type"] == "m2"
        assert response.json["created_at"] == created["created_at"]
        row = database.get(Conversation, created["id"])
        assert (row.title, row.model_type) == ("New", "m2")

    def test_updated_at_moves(self, client, wall_clock):
        created = create(client, title="Old")
        later = wall_clock.advance(1)

        updated = client.put(
            f"/conversations/{created['id']}", json={"title": "New", "model_type": "m"}
        ).json

        assert parse_time(created["updated_at"]) < parse_time(updated["updated_at"]) == later
        assert updated["created_at"] == created["created_at"]

    def test_both_fields_are_required(self, client):
        created = create(client, title="Old")

        response = client.put(f"/conversations/{created['id']}", json={"title": "New"})

        assert response.status_code == 422
        assert response.json["errors"] == {
            "json": {"model_type": ["Missing data for required field."]}
        }

    def test_unknown_id_is_404(self, client):
        response = client.put("/conversations/424242", json={"title": "t", "model_type": "m"})

        assert response.status_code == 404


class TestDelete:
    def test_returns_204_without_a_body(self, client, database):
        created = create(client, title="Bye")

        response = client.delete(f"/conversations/{created['id']}")

        assert response.status_code == 204
        assert response.data == b""
        assert database.get(Conversation, created["id"]) is None
        assert client.get(f"/conversations/{created['id']}").status_code == 404

    def test_takes_the_messages_with_it(self, client, database):
        created = create(client, title="Bye")
        database.add(Message(conversation_id=created["id"], prompt_content="hi", is_success=True))

        client.delete(f"/conversations/{created['id']}")

        assert database.scalar("SELECT count(*) FROM messages") == 0

    def test_unknown_id_is_404(self, client):
        assert client.delete("/conversations/424242").status_code == 404


@pytest.mark.parametrize(
    "query", ["", "?order=recent", "?metadata[team]=x", "?order=recent&metadata[team]=x"]
)
def test_a_listed_conversation_is_shown_as_get_one_shows_it(client, query):
    created = client.post("/conversations", json={"title": "t", "metadata": {"team": "x"}}).json

    listed = client.get(f"/conversations{query}").json

    assert listed == [client.get(f"/conversations/{created['id']}").json]
