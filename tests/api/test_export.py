"""Exports (JSON, Markdown, NDJSON), streamed page by page, and their import."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Conversation, Feedback, Message
from app.services import export as export_service
from tests.conftest import keyed_client

GOLDEN = Path(__file__).parent / "golden"
T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
T1 = datetime(2026, 3, 1, 9, 31, 5, 250000, tzinfo=UTC)
T2 = datetime(2026, 3, 1, 9, 40, tzinfo=UTC)
ANSWER = "Try a *bouchon* in Vieux Lyon:\n\n- Daniel et Denise\n- Café Comptoir Abel"


@pytest.fixture
def trip(database, owner_id) -> tuple[int, list[int]]:
    """A conversation with two exchanges (one rated, one failed), at fixed times."""
    (conversation,) = database.add(
        Conversation(
            title="Trip to Lyon",
            model_type="llama3.1:8b",
            owner_id=owner_id,
            meta={"team": "travel", "lang": "fr"},
            created_at=T0,
            updated_at=T2,
        )
    )
    messages = database.add(
        Message(
            conversation_id=conversation,
            prompt_content="Where should I eat?",
            response_content=ANSWER,
            prompt_tokens=5,
            response_tokens=17,
            total_tokens=22,
            is_success=True,
            status_code=200,
            outcome="complete",
            created_at=T1,
            updated_at=T1,
        ),
        Message(
            conversation_id=conversation,
            parent_id=None,  # set below: the second exchange follows the first
            prompt_content="And for dessert?",
            response_content="Try a tarte aux pra",
            is_success=False,
            status_code=502,
            outcome="failed",
            created_at=T2,
            updated_at=T2,
        ),
    )
    with database.app.app_context():
        db.session.add(
            Feedback(
                message_id=messages[0], rating=1, comment="Spot on", created_at=T2, updated_at=T2
            )
        )
        # Core: the ORM would leave out a timestamp set to its value and apply onupdate.
        db.session.execute(
            sa.update(Message)
            .where(Message.id == messages[1])
            .values(parent_id=messages[0], updated_at=T2)
        )
        db.session.execute(
            sa.update(Conversation)
            .where(Conversation.id == conversation)
            .values(
                current_message_id=messages[1], message_count=2, last_activity_at=T2, updated_at=T2
            )
        )
        db.session.commit()
    return conversation, messages


# The exchange's fields the fixture leaves unset.
UNSET = dict.fromkeys(
    (
        "reasoning_content",
        "model",
        "endpoint",
        "request_id",
        "finish_reason",
        "ttft_ms",
        "duration_ms",
        "tool_calls",
        "request_params",
        "system_prompt",
        "input_items",
        "refusal_content",
        "cached_tokens",
        "reasoning_tokens",
        "output_items",
    )
) | {"usage_estimated": False}


def expected_document(conversation: int, messages: list[int]) -> dict:
    return {
        "format": "convstore",
        "version": 1,
        "conversations": [
            {
                "id": conversation,
                "title": "Trip to Lyon",
                "model_type": "llama3.1:8b",
                "metadata": {"team": "travel", "lang": "fr"},
                "created_at": "2026-03-01T09:30:00+00:00",
                "updated_at": "2026-03-01T09:40:00+00:00",
                "last_activity_at": "2026-03-01T09:40:00+00:00",
                "archived": False,
                "pinned": False,
                "current_message_id": messages[1],
                "messages": [
                    {
                        "id": messages[0],
                        "parent_id": None,
                        "prompt_content": "Where should I eat?",
                        "response_content": ANSWER,
                        "prompt_tokens": 5,
                        "response_tokens": 17,
                        "total_tokens": 22,
                        "is_success": True,
                        "status_code": 200,
                        **UNSET,
                        "outcome": "complete",
                        "feedback": {
                            "rating": 1,
                            "comment": "Spot on",
                            "created_at": "2026-03-01T09:40:00+00:00",
                            "updated_at": "2026-03-01T09:40:00+00:00",
                        },
                        "created_at": "2026-03-01T09:31:05.250000+00:00",
                        "updated_at": "2026-03-01T09:31:05.250000+00:00",
                    },
                    {
                        "id": messages[1],
                        "parent_id": messages[0],
                        "prompt_content": "And for dessert?",
                        "response_content": "Try a tarte aux pra",
                        "prompt_tokens": None,
                        "response_tokens": None,
                        "total_tokens": None,
                        "is_success": False,
                        "status_code": 502,
                        **UNSET,
                        "outcome": "failed",
                        "feedback": None,
                        "created_at": "2026-03-01T09:40:00+00:00",
                        "updated_at": "2026-03-01T09:40:00+00:00",
                    },
                ],
            }
        ],
    }


def user_item(text: str) -> dict:
    return {"role": "user", "content": text}


def without_ids(document: dict) -> dict:
    """The document with each conversation's message ids (its own, its parents' and its
    current exchange's) as positions in its list, and no conversation id."""

    def relative(conversation: dict) -> dict:
        position = {m["id"]: n for n, m in enumerate(conversation["messages"])}
        current = conversation.get("current_message_id")
        return {
            **{k: v for k, v in conversation.items() if k != "id"},
            "current_message_id": position.get(current, current),
            "messages": [
                {
                    **{k: v for k, v in m.items() if k != "id"},
                    "parent_id": position.get(m.get("parent_id"), m.get("parent_id")),
                }
                for m in conversation["messages"]
            ],
        }

    return {**document, "conversations": [relative(c) for c in document["conversations"]]}


