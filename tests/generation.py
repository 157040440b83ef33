"""What the REST generation tests share: the streaming endpoints driven (the text stream,
SSE) and their events parsed, and the exchanges a conversation saved."""

from __future__ import annotations

import json

import sqlalchemy as sa

from app.models import Message


def messages_of(database, conversation_id) -> list[Message]:
    with database.app.app_context():
        from app.extensions import db

        query = sa.select(Message).where(Message.conversation_id == conversation_id)
        return list(db.session.scalars(query.order_by(Message.id)))


def only_message(database, conversation_id) -> Message:
    (message,) = messages_of(database, conversation_id)
    return message


def parse_sse(body: bytes) -> list[tuple[str, dict]]:
    """(event, data) pairs; comments (keep-alives) are returned as ("comment", {})."""
    events = []
    for block in body.decode().split("\n\n"):
        if not block:
            continue
        if block.startswith(":"):
            events.append(("comment", {}))
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((fields["event"], json.loads(fields["data"])))
    return events


# buffered=True: read the whole body and close the response, as a real client and server do
# (Werkzeug's test client otherwise leaves a streamed body unread and unclosed).
def stream_text(client, conversation_id, prompt="Say hello", buffered=True):
    return client.get(
        "/text/generate/stream",
        query_string={"prompt": prompt, "conversation_id": conversation_id},
        buffered=buffered,
    )


def post_stream(client, conversation_id, prompt="Say hello", buffered=True):
    return client.post(
        f"/conversations/{conversation_id}/messages",
        json={"prompt": prompt, "stream": True},
        buffered=buffered,
    )
