"""A new exchange whose parent (or conversation) is deleted between the read of its context
and its INSERT: a 409 naming the parent (404 for the conversation) in the endpoint's error
shape (a previous_response_id: 404, as unknown), nothing saved, the LLM never called. Two
threads, two connections, on both engines."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from app.repositories import ConversationRepository, ThreadRepository
from app.repositories.responses import ResponseRepository
from tests.conftest import keyed_client
from tests.deletion.helpers import assert_counters_agree, branch


class Paused:
    """Holds the request ``run`` makes right after a read, until the test has deleted what
    it read (requests made before ``run`` go through)."""

    def __init__(self) -> None:
        self.armed = False
        self.read = threading.Event()
        self.deleted = threading.Event()

    def wrap(self, read: Callable[..., Any]) -> Callable[..., Any]:
        def paused(*args: Any, **kwargs: Any) -> Any:
            found = read(*args, **kwargs)
            if self.armed:
                self.read.set()
                assert self.deleted.wait(10)
            return found

        return paused

    def run(self, request: Callable[[], Any], delete: Callable[[], int]) -> Any:
        """``request`` in a thread; ``delete`` once it has read; the request's response."""
        answered: list[Any] = []
        self.armed = True
        thread = threading.Thread(target=lambda: answered.append(request()))
        thread.start()
        try:
            assert self.read.wait(10)
            assert delete() == 204
        finally:
            self.deleted.set()
            thread.join(10)
        return answered[0]


@pytest.fixture
def paused(monkeypatch) -> Paused:
    pause = Paused()
    original = ConversationRepository.generation_context
    monkeypatch.setattr(ConversationRepository, "generation_context", pause.wrap(original))
    return pause


@pytest.fixture
def client(pooled_app) -> FlaskClient:
    client = keyed_client(pooled_app, pooled_app.config["TEST_KEY"])
    client.get("/conversations")  # the key, cached: its last use is written once, now
    return client


@pytest.fixture
def other(pooled_app) -> FlaskClient:
    return keyed_client(pooled_app, pooled_app.config["TEST_KEY"])


def parent_gone(parent_id: int) -> str:
    return (
        f"Exchange {parent_id}, which this one would follow, was deleted meanwhile; "
        "nothing was saved."
    )


REQUESTS = {
    "json": lambda client, cid, _m: client.post(
        f"/conversations/{cid}/messages", json={"prompt": "c"}
    ),
    "sse": lambda client, cid, _m: client.post(
        f"/conversations/{cid}/messages", json={"prompt": "c", "stream": True}
    ),
    "text": lambda client, cid, _m: client.get(
        "/text/generate/stream", query_string={"prompt": "c", "conversation_id": cid}
    ),
    # Another answer to the current exchange: a sibling, after its parent.
    "regenerate": lambda client, cid, m: client.post(
        f"/conversations/{cid}/messages/{m}/regenerate", json={}
    ),
}


@pytest.mark.parametrize("request_kind", list(REQUESTS))
def test_a_prompt_whose_parent_was_deleted_meanwhile_is_409_naming_it(
    pooled_app, fake_llm, client, other, paused, request_kind
):
    conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]
    a, b, c = branch(client, conversation_id, "a", "b", "c")
    # A prompt follows c; a regeneration of c follows b.
    parent = b if request_kind == "regenerate" else c
    asked = len(fake_llm.requests)

    response = paused.run(
        lambda: REQUESTS[request_kind](client, conversation_id, c),
        lambda: other.delete(f"/conversations/{conversation_id}/messages/{parent}").status_code,
    )

    assert response.status_code == 409
    assert response.json == {"code": 409, "status": "Conflict", "message": parent_gone(parent)}
    assert len(fake_llm.requests) == asked
    found = assert_counters_agree(pooled_app, conversation_id)
    assert found["ids"] == ([a] if parent == b else [a, b])


def test_a_prompt_whose_conversation_was_deleted_meanwhile_is_404(
    pooled_app, fake_llm, client, other, paused
):
    conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]
    branch(client, conversation_id, "a")

    response = paused.run(
        lambda: client.post(f"/conversations/{conversation_id}/messages", json={"prompt": "b"}),
        lambda: other.delete(f"/conversations/{conversation_id}").status_code,
    )

    assert response.status_code == 404
    assert response.json["message"] == f"Conversation {conversation_id} does not exist."
    assert client.get(f"/conversations/{conversation_id}").status_code == 404


def test_a_chat_completion_whose_parent_was_deleted_meanwhile_is_409_in_openai_shape(
    pooled_app, fake_llm, client, other, monkeypatch
):
    history = [{"role": "user", "content": "hi"}]
    first = client.post("/v1/chat/completions", json={"model": "m", "messages": history})
    conversation_id = int(first.headers["X-Conversation-Id"])
    (parent,) = assert_counters_agree(pooled_app, conversation_id)["ids"]
    answer = first.json["choices"][0]["message"]["content"]
    pause = Paused()
    original = ThreadRepository.find_by_fingerprint
    monkeypatch.setattr(ThreadRepository, "find_by_fingerprint", pause.wrap(original))
    follow_up = [
        *history,
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "more"},
    ]

    response = pause.run(
        lambda: client.post("/v1/chat/completions", json={"model": "m", "messages": follow_up}),
        lambda: other.delete(f"/conversations/{conversation_id}/messages/{parent}").status_code,
    )

    assert response.status_code == 409
    assert response.json["error"]["message"] == parent_gone(parent)
    assert assert_counters_agree(pooled_app, conversation_id)["ids"] == []


def test_a_response_whose_previous_response_was_deleted_meanwhile_is_404_naming_the_field(
    pooled_app, fake_llm, client, other, monkeypatch
):
    first = client.post("/v1/responses", json={"model": "m", "input": "hi"})
    conversation_id, parent = first.headers["X-Conversation-Id"], first.headers["X-Message-Id"]
    pause = Paused()
    monkeypatch.setattr(ResponseRepository, "branch", pause.wrap(ResponseRepository.branch))
    asked = len(fake_llm.requests)

    response = pause.run(
        lambda: client.post(
            "/v1/responses",
            json={"model": "m", "input": "more", "previous_response_id": first.json["id"]},
        ),
        lambda: other.delete(f"/conversations/{conversation_id}/messages/{parent}").status_code,
    )

    assert response.status_code == 404
    assert response.json["error"]["param"] == "previous_response_id"
    assert response.json["error"]["message"] == (
        f"previous_response_id: No response with id {first.json['id']!r}."
    )
    assert len(fake_llm.requests) == asked