class TestConversationExport:
    def test_json_is_the_whole_conversation_as_an_attachment(self, client, trip):
        response = client.get(f"/conversations/{trip[0]}/export?format=json")

        assert response.status_code == 200
        assert response.mimetype == "application/json"
        assert response.headers["Content-Disposition"] == (
            f'attachment; filename="conversation-{trip[0]}.json"'
        )
        assert response.is_streamed
        assert json.loads(response.get_data(as_text=True)) == expected_document(*trip)

    def test_json_is_the_default(self, client, trip):
        response = client.get(f"/conversations/{trip[0]}/export")

        assert response.json == expected_document(*trip)

    def test_markdown_matches_the_golden_file(self, client, trip):
        response = client.get(f"/conversations/{trip[0]}/export?format=markdown")

        assert response.status_code == 200
        assert response.content_type == "text/markdown; charset=utf-8"
        assert response.headers["Content-Disposition"] == (
            f'attachment; filename="conversation-{trip[0]}.md"'
        )
        assert response.get_data(as_text=True) == (GOLDEN / "export.md").read_text("utf-8")

    def test_an_empty_untitled_conversation(self, client, database, owner_id):
        (conversation,) = database.add(
            Conversation(model_type="m", owner_id=owner_id, created_at=T0, updated_at=T0)
        )

        as_json = client.get(f"/conversations/{conversation}/export").json
        as_markdown = client.get(f"/conversations/{conversation}/export?format=markdown")

        assert as_json["conversations"][0]["messages"] == []
        assert as_json["conversations"][0]["title"] is None
        assert as_markdown.get_data(as_text=True) == (
            "# Untitled conversation\n\n- Model: `m`\n- Created: 2026-03-01T09:30:00+00:00\n"
        )

    def test_pages_are_read_past_their_boundaries(self, client, database, owner_id, monkeypatch):
        monkeypatch.setattr(export_service, "PAGE", 2)
        (conversation,) = database.add(Conversation(model_type="m", owner_id=owner_id))
        ids = database.add(
            *[Message(conversation_id=conversation, prompt_content=f"p{n}") for n in range(5)]
        )

        document = client.get(f"/conversations/{conversation}/export").json

        assert [m["id"] for m in document["conversations"][0]["messages"]] == ids

    def test_somebody_elses_is_404(self, app, trip, make_account):
        bob = keyed_client(app, make_account("bob").key)

        for fmt in ("json", "markdown"):
            response = bob.get(f"/conversations/{trip[0]}/export?format={fmt}")
            assert response.status_code == 404
            assert response.json["message"] == f"Conversation {trip[0]} does not exist."

    def test_an_admin_may_export_anyones(self, app, trip, make_account):
        root = keyed_client(app, make_account("root", admin=True).key)

        assert root.get(f"/conversations/{trip[0]}/export").json == expected_document(*trip)

    @pytest.mark.parametrize("fmt", ["pdf", "ndjson", ""])
    def test_an_unknown_format_is_422(self, client, trip, fmt):
        response = client.get(f"/conversations/{trip[0]}/export?format={fmt}")

        assert response.status_code == 422
        assert list(response.json["errors"]["query"]) == ["format"]


