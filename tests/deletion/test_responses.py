"""Deleting a response (DELETE /v1/responses/{id}): only that response, as a tombstone. Its
content is gone from every read and from the context of later turns; the responses that
continued it stay retrievable and continuable; its accounting stays."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from app.models import Feedback, Message
from tests.conftest import keyed_client
from tests.deletion.helpers import assert_counters_agree, branch, last_sent, message_id, respond
from tests.fake_llm import Behavior

USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


@pytest.fixture
def chain(client, fake_llm) -> list[str]:
    """Three responses, each continuing the one before; the middle one's words are its own."""
    ids = []
    for n, word in enumerate(("alphaword", "middleword", "omegaword")):
        fake_llm.behavior = Behavior(tokens=[f"answer {word}"], usage=USAGE)
        previous = {"previous_response_id": ids[-1]} if ids else {}
        ids.append(respond(client, input=f"prompt {word}", **previous)["id"])
        assert n + 1 == len(ids)
    return ids


def conversation_of(database, response_id: str) -> int:
    return database.get(Message, message_id(response_id)).conversation_id


class TestTheTombstone:
    def test_a_middle_response_goes_and_the_later_one_stays_retrievable_and_continuable(
        self, client, fake_llm, chain
    ):
        _first, middle, last = chain

        deleted = client.delete(f"/v1/responses/{middle}")

        assert deleted.status_code == 200
        assert deleted.json == {"id": middle, "object": "response", "deleted": True}
        assert client.get(f"/v1/responses/{last}").json["output"][0]["content"][0]["text"] == (
            "answer omegaword"
        )
        assert client.get(f"/v1/responses/{last}/input_items").status_code == 200
        fake_llm.behavior = Behavior(tokens=["next"])
        continued = respond(client, input="prompt four", previous_response_id=last)
        sent = last_sent(fake_llm)
        assert continued["status"] == "completed"
        assert "alphaword" in sent
        assert "omegaword" in sent
        assert "middleword" not in sent

    def test_it_reads_as_unknown_and_a_second_delete_is_404(self, client, fake_llm, chain):
        middle = chain[1]
        assert client.delete(f"/v1/responses/{middle}").status_code == 200

        for response in (
            client.get(f"/v1/responses/{middle}"),
            client.get(f"/v1/responses/{middle}/input_items"),
            client.delete(f"/v1/responses/{middle}"),
            client.post(
                "/v1/responses",
                json={"model": "m", "input": "x", "previous_response_id": middle},
            ),
        ):
            assert response.status_code == 404, response.json
            assert repr(middle) in response.json["error"]["message"]

    def test_only_its_content_goes_its_place_and_accounting_stay(
        self, client, database, fake_llm, chain
    ):
        first, middle, last = chain
        before = client.get("/usage").json["rows"]
        cid = conversation_of(database, middle)
        client.put(
            f"/conversations/{cid}/messages/{message_id(middle)}/feedback",
            json={"rating": 1, "comment": "middleword"},
        )

        assert client.delete(f"/v1/responses/{middle}").status_code == 200

        row = database.get(Message, message_id(middle))
        assert row.deleted_at is not None
        assert (row.prompt_content, row.response_content, row.input_items, row.output_items) == (
            "",
            "",
            None,
            [],
        )
        assert (row.reasoning_content, row.tool_calls, row.system_prompt) == (None, None, None)
        assert (row.history_fingerprint, row.request_params) == (None, {"model": "fake-model"})
        assert (row.parent_id, row.total_tokens, row.outcome) == (message_id(first), 10, "complete")
        assert database.get(Message, message_id(last)).parent_id == message_id(middle)
        assert database.scalar(sa.select(sa.func.count()).select_from(Feedback)) == 0
        assert client.get("/usage").json["rows"] == before
        assert database.app.test_cli_runner().invoke(args=["usage", "rebuild"]).exit_code == 0
        assert client.get("/usage").json["rows"] == before
        assert_counters_agree(database.app, cid)

    def test_another_users_response_is_404_and_kept(self, app, client, make_account, chain):
        mallory = keyed_client(app, make_account("mallory").key)

        assert mallory.delete(f"/v1/responses/{chain[1]}").status_code == 404
        assert client.get(f"/v1/responses/{chain[1]}").status_code == 200

    def test_one_in_progress_is_409_naming_it(self, client, database, chain):
        database.execute(
            "UPDATE messages SET is_success = NULL, outcome = NULL WHERE id = :id",
            id=message_id(chain[2]),
        )

        response = client.delete(f"/v1/responses/{chain[2]}")

        assert response.status_code == 409
        assert response.json["error"]["message"].startswith(
            f"Exchange {message_id(chain[2])} is in progress"
        )
        assert client.get(f"/v1/responses/{chain[2]}").status_code == 200


