"""The lifecycle's promises at their edges (issue 21): heartbeats from the committed row on,
GENERATION_TIMEOUT over the whole exchange, estimated usage, one charging rule."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import Message, utcnow
from tests.api.test_generation import only_message, parse_sse, post_stream, stream_text
from tests.conftest import keyed_client
from tests.fake_llm import Behavior

CHAT = "/v1/chat/completions"


def user(text):
    return {"role": "user", "content": text}


def the_message(app) -> Message:
    with app.app_context():
        return db.session.scalars(sa.select(Message)).one()


class TestHeartbeatsStartWithTheRow:
    """Item 2: an exchange waiting on the upstream is heartbeated, so never reaped."""

    @pytest.mark.parametrize("waiting_for", ["non-streamed answer", "first token"])
    def test_an_exchange_waiting_on_the_upstream_is_not_reaped(
        self, pooled_app, fake_llm, waiting_for
    ):
        client = keyed_client(pooled_app, pooled_app.config["TEST_KEY"])
        if waiting_for == "first token":
            fake_llm.behavior = Behavior(first_token_delay=1.0, n_tokens=2)
        else:
            fake_llm.behavior = Behavior(headers_delay=1.0, n_tokens=2)
        body = {
            "model": "fake-model",
            "messages": [user("hi")],
            "stream": waiting_for != "non-streamed answer",
        }
        answers = []

        def ask() -> None:
            response = client.post(CHAT, json=body)
            answers.append((response.status_code, response.get_data()))
            response.close()

        call = threading.Thread(target=ask)
        call.start()
        assert fake_llm.wait_for(lambda server: len(server.requests) == 1)
        live = pooled_app.extensions["live_exchanges"]
        # Its last heartbeat looks an hour old: only a heartbeat written now saves it.
        with pooled_app.app_context():
            db.session.execute(
                sa.update(Message).values(heartbeat_at=utcnow() - timedelta(hours=1))
            )
            db.session.commit()
        live.stale_after = 60

        checkpointed, reaped = live.tick(reap=True)
        during = the_message(pooled_app)
        call.join()

        assert (checkpointed, reaped) == (1, 0)
        assert during.outcome is None
        assert answers[0][0] == 200
        assert the_message(pooled_app).outcome == "complete"