class TestExportAll:
    def test_ndjson_has_each_conversation_then_its_messages(self, client, trip, database, owner_id):
        (empty,) = database.add(
            Conversation(model_type="m", owner_id=owner_id, created_at=T0, updated_at=T0)
        )

        response = client.get("/export?format=ndjson")

        assert response.status_code == 200
        assert response.mimetype == "application/x-ndjson"
        assert response.headers["Content-Disposition"] == (
            f'attachment; filename="conversations-{owner_id}.ndjson"'
        )
        lines = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
        document = expected_document(*trip)["conversations"][0]
        assert lines == [
            {"type": "conversation", **{k: v for k, v in document.items() if k != "messages"}},
            *[
                {"type": "message", "conversation_id": trip[0], **message}
                for message in document["messages"]
            ],
            {
                "type": "conversation",
                "id": empty,
                "title": None,
                "model_type": "m",
                "metadata": {},
                "created_at": "2026-03-01T09:30:00+00:00",
                "updated_at": "2026-03-01T09:30:00+00:00",
                "last_activity_at": "2026-03-01T09:30:00+00:00",
                "archived": False,
                "pinned": False,
                "current_message_id": None,
            },
        ]

    def test_only_the_callers_conversations(self, app, trip, make_account):
        bob = keyed_client(app, make_account("bob").key)

        response = bob.get("/export")

        assert response.status_code == 200
        assert response.get_data() == b""

    def test_an_admin_chooses_whose(self, app, trip, make_account, alice):
        root = keyed_client(app, make_account("root", admin=True).key)

        mine = root.get("/export").get_data(as_text=True)
        alices = root.get(f"/export?owner={alice.user_id}")
        everyone = root.get("/export?owner=all").get_data(as_text=True)

        assert mine == ""
        assert alices.headers["Content-Disposition"].endswith(
            f'conversations-{alice.user_id}.ndjson"'
        )
        assert len(alices.get_data(as_text=True).splitlines()) == 3
        assert everyone == alices.get_data(as_text=True)

    def test_a_user_cannot_choose_another_owner(self, client, make_account):
        bob = make_account("bob")

        assert client.get(f"/export?owner={bob.user_id}").status_code == 403
        assert client.get("/export?owner=all").status_code == 403


