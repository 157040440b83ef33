"""A conversation created without a title gets one from its first prompt."""

from __future__ import annotations

import pytest

from app.services.titles import clean_title, fallback_title
from tests.fake_llm import Behavior

PROMPT = "Plan a four day trip to Lyon in May with a focus on food and museums"


@pytest.fixture
def untitled(client):
    return client.post("/conversations", json={"model_type": "chat-model"}).json["id"]


@pytest.fixture
def title_model(configure, fake_llm):
    configure(TITLE_MODEL="title-model")
    return fake_llm


def send(client, conversation_id, prompt=PROMPT, stream=True):
    response = client.post(
        f"/conversations/{conversation_id}/messages",
        json={"prompt": prompt, "stream": stream},
        buffered=True,
    )
    assert response.status_code == (200 if stream else 201)
    return response


def title_of(client, conversation_id):
    return client.get(f"/conversations/{conversation_id}").json["title"]


def title_requests(server):
    return [r for r in server.requests if r.body["model"] == "title-model"]


@pytest.mark.parametrize("stream", [True, False])
def test_generated_from_the_first_prompt(client, title_model, untitled, stream):
    title_model.set_behavior(Behavior(tokens=["Lyon ", "food ", "trip"]), model="title-model")

    send(client, untitled, stream=stream)

    assert title_of(client, untitled) == "Lyon food trip"
    (request,) = title_requests(title_model)
    assert request.body["max_tokens"] == 24
    assert request.body["messages"][-1] == {"role": "user", "content": PROMPT}
    assert not request.body.get("stream")


def test_made_after_the_answer_never_before_the_first_token(client, title_model, untitled):
    title_model.behavior = Behavior(n_tokens=3, delay=0.02)

    response = client.post(
        f"/conversations/{untitled}/messages", json={"prompt": PROMPT, "stream": True}
    )
    first = next(iter(response.response))
    asked_before_first_token = len(title_requests(title_model))
    response.close()

    assert first.startswith(b"event: delta")
    assert asked_before_first_token == 0
    assert [r.body["model"] for r in title_model.requests] == ["chat-model", "title-model"]


def test_falls_back_to_the_prompts_first_words_when_the_call_fails(client, title_model, untitled):
    title_model.set_behavior(Behavior(error_status=500), model="title-model")

    send(client, untitled)

    assert title_of(client, untitled) == "Plan a four day trip to Lyon in"


def test_falls_back_when_the_answer_is_unusable(client, title_model, untitled):
    title_model.set_behavior(Behavior(tokens=["<think>", "hmm", "</think>", "  "]), "title-model")

    send(client, untitled)

    assert title_of(client, untitled) == "Plan a four day trip to Lyon in"


@pytest.mark.parametrize(
    "failure", [Behavior(n_tokens=5, break_after=1), Behavior(error_status=500)]
)
def test_no_title_call_until_an_exchange_succeeds_then_from_the_first_prompt(
    client, title_model, untitled, failure
):
    title_model.set_behavior(failure, model="chat-model")
    title_model.set_behavior(Behavior(tokens=["Lyon ", "trip"]), model="title-model")
    for _ in range(2):
        client.post(
            f"/conversations/{untitled}/messages",
            json={"prompt": PROMPT, "stream": True},
            buffered=True,
        )
    untitled_after_failures = title_of(client, untitled)
    calls_after_failures = len(title_requests(title_model))
    title_model.set_behavior(Behavior(), model="chat-model")

    send(client, untitled, prompt="try again")

    assert (untitled_after_failures, calls_after_failures) == (None, 0)
    assert title_of(client, untitled) == "Lyon trip"
    (request,) = title_requests(title_model)
    assert request.body["messages"][-1] == {"role": "user", "content": PROMPT}


def test_a_titled_conversation_is_left_alone(client, title_model):
    titled = client.post("/conversations", json={"title": "Mine"}).json["id"]

    send(client, titled)

    assert title_of(client, titled) == "Mine"
    assert title_requests(title_model) == []


def test_only_the_first_prompt_titles(client, title_model, untitled):
    title_model.set_behavior(Behavior(tokens=["First"]), model="title-model")
    send(client, untitled)
    title_model.set_behavior(Behavior(tokens=["Second"]), model="title-model")

    send(client, untitled, prompt="something else")

    assert title_of(client, untitled) == "First"
    assert len(title_requests(title_model)) == 1


def test_uses_the_conversations_model_without_a_title_model(client, fake_llm, untitled):
    send(client, untitled)

    assert [r.body["model"] for r in fake_llm.requests] == ["chat-model", "chat-model"]
    assert fake_llm.requests[1].body["max_tokens"] == 24


@pytest.mark.parametrize(
    ("raw", "title"),
    [
        ('"Trip to Lyon"', "Trip to Lyon"),
        ("Title: **Trip to Lyon.**", "Trip to Lyon"),
        ("<think>The user wants a trip.</think>\n\n# Lyon in May", "Lyon in May"),
        ("\u201cCurly quotes\u201d", "Curly quotes"),
        ("First line\nSecond line", "First line"),
        ("<think>never closed", None),
        ("   ", None),
        ("word " * 40, ("word " * 16).strip()),
    ],
)
def test_clean_title(raw, title):
    assert clean_title(raw) == title


def test_fallback_title_caps_length():
    assert fallback_title("x" * 500) == "x" * 80
    assert fallback_title("one two") == "one two"