class TestReads:
    def test_rest_lists_it_in_its_branch_as_deleted_and_empty(self, client, database, chain):
        cid = conversation_of(database, chain[1])
        client.delete(f"/v1/responses/{chain[1]}")

        for query in ({}, {"branch": "all"}):
            listed = client.get(f"/conversations/{cid}/messages", query_string=query).json
            assert [m["id"] for m in listed] == [message_id(r) for r in chain]
            assert [m["deleted"] for m in listed] == [False, True, False]
            tombstone = listed[1]
            assert (tombstone["prompt_content"], tombstone["response_content"]) == ("", "")
            assert (tombstone["input_items"], tombstone["feedback"]) == (None, None)
            assert "middleword" not in json.dumps(listed)

    def test_conversation_items_search_and_export_have_nothing_of_it(self, client, database, chain):
        cid = conversation_of(database, chain[1])
        client.delete(f"/v1/responses/{chain[1]}")

        items = client.get(f"/v1/conversations/conv_{cid}/items", query_string={"order": "asc"})
        assert [item["id"] for item in items.json["data"]] == [
            f"msg_{message_id(chain[0])}i0",
            f"msg_{message_id(chain[0])}o0",
            f"msg_{message_id(chain[2])}i0",
            f"msg_{message_id(chain[2])}o0",
        ]
        assert client.get("/search", query_string={"q": "middleword"}).json["results"] == []
        assert len(client.get("/search", query_string={"q": "omegaword"}).json["results"]) == 2
        for path in (f"/conversations/{cid}/export", "/export"):
            assert "middleword" not in client.get(path).get_data(as_text=True)
        markdown = client.get(f"/conversations/{cid}/export", query_string={"format": "markdown"})
        assert "*This exchange was deleted.*" in markdown.get_data(as_text=True)

    def test_a_rest_prompt_and_a_conversation_turn_after_it_send_nothing_of_it(
        self, client, database, fake_llm, chain
    ):
        cid = conversation_of(database, chain[1])
        client.delete(f"/v1/responses/{chain[2]}")  # the current exchange: the last turn
        client.delete(f"/v1/responses/{chain[1]}")

        branch(client, cid, "rest prompt")
        assert "alphaword" in last_sent(fake_llm)
        assert "middleword" not in last_sent(fake_llm)
        assert "omegaword" not in last_sent(fake_llm)
        respond(client, input="a turn", conversation=f"conv_{cid}")
        assert "middleword" not in last_sent(fake_llm)
        assert "rest prompt" in last_sent(fake_llm)

    def test_feedback_and_regeneration_of_it_are_404(self, client, database, chain):
        cid, uid = conversation_of(database, chain[1]), message_id(chain[1])
        client.delete(f"/v1/responses/{chain[1]}")

        feedback = client.put(
            f"/conversations/{cid}/messages/{uid}/feedback", json={"rating": 1, "comment": "x"}
        )
        regenerated = client.post(f"/conversations/{cid}/messages/{uid}/regenerate", json={})

        assert (feedback.status_code, regenerated.status_code) == (404, 404)
        assert database.scalar(sa.select(sa.func.count()).select_from(Feedback)) == 0


class TestExportImport:
    def test_an_export_writes_it_without_content_and_an_import_keeps_it_a_tombstone(
        self, client, database, chain
    ):
        cid = conversation_of(database, chain[1])
        client.delete(f"/v1/responses/{chain[1]}")
        document = client.get(f"/conversations/{cid}/export").json

        exported = document["conversations"][0]["messages"][1]
        assert exported["deleted"] is True
        assert exported["parent_id"] == message_id(chain[0])
        assert not {"prompt_content", "response_content", "input_items", "feedback"} & set(exported)
        assert exported["total_tokens"] == 10

        imported = client.post("/import", json=document)

        assert imported.status_code == 201, imported.json
        new = imported.json["conversations"][0]["id"]
        listed = client.get(f"/conversations/{new}/messages").json
        assert [m["deleted"] for m in listed] == [False, True, False]
        assert listed[2]["parent_id"] == listed[1]["id"]
        assert "middleword" not in json.dumps(listed)

    def test_an_import_cannot_give_a_deleted_exchange_content(self, client, database, chain):
        cid = conversation_of(database, chain[1])
        client.delete(f"/v1/responses/{chain[1]}")
        document = client.get(f"/conversations/{cid}/export").json
        tombstone = document["conversations"][0]["messages"][1]
        tombstone |= {"prompt_content": "back again", "feedback": None}

        refused = client.post("/import", json=document)

        assert refused.status_code == 422
        errors = refused.json["errors"]["json"]["conversations"]["0"]["messages"]["1"]
        assert errors == {"prompt_content": ["A deleted exchange has no content: leave it out."]}