class TestImport:
    def test_round_trip_restores_an_equal_conversation_with_new_ids(
        self, client, app, trip, make_account
    ):
        exported = client.get(f"/conversations/{trip[0]}/export").json
        bob_account = make_account("bob")
        bob = keyed_client(app, bob_account.key)

        response = bob.post("/import", json=exported)

        assert response.status_code == 201
        ((imported),) = response.json["conversations"]
        assert imported["source_id"] == trip[0]
        assert imported["messages"] == 2
        assert imported["id"] != trip[0]
        again = bob.get(f"/conversations/{imported['id']}/export").json
        assert without_ids(again) == without_ids(exported)
        assert bob.get(f"/conversations/{imported['id']}").json["owner_id"] == bob_account.user_id
        message_ids = [m["id"] for m in again["conversations"][0]["messages"]]
        assert set(message_ids).isdisjoint(trip[1])

    def test_every_field_survives_export_import_export(self, client, database, owner_id):
        (conversation,) = database.add(
            Conversation(
                title="Tools",
                model_type="gpt-4o-mini",
                owner_id=owner_id,
                meta={"k": "v"},
                created_at=T0,
                updated_at=T2,
            )
        )
        call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        database.add(
            Message(
                conversation_id=conversation,
                prompt_content="look up déjà vu",
                response_content="",
                reasoning_content="I should call f",
                prompt_tokens=10,
                response_tokens=3,
                total_tokens=13,
                is_success=True,
                status_code=200,
                outcome="complete",
                model="gpt-4o-mini-2024",
                endpoint="v1",
                request_id="req-1",
                finish_reason="tool_calls",
                ttft_ms=120,
                duration_ms=450,
                tool_calls=[call],
                request_params={"model": "gpt-4o-mini", "tools": [{"type": "function"}], "n": 1.5},
                system_prompt="Be brief.",
                input_items=[{"role": "system", "content": "Be brief."}, user_item("déjà vu")],
                usage_estimated=True,
                refusal_content="I can't help with that.",
                cached_tokens=8,
                reasoning_tokens=2,
                output_items=["reasoning", None, "fc:0"],
                created_at=T1,
                updated_at=T1,
            ),
            Message(
                conversation_id=conversation,
                prompt_content="look up déjà vu",
                response_content="It means already seen.",
                is_success=False,
                status_code=499,
                outcome="client_closed",
                endpoint="v1",
                input_items=[{"role": "tool", "tool_call_id": "call_1", "content": "seen"}],
                created_at=T2,
                updated_at=T2,
            ),
        )
        exported = client.get(f"/conversations/{conversation}/export").json

        response = client.post("/import", json=exported)

        assert response.status_code == 201
        new_id = response.json["conversations"][0]["id"]
        again = client.get(f"/conversations/{new_id}/export").json
        assert without_ids(again) == without_ids(exported)
        first = again["conversations"][0]["messages"][0]
        assert (first["tool_calls"], first["input_items"][1], first["ttft_ms"]) == (
            [call],
            user_item("déjà vu"),
            120,
        )
        assert (
            first["refusal_content"],
            first["cached_tokens"],
            first["reasoning_tokens"],
            first["output_items"],
        ) == ("I can't help with that.", 8, 2, ["reasoning", None, "fc:0"])

    def test_a_document_without_outcomes_gets_them_from_is_success(self, client, trip):
        exported = client.get(f"/conversations/{trip[0]}/export").json
        for message in exported["conversations"][0]["messages"]:
            del message["outcome"]

        new_id = client.post("/import", json=exported).json["conversations"][0]["id"]

        messages = client.get(f"/conversations/{new_id}/messages").json
        assert [m["outcome"] for m in messages] == ["complete", "failed"]

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("outcome", "complete"),  # is_success is false
            ("outcome", "finished"),
            ("tool_calls", [{"id": "a\u0000"}]),
            ("input_items", [{"role": "user", "content": "\ud800"}]),
            ("request_params", {"\u0000": 1}),
            ("ttft_ms", -1),
            ("endpoint", "e" * 33),
            ("cached_tokens", -1),
            ("output_items", ["fc:x"]),
        ],
    )
    def test_an_exchange_field_out_of_bounds_is_422(self, client, trip, field, value):
        exported = client.get(f"/conversations/{trip[0]}/export").json
        exported["conversations"][0]["messages"][1][field] = value

        response = client.post("/import", json=exported)

        assert response.status_code == 422
        assert "conversations" in response.json["errors"]["json"]

    def test_a_v1_prompt_longer_than_the_apis_exports_and_re_imports(self, client, fake_llm):
        prompt = "word " * 25_000  # past PROMPT_MAX, within the body limit
        first = client.post(
            "/v1/chat/completions",
            json={"model": "fake-model", "messages": [user_item(prompt)]},
        )
        conversation = int(first.headers["X-Conversation-Id"])
        exported = client.get(f"/conversations/{conversation}/export").json

        response = client.post("/import", json=exported)

        assert response.status_code == 201
        new_id = response.json["conversations"][0]["id"]
        again = client.get(f"/conversations/{new_id}/export").json
        assert without_ids(again) == without_ids(exported)
        (message,) = again["conversations"][0]["messages"]
        assert (message["prompt_content"], message["endpoint"]) == (prompt, "v1")

    def test_the_imported_text_is_searchable(self, client, trip):
        exported = client.get(f"/conversations/{trip[0]}/export").json
        client.delete(f"/conversations/{trip[0]}")

        new_id = client.post("/import", json=exported).json["conversations"][0]["id"]

        results = client.get("/search?q=bouchon").json["results"]
        assert [(r["conversation_id"], r["field"]) for r in results] == [(new_id, "response")]

    def test_the_cli_imports_for_a_named_user(
        self, app, client, trip, make_account, tmp_path, database
    ):
        bob = make_account("bob")
        exported = client.get(f"/conversations/{trip[0]}/export").get_data(as_text=True)
        path = tmp_path / "export.json"
        path.write_text(exported, "utf-8")

        result = app.test_cli_runner().invoke(
            args=["conversations", "import", str(path), "--user", "bob"]
        )

        assert result.exit_code == 0, result.output
        assert result.output == "imported 1 conversation(s) and 2 message(s) for bob\n"
        new_id = database.scalar(
            "SELECT id FROM conversations WHERE owner_id = :owner", owner=bob.user_id
        )
        again = keyed_client(app, bob.key).get(f"/conversations/{new_id}/export").json
        assert without_ids(again) == without_ids(json.loads(exported))

    def test_the_cli_imports_ndjson(self, app, client, trip, make_account, tmp_path):
        make_account("bob")
        path = tmp_path / "export.ndjson"
        path.write_bytes(client.get("/export").get_data())

        result = app.test_cli_runner().invoke(
            args=["conversations", "import", str(path), "--user", "bob"]
        )

        assert result.output == "imported 1 conversation(s) and 2 message(s) for bob\n"

    def test_the_cli_refuses_an_unknown_user_and_a_bad_file(self, app, tmp_path, database):
        path = tmp_path / "bad.json"
        path.write_text('{"format": "other"}', "utf-8")
        good = tmp_path / "good.json"
        good.write_text('{"format": "convstore", "version": 1, "conversations": []}', "utf-8")

        bad_file = app.test_cli_runner().invoke(
            args=["conversations", "import", str(path), "--user", "alice"]
        )
        no_user = app.test_cli_runner().invoke(
            args=["conversations", "import", str(good), "--user", "nobody"]
        )

        assert bad_file.exit_code == 1
        assert "not a valid export" in bad_file.output
        assert no_user.exit_code == 1
        assert "There is no user named 'nobody'." in no_user.output

    @pytest.mark.parametrize(
        ("document", "path"),
        [
            ({"format": "other", "version": 1, "conversations": []}, ["format"]),
            ({"format": "convstore", "version": 2, "conversations": []}, ["version"]),
            ({"format": "convstore", "version": 1}, ["conversations"]),
            (
                {"format": "convstore", "version": 1, "conversations": [{"model_type": "m"}]},
                ["conversations"],
            ),
        ],
    )
    def test_an_invalid_document_is_422_and_imports_nothing(self, client, database, document, path):
        response = client.post("/import", json=document)

        assert response.status_code == 422
        assert list(response.json["errors"]["json"]) == path
        assert database.scalar("SELECT count(*) FROM conversations") == 0

    def test_a_bad_message_rolls_back_the_whole_import(self, client, trip, database):
        exported = client.get(f"/conversations/{trip[0]}/export").json
        exported["conversations"][0]["messages"][1]["feedback"] = {"rating": 5}

        response = client.post("/import", json=exported)

        assert response.status_code == 422
        assert database.scalar("SELECT count(*) FROM conversations") == 1


