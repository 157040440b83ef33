"""What the in-process /v1 gateway tests share: chat calls and messages, OpenAI's error
shape, and the exchanges a call saved."""

from __future__ import annotations

import sqlalchemy as sa

from app.models import Message

CHAT = "/v1/chat/completions"
ANSWER = "tok0 tok1 tok2 tok3 tok4 "


def chat(client, messages, headers=None, **params):
    return client.post(
        CHAT, json={"model": "fake-model", "messages": messages, **params}, headers=headers or {}
    )


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def openai_error(response):
    """The error object, checking it has exactly OpenAI's keys."""
    body = response.json
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def messages_in(database, conversation_id):
    with database.app.app_context():
        from app.extensions import db

        return list(
            db.session.scalars(
                sa.select(Message)
                .where(Message.conversation_id == conversation_id)
                .order_by(Message.id)
            )
        )
