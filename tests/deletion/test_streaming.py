"""Deleting what is streaming: every kind of delete that would touch the exchange is refused
(409, naming it); the stream ends normally, its client gets every token and the terminal
event, and the tokens are charged to the usage and the daily budget."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.fake_llm import Behavior
from tests.generation import parse_sse

TOKENS = [f"t{n} " for n in range(5)]
# Over the budget below once charged: the next request is refused.
USAGE = {"prompt_tokens": 60, "completion_tokens": 200, "total_tokens": 260}
BUDGET = 250

# Every delete that would touch exchange ``m`` of conversation ``c``.
DELETES: dict[str, Callable[[int, int], str]] = {
    "rest message": lambda c, m: f"/conversations/{c}/messages/{m}",
    "v1 response": lambda _c, m: f"/v1/responses/resp_{m}",
    "v1 input item": lambda c, m: f"/v1/conversations/conv_{c}/items/msg_{m}i0",
    "v1 output item": lambda c, m: f"/v1/conversations/conv_{c}/items/msg_{m}o0",
    "rest conversation": lambda c, _m: f"/conversations/{c}",
    "v1 conversation": lambda c, _m: f"/v1/conversations/conv_{c}",
}


def rest_stream(client, conversation_id: int):
    return client.post(
        f"/conversations/{conversation_id}/messages",
        json={"prompt": "p", "stream": True},
        buffered=False,
    )


def responses_stream(client, conversation_id: int):
    return client.post(
        "/v1/responses",
        json={
            "model": "fake-model",
            "input": "p",
            "conversation": f"conv_{conversation_id}",
            "stream": True,
        },
        buffered=False,
    )


def rest_events(body: bytes) -> tuple[str, str]:
    """(text relayed, the last event's name)."""
    events = parse_sse(body)
    text = "".join(data["text"] for name, data in events if name == "delta")
    return text, events[-1][0]


def responses_events(body: bytes) -> tuple[str, str]:
    events = [
        json.loads(line.removeprefix("data: "))
        for line in body.decode().splitlines()
        if line.startswith("data: ")
    ]
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    return text, events[-1]["type"]


STREAMS = {
    "rest sse": (rest_stream, rest_events, "done"),
    "v1 responses": (responses_stream, responses_events, "response.completed"),
}


@pytest.mark.parametrize("stream", list(STREAMS))
def test_every_delete_during_a_stream_is_409_and_the_stream_ends_charged(
    client, configure, fake_llm, stream
):
    configure(TOKEN_BUDGET_DAILY=BUDGET)
    fake_llm.behavior = Behavior(tokens=TOKENS, delay=0.02, usage=USAGE)
    start, read, terminal = STREAMS[stream]
    cid = client.post("/conversations", json={"title": "t", "model_type": "fake-model"}).json["id"]
    response = start(client, cid)
    assert response.status_code == 200
    uid = client.get(f"/conversations/{cid}").json["current_message_id"]  # the new one
    pieces = iter(response.response)
    first = next(pieces)

    refused = {kind: client.delete(path(cid, uid)) for kind, path in DELETES.items()}
    rest = b"".join(pieces)
    response.close()

    for kind, answer in refused.items():
        assert answer.status_code == 409, kind
        body = answer.json
        message = body["error"]["message"] if "error" in body else body["message"]
        assert message.startswith(f"Exchange {uid} is in progress"), kind
    assert read(first + rest) == ("".join(TOKENS), terminal)
    (row,) = client.get("/usage").json["rows"]
    assert (row["exchanges"], row["total_tokens"]) == (1, 260)
    again = client.post(f"/conversations/{cid}/messages", json={"prompt": "more"})
    assert again.status_code == 429
    assert again.json["message"].startswith(f"Today's token budget ({BUDGET}) is spent")