class TestTheTree:
    def test_a_branched_archived_pinned_conversation_round_trips(self, client, fake_llm):
        cid = client.post("/conversations", json={"title": "t", "model_type": "m"}).json["id"]
        url = f"/conversations/{cid}/messages"
        a = client.post(url, json={"prompt": "one"}).json
        b = client.post(url, json={"prompt": "two"}).json
        client.post(url, json={"prompt": "three"})
        client.post(f"{url}/{b['id']}/regenerate", json={})
        client.post(url, json={"prompt": "two, edited", "parent_id": a["id"]})
        client.patch(
            f"/conversations/{cid}",
            json={"archived": True, "pinned": True, "current_message_id": b["id"]},
        )
        exported = client.get(f"/conversations/{cid}/export").json

        response = client.post("/import", json=exported)

        assert response.status_code == 201
        new_id = response.json["conversations"][0]["id"]
        again = client.get(f"/conversations/{new_id}/export").json
        assert without_ids(again) == without_ids(exported)
        conversation = without_ids(again)["conversations"][0]
        assert [m["parent_id"] for m in conversation["messages"]] == [None, 0, 1, 0, 0]
        assert (conversation["current_message_id"], conversation["archived"]) == (1, True)
        imported = client.get(f"/conversations/{new_id}").json
        assert (imported["message_count"], imported["pinned"]) == (5, True)
        branch = client.get(f"/conversations/{new_id}/messages").json
        assert [m["prompt_content"] for m in branch] == ["one", "two"]

    def test_an_export_from_before_the_tree_imports_as_one_branch(self, client, trip):
        exported = client.get(f"/conversations/{trip[0]}/export").json
        conversation = exported["conversations"][0]
        for key in ("last_activity_at", "archived", "pinned", "current_message_id"):
            del conversation[key]
        for message in conversation["messages"]:
            del message["parent_id"]

        response = client.post("/import", json=exported)

        assert response.status_code == 201
        new_id = response.json["conversations"][0]["id"]
        again = client.get(f"/conversations/{new_id}/export").json
        restored = without_ids(again)["conversations"][0]
        assert [m["parent_id"] for m in restored["messages"]] == [None, 0]
        assert restored["current_message_id"] == 1
        assert restored["last_activity_at"] == "2026-03-01T09:40:00+00:00"

    @pytest.mark.parametrize("where", ["parent", "current"])
    def test_an_id_naming_no_earlier_message_is_422_and_imports_nothing(
        self, client, trip, database, where
    ):
        exported = client.get(f"/conversations/{trip[0]}/export").json
        conversation = exported["conversations"][0]
        if where == "parent":
            # Its own child: a parent must come before.
            conversation["messages"][0]["parent_id"] = conversation["messages"][1]["id"]
        else:
            conversation["current_message_id"] = 10**9

        response = client.post("/import", json=exported)

        assert response.status_code == 422
        assert response.json["errors"]["json"]["conversations"]["0"]
        assert database.scalar("SELECT count(*) FROM conversations") == 1


