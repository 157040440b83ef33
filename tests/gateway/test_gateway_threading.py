"""How /v1/chat/completions calls thread into conversations: by the history's fingerprint or
X-Conversation-Id, branching where a client edits, regenerates or retries a turn."""

from __future__ import annotations

import pytest

from app.services.titles import INSTRUCTION
from tests.conftest import keyed_client
from tests.fake_llm import Behavior
from tests.gateway.chat import assistant, chat, messages_in, openai_error, user


def title_calls(fake_llm):
    """The title calls the upstream received (their system message is the instruction)."""
    return [
        r
        for r in fake_llm.requests
        if r.body and r.body.get("messages", [{}])[0].get("content") == INSTRUCTION
    ]


class TestThreading:
    def test_a_growing_history_stays_in_one_conversation(self, client, fake_llm, database):
        history = [{"role": "system", "content": "sys"}, user("one")]
        ids = []
        for turn in ("two", "three"):
            response = chat(client, history)
            ids.append(int(response.headers["X-Conversation-Id"]))
            history += [response.json["choices"][0]["message"], user(turn)]
        response = chat(client, history)
        ids.append(int(response.headers["X-Conversation-Id"]))

        assert len(set(ids)) == 1
        assert [m.prompt_content for m in messages_in(database, ids[0])] == ["one", "two", "three"]

    def test_the_same_first_message_twice_is_two_conversations(self, client, fake_llm):
        first = chat(client, [user("hello")])
        second = chat(client, [user("hello")])

        assert first.headers["X-Conversation-Id"] != second.headers["X-Conversation-Id"]

    def test_an_edited_history_starts_a_new_conversation(self, client, fake_llm):
        first = chat(client, [user("one")])
        edited = chat(client, [user("one"), assistant("not what you said"), user("two")])

        assert first.headers["X-Conversation-Id"] != edited.headers["X-Conversation-Id"]

    def test_regenerating_the_last_turn_branches_from_the_exchange_before_it(
        self, client, fake_llm, database
    ):
        first = chat(client, [user("one")])
        history = [user("one"), first.json["choices"][0]["message"], user("two")]
        second = chat(client, history)
        # The client drops the last answer and asks again: the same history as before.
        again = chat(client, history)

        conversation_id = int(first.headers["X-Conversation-Id"])
        assert int(second.headers["X-Conversation-Id"]) == conversation_id
        assert int(again.headers["X-Conversation-Id"]) == conversation_id
        one, two, two_again = messages_in(database, conversation_id)
        assert (one.parent_id, two.parent_id, two_again.parent_id) == (None, one.id, one.id)
        assert two_again.id == int(again.headers["X-Message-Id"])
        conversation = client.get(f"/conversations/{conversation_id}").json
        assert conversation["current_message_id"] == two_again.id
        listed = client.get(f"/conversations/{conversation_id}/messages").json
        assert [m["id"] for m in listed] == [one.id, two_again.id]
        assert [m["siblings"] for m in listed] == [0, 1]

    def test_an_edited_earlier_turn_branches_from_the_exchange_it_follows(
        self, client, fake_llm, database
    ):
        first = chat(client, [user("one")])
        answer = first.json["choices"][0]["message"]
        second = chat(client, [user("one"), answer, user("two")])
        third_history = [user("one"), answer, user("two"), second.json["choices"][0]["message"]]
        chat(client, [*third_history, user("three")])

        edited = chat(client, [user("one"), answer, user("two, edited")])

        conversation_id = int(first.headers["X-Conversation-Id"])
        assert int(edited.headers["X-Conversation-Id"]) == conversation_id
        one, _two, _three, two_edited = messages_in(database, conversation_id)
        assert two_edited.prompt_content == "two, edited"
        assert two_edited.parent_id == one.id

    def test_an_edited_first_turn_in_a_named_conversation_is_a_new_first_exchange(
        self, client, fake_llm, database
    ):
        first = chat(client, [user("one")])
        conversation_id = first.headers["X-Conversation-Id"]
        chat(client, [user("one"), first.json["choices"][0]["message"], user("two")])

        edited = chat(client, [user("one, edited")], {"X-Conversation-Id": conversation_id})

        assert edited.headers["X-Conversation-Id"] == conversation_id
        *_, root = messages_in(database, int(conversation_id))
        assert (root.prompt_content, root.parent_id) == ("one, edited", None)
        listed = client.get(f"/conversations/{conversation_id}/messages").json
        assert [m["prompt_content"] for m in listed] == ["one, edited"]

    def test_a_history_matching_none_of_a_named_conversations_follows_its_current(
        self, client, fake_llm, database
    ):
        conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]
        first = chat(client, [user("hi")], {"X-Conversation-Id": str(conversation_id)})

        later = chat(
            client,
            [user("made"), assistant("up"), user("next")],
            {"X-Conversation-Id": str(conversation_id)},
        )

        assert later.status_code == 200
        one, two = messages_in(database, conversation_id)
        assert one.id == int(first.headers["X-Message-Id"])
        assert two.parent_id == one.id

    def test_a_failed_exchange_does_not_move_the_thread(self, client, fake_llm):
        first = chat(client, [user("one")])
        history = [user("one"), first.json["choices"][0]["message"], user("two")]
        fake_llm.behavior = Behavior(error_status=500)
        assert chat(client, history).status_code == 500
        fake_llm.behavior = Behavior()

        retried = chat(client, history)

        assert retried.headers["X-Conversation-Id"] == first.headers["X-Conversation-Id"]

    @pytest.mark.parametrize("stream", [False, True])
    @pytest.mark.parametrize("status", [500, 429])
    def test_a_retried_failed_first_turn_lands_in_the_conversation_of_the_failure(
        self, client, fake_llm, database, stream, status
    ):
        first_turn = [{"role": "system", "content": "sys"}, user("hello")]
        fake_llm.behavior = Behavior(error_status=status)
        failures = [chat(client, first_turn, stream=stream) for _ in range(2)]
        calls_while_failing = len(fake_llm.requests)
        fake_llm.behavior = Behavior()

        retried = chat(client, first_turn, stream=stream)
        retried.get_data()
        retried.close()  # the close hook titles the conversation

        assert [f.status_code for f in failures] == [status, status]
        assert calls_while_failing == 2  # no service-side retries, no title calls
        ids = {int(r.headers["X-Conversation-Id"]) for r in [*failures, retried]}
        assert len(ids) == 1
        exchanges = messages_in(database, ids.pop())
        assert [(m.outcome, m.prompt_content) for m in exchanges] == [
            ("failed", "hello"),
            ("failed", "hello"),
            ("complete", "hello"),
        ]
        assert len(title_calls(fake_llm)) == 1

    def test_after_a_retry_succeeds_the_same_first_turn_is_a_new_conversation(
        self, client, fake_llm
    ):
        fake_llm.behavior = Behavior(error_status=500)
        failed = chat(client, [user("hello")])
        fake_llm.behavior = Behavior()
        retried = chat(client, [user("hello")])

        again = chat(client, [user("hello")])

        assert retried.headers["X-Conversation-Id"] == failed.headers["X-Conversation-Id"]
        assert again.headers["X-Conversation-Id"] != failed.headers["X-Conversation-Id"]

    def test_a_retry_of_other_messages_is_another_conversation(self, client, fake_llm):
        fake_llm.behavior = Behavior(error_status=500)
        failed = chat(client, [user("hello")])
        fake_llm.behavior = Behavior()

        other = chat(client, [user("hello there")])

        assert other.headers["X-Conversation-Id"] != failed.headers["X-Conversation-Id"]

    def test_a_conversation_whose_exchanges_all_failed_gets_no_title(
        self, client, fake_llm, database
    ):
        fake_llm.behavior = Behavior(error_status=503)

        failed = chat(client, [user("hello")], stream=True)
        failed.close()

        conversation = client.get(f"/conversations/{failed.headers['X-Conversation-Id']}").json
        assert conversation["title"] is None
        assert title_calls(fake_llm) == []

    def test_the_gateway_relays_an_upstream_error_at_once_by_default(
        self, client, fake_llm, configure
    ):
        configure(OPENAI_MAX_RETRIES=2)
        fake_llm.behavior = Behavior(error_status=503)

        response = chat(client, [user("hello")])

        assert response.status_code == 503
        assert len(fake_llm.requests) == 1

    def test_gateway_retries_are_a_setting(self, client, fake_llm, configure):
        configure(GATEWAY_MAX_RETRIES=1)
        fake_llm.behavior = Behavior(error_status=503, retry_after=0)

        response = chat(client, [user("hello")])

        assert response.status_code == 503
        assert len(fake_llm.requests) == 2

    def test_each_exchange_keeps_the_input_new_since_the_previous_answer(
        self, client, fake_llm, database
    ):
        parts = [{"type": "text", "text": "two"}, {"type": "image_url", "image_url": {"url": "x"}}]
        first_turn = [{"role": "system", "content": "sys"}, user("one")]
        first = chat(client, first_turn)
        history = [
            *first_turn,
            first.json["choices"][0]["message"],
            {"role": "user", "content": parts, "name": "ann"},
            {"role": "user", "content": "a\u0000b"},
        ]

        second = chat(client, history)

        assert second.headers["X-Conversation-Id"] == first.headers["X-Conversation-Id"]
        saved = messages_in(database, int(first.headers["X-Conversation-Id"]))
        assert [m.input_items for m in saved] == [
            first_turn,
            [{"role": "user", "content": parts, "name": "ann"}, user("a\ufffdb")],
        ]

    def test_an_explicit_conversation_is_used_and_another_users_is_404(
        self, client, fake_llm, make_account, database
    ):
        mine = client.post("/conversations", json={"title": "mine"}).json["id"]
        bob = keyed_client(client.application, make_account("bob").key)
        theirs = bob.post("/conversations", json={"title": "theirs"}).json["id"]

        response = chat(client, [user("hi")], headers={"X-Conversation-Id": str(mine)})
        missing = chat(client, [user("hi")], headers={"X-Conversation-Id": str(theirs)})

        assert response.headers["X-Conversation-Id"] == str(mine)
        assert [m.prompt_content for m in messages_in(database, mine)] == ["hi"]
        assert missing.status_code == 404
        assert openai_error(missing)["type"] == "invalid_request_error"
        assert messages_in(database, theirs) == []

    @pytest.mark.parametrize("unknown", [2**31, 2**63 - 1])
    def test_an_unknown_conversation_beyond_an_integer_is_404(self, client, fake_llm, unknown):
        response = chat(client, [user("hi")], headers={"X-Conversation-Id": str(unknown)})

        assert response.status_code == 404
        assert openai_error(response)["type"] == "invalid_request_error"
        assert fake_llm.requests == []

    def test_another_users_identical_history_never_threads_into_mine(
        self, client, fake_llm, make_account
    ):
        bob = keyed_client(client.application, make_account("bob").key)
        mine = chat(client, [user("one")])
        history = [user("one"), mine.json["choices"][0]["message"], user("two")]

        theirs = chat(bob, history)

        assert theirs.headers["X-Conversation-Id"] != mine.headers["X-Conversation-Id"]
        assert (
            chat(client, history).headers["X-Conversation-Id"] == mine.headers["X-Conversation-Id"]
        )