def test_an_export_restores_into_another_instance_on_the_other_engine(
    backend, client, trip, database_factory
):
    import flask_migrate

    from app.services import users as users_service
    from tests.conftest import disposing, make_app

    other_backend = "postgresql" if backend == "sqlite" else "sqlite"
    exported = client.get(f"/conversations/{trip[0]}/export").json

    with disposing(make_app(database_factory(other_backend))) as other:
        with other.app_context():
            flask_migrate.upgrade()
            key = users_service.create_user("carol").secret
        carol = keyed_client(other, key)
        response = carol.post("/import", json=exported)
        new_id = response.json["conversations"][0]["id"]
        again = carol.get(f"/conversations/{new_id}/export").json
        found = carol.get("/search?q=bouchon").json["results"]

    assert response.status_code == 201
    assert without_ids(again) == without_ids(exported)
    assert [(r["conversation_id"], r["field"]) for r in found] == [(new_id, "response")]


def test_markdown_says_where_a_branch_leaves_the_exchange_above(client, fake_llm):
    cid = client.post("/conversations", json={"title": "t", "model_type": "m"}).json["id"]
    url = f"/conversations/{cid}/messages"
    first = client.post(url, json={"prompt": "one"}).json
    client.post(url, json={"prompt": "two"})
    client.post(url, json={"prompt": "two, edited", "parent_id": first["id"]})
    client.post(url, json={"prompt": "one, edited", "parent_id": None})

    text = client.get(f"/conversations/{cid}/export?format=markdown").get_data(as_text=True)

    notes = [line for line in text.splitlines() if line.startswith("*Another branch")]
    assert notes == [
        "*Another branch: after exchange 1.*",
        "*Another branch: a new first exchange.*",
    ]
