"""Hostile or careless input (issue 20): never a 500, a leak, or another user's outage."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.models import Conversation, Message, utcnow
from app.web import metrics
from tests.conftest import keyed_client
from tests.fake_llm import Behavior

LONG_AGO = datetime(2001, 1, 1, tzinfo=UTC)


def export_document(**message: object) -> dict:
    """An export holding one conversation with one exchange (``message`` overrides)."""
    return {
        "format": "convstore",
        "version": 1,
        "conversations": [
            {
                "title": "Old",
                "model_type": "m",
                "created_at": "2001-01-01T00:00:00+00:00",
                "updated_at": "2001-01-01T00:00:00+00:00",
                "messages": [
                    {
                        "prompt_content": "hello",
                        "response_content": "hi",
                        "is_success": True,
                        "created_at": "2001-01-01T00:00:00+00:00",
                        "updated_at": "2001-01-01T00:00:00+00:00",
                        **message,
                    }
                ],
            }
        ],
    }


class TestImportedExchangesAreEnded:
    """Defect 1: an import made an exchange "in progress" that broke the reaper."""

    @pytest.mark.parametrize("is_success", [None, "missing"])
    def test_an_exchange_without_an_outcome_is_refused(self, client, database, is_success):
        document = export_document(is_success=is_success)
        if is_success == "missing":
            del document["conversations"][0]["messages"][0]["is_success"]

        response = client.post("/import", json=document)

        assert response.status_code == 422
        errors = response.json["errors"]["json"]["conversations"]["0"]["messages"]["0"]
        assert errors == {
            "is_success": ["Must be true or false: only ended exchanges can be imported."]
        }
        assert database.scalar("SELECT count(*) FROM messages") == 0

    @pytest.mark.parametrize("is_success", [True, False])
    def test_ended_exchanges_are_imported_and_left_alone_by_the_reaper(
        self, app, client, database, is_success
    ):
        client.post("/import", json=export_document(is_success=is_success))

        result = app.test_cli_runner().invoke(args=["messages", "reap", "--older-than", "0"])

        assert "marked 0 interrupted exchange(s)" in result.output
        assert database.scalar("SELECT is_success FROM messages") == is_success

    def test_the_reaper_ends_every_stale_row_whatever_its_timestamps(self, app, database, owner_id):
        # Rows a user may have made before imports were checked: decades long (more
        # milliseconds than an INTEGER holds), or ending before they began.
        (conversation_id,) = database.add(
            Conversation(title="t", model_type="m", owner_id=owner_id)
        )
        stale = utcnow() - timedelta(hours=1)
        decades, backwards, ordinary = database.add(
            Message(
                conversation_id=conversation_id,
                prompt_content="decades",
                created_at=LONG_AGO,
                updated_at=stale,
                heartbeat_at=stale,
            ),
            Message(
                conversation_id=conversation_id,
                prompt_content="backwards",
                created_at=stale,
                updated_at=LONG_AGO,
                heartbeat_at=LONG_AGO,
            ),
            Message(
                conversation_id=conversation_id,
                prompt_content="ordinary",
                created_at=stale - timedelta(seconds=3),
                updated_at=stale,
                heartbeat_at=stale,
            ),
        )

        result = app.test_cli_runner().invoke(args=["messages", "reap"])

        assert result.exit_code == 0, result.output
        assert "marked 3 interrupted exchange(s)" in result.output
        durations = {
            uid: (database.get(Message, uid).outcome, database.get(Message, uid).duration_ms)
            for uid in (decades, backwards, ordinary)
        }
        assert durations == {
            decades: ("interrupted", 2**31 - 1),
            backwards: ("interrupted", 0),
            ordinary: ("interrupted", 3000),
        }


def raw_post(client, path: str, body: str):
    return client.post(path, data=body, content_type="application/json")


class TestNonStandardJsonConstants:
    """Defect 2: Python's parser takes NaN and Infinity; JSON has no such numbers."""

    @pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
    def test_a_v1_body_is_refused_in_openais_shape(self, client, database, fake_llm, constant):
        body = '{"model": "m", "messages": [{"role": "user", "content": "hi"}], '
        body += f'"temperature": {constant}}}'

        response = raw_post(client, "/v1/chat/completions", body)

        assert response.status_code == 400
        assert response.json["error"]["message"] == (
            f"Invalid JSON body: {constant} is not a JSON number."
        )
        assert response.json["error"]["type"] == "invalid_request_error"
        assert fake_llm.requests == []
        assert database.scalar("SELECT count(*) FROM messages") == 0

    @pytest.mark.parametrize(
        ("path", "body"),
        [
            ("/conversations", '{"title": "t", "metadata": {"k": NaN}}'),
            ("/import", '{"format": "convstore", "version": Infinity, "conversations": []}'),
        ],
    )
    def test_a_rest_body_is_refused_in_the_house_shape(self, client, database, path, body):
        response = raw_post(client, path, body)

        assert response.status_code == 400
        constant = "NaN" if "NaN" in body else "Infinity"
        message = f"Invalid JSON body: {constant} is not a JSON number."
        assert response.json == {
            "code": 400,
            "status": "Bad Request",
            "message": message,
            "errors": {"json": [message]},
        }
        assert database.scalar("SELECT count(*) FROM conversations") == 0

    def test_the_cli_import_refuses_them(self, app, alice, tmp_path, database):
        path = tmp_path / "export.json"
        document = json.dumps(export_document(prompt_tokens=float("nan")))
        path.write_text(document, "utf-8")

        result = app.test_cli_runner().invoke(
            args=["conversations", "import", str(path), "--user", alice.name]
        )

        assert result.exit_code == 1
        assert "not a valid export: NaN is not a JSON number." in result.output
        assert database.scalar("SELECT count(*) FROM conversations") == 0


MARKER = "zebra-7d1c"


def refuse_titles_with_the_marker(database, backend: str) -> None:
    """A real failing statement: the database refuses a row holding the marker (DDL inside
    the test's transaction, rolled back with it)."""
    if backend == "postgresql":
        database.execute(
            "ALTER TABLE conversations ADD CONSTRAINT test_refuse "
            f"CHECK (title NOT LIKE '%{MARKER}%')"
        )
    else:
        database.execute(
            "CREATE TRIGGER test_refuse BEFORE INSERT ON conversations "
            f"WHEN NEW.title LIKE '%{MARKER}%' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )


def test_a_failing_statements_parameters_are_not_logged(
    client, database, backend, configure, caplog
):
    """Defect 3: a database error's message printed the statement's parameters."""
    refuse_titles_with_the_marker(database, backend)
    configure(PROPAGATE_EXCEPTIONS=False)  # as in production: a 500 and its log line

    with caplog.at_level(logging.DEBUG):
        response = client.post("/conversations", json={"title": f"Secret {MARKER} plans"})

    assert response.status_code == 500
    logged = [r for r in caplog.records if r.exc_info]
    assert logged, "the failure is logged, with its traceback"
    assert "SQL parameters hidden" in caplog.text
    assert MARKER not in caplog.text


LONG_REASON = "stop_because_the_upstream_says_so_at_length"  # 44 characters: over 32


def saved_exchange(database) -> Message:
    (uid,) = [database.scalar("SELECT max(id) FROM messages")]
    return database.get(Message, uid)


class TestUpstreamValuesLongerThanTheirColumns:
    """Defect 4: a finish_reason over 32 characters failed the save (PostgreSQL)."""

    @pytest.fixture
    def conversation_id(self, client) -> int:
        return client.post("/conversations", json={"title": "t", "model_type": "m"}).json["id"]

    @pytest.mark.parametrize("stream", [False, True])
    def test_the_answer_is_saved_with_the_reason_cut_to_its_column(
        self, client, database, fake_llm, conversation_id, stream
    ):
        fake_llm.behavior = Behavior(tokens=["An ", "answer"], finish_reason=LONG_REASON)

        response = client.post(
            f"/conversations/{conversation_id}/messages", json={"prompt": "hi", "stream": stream}
        )

        assert response.status_code == (200 if stream else 201)
        assert b"event: error" not in response.data
        saved = saved_exchange(database)
        assert (saved.outcome, saved.response_content, saved.finish_reason) == (
            "complete",
            "An answer",
            LONG_REASON[:32],
        )

    @pytest.mark.parametrize("stream", [False, True])
    def test_a_v1_client_gets_the_reason_whole_and_the_answer_is_saved(
        self, client, database, fake_llm, stream
    ):
        fake_llm.behavior = Behavior(tokens=["An ", "answer"], finish_reason=LONG_REASON)

        response = client.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream},
        )

        assert response.status_code == 200
        assert LONG_REASON.encode() in response.data
        saved = saved_exchange(database)
        assert (saved.outcome, saved.response_content, saved.finish_reason) == (
            "complete",
            "An answer",
            LONG_REASON[:32],
        )

    def test_token_counts_no_column_holds_are_saved_as_unreported(
        self, client, database, fake_llm, conversation_id
    ):
        fake_llm.behavior = Behavior(
            tokens=["ok"],
            usage={"prompt_tokens": 2**31, "completion_tokens": -1, "total_tokens": 7},
        )

        response = client.post(f"/conversations/{conversation_id}/messages", json={"prompt": "hi"})

        assert response.status_code == 201
        saved = saved_exchange(database)
        assert (saved.prompt_tokens, saved.response_tokens, saved.total_tokens) == (None, None, 7)


def chat_body(**fields: object) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}


class TestOutputCapOnV1:
    """Defect 5: a cap bypassed by a number the upstream coerces."""

    @pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
    @pytest.mark.parametrize("value", ["100000", True, [100000], 0, 100000.5])
    def test_anything_but_a_positive_integer_is_refused(
        self, client, configure, fake_llm, database, field, value
    ):
        configure(MAX_OUTPUT_TOKENS=100)

        response = client.post("/v1/chat/completions", json=chat_body(**{field: value}))

        assert response.status_code == 400
        assert response.json["error"]["param"] == field
        assert fake_llm.requests == []
        assert database.scalar("SELECT count(*) FROM messages") == 0

    @pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
    @pytest.mark.parametrize("value", [100000, 100000.0])  # JSON Schema: both integers
    def test_an_integer_over_the_cap_is_clamped(self, client, configure, fake_llm, field, value):
        configure(MAX_OUTPUT_TOKENS=100)

        response = client.post("/v1/chat/completions", json=chat_body(**{field: value}))

        assert response.status_code == 200
        (sent,) = fake_llm.requests
        assert sent.body[field] == 100


NEXT = re.compile(r'^<([^>]+)>; rel="next"$')
# Query parameters no list declares, that url_for would read as instructions.
UNDECLARED = [
    ("_anchor", "x"),
    ("_method", "POST"),
    ("endpoint", "x"),
    ("_scheme", "https"),
    ("_external", "1"),
    ("conversation_id", "7"),
    ("values", "x"),
]


class TestLinksFromValidatedArguments:
    """Defect 7: Link headers built from the raw query arguments (a 500, or a link to the
    client's Host). A parameter no schema declares is now refused; the links carry the
    declared ones only."""

    @pytest.fixture
    def conversations(self, database, owner_id) -> list[int]:
        return database.add(
            *[
                Conversation(
                    title=f"lyon trip {n}", model_type="m", owner_id=owner_id, meta={"k": "v"}
                )
                for n in range(3)
            ]
        )

    @pytest.mark.parametrize(("name", "value"), UNDECLARED)
    def test_conversations(self, client, conversations, name, value):
        response = client.get(
            f"/conversations?take=1&metadata[k]=v&{name}={value}",
            headers={"Host": "evil.example"},
        )

        assert response.status_code == 422
        assert response.json["errors"] == {"query": {name: ["Unknown field."]}}

    @pytest.mark.parametrize(("name", "value"), UNDECLARED)
    def test_messages(self, client, database, conversations, name, value):
        database.add(
            *[
                Message(conversation_id=conversations[0], prompt_content=f"p{n}", is_success=True)
                for n in range(2)
            ]
        )

        response = client.get(
            f"/conversations/{conversations[0]}/messages?take=1&{name}={value}",
            headers={"Host": "evil.example"},
        )

        assert response.status_code == 422
        assert response.json["errors"] == {"query": {name: ["Unknown field."]}}

    @pytest.mark.parametrize(("name", "value"), UNDECLARED)
    def test_search(self, client, conversations, name, value):
        response = client.get(
            f"/search?q=lyon&take=1&{name}={value}", headers={"Host": "evil.example"}
        )

        assert response.status_code == 422
        assert response.json["errors"] == {"query": {name: ["Unknown field."]}}

    def test_the_links_carry_every_declared_argument_and_nothing_else(self, client, conversations):
        response = client.get(
            "/search?q=lyon&take=1&metadata[k]=v&owner=me&model=m&from=2001-01-01T00:00:00Z",
            headers={"Host": "evil.example"},
        )

        url = NEXT.match(response.headers["Link"])[1]
        cursor = response.json["next_cursor"]
        expected = {
            "q": "lyon",
            "take": "1",
            "metadata[k]": "v",
            "owner": "me",
            "model": "m",
            "from": "2001-01-01T00:00:00Z",
            "cursor": cursor,
        }
        assert url == f"/search?{urlencode(expected)}"


def nested(depth: int) -> str:
    """JSON arrays nested ``depth`` deep (an empty array is 1)."""
    return "[" * depth + "]" * depth


def v1_body_with(value: str) -> str:
    return '{"model": "m", "messages": [{"role": "user", "content": "hi"}], "user_data": ' + (
        value + "}"
    )


DEEP = nested(600)


class TestDeepNesting:
    """Defect 8: a body nested 600 deep raised RecursionError (500)."""

    def test_a_v1_body_600_deep_is_refused_in_openais_shape(self, client, fake_llm, database):
        response = raw_post(client, "/v1/chat/completions", v1_body_with(nested(600)))

        assert response.status_code == 400
        assert response.json["error"]["message"] == (
            "Invalid JSON body: Nested deeper than 64 levels."
        )
        assert fake_llm.requests == []
        assert database.scalar("SELECT count(*) FROM messages") == 0

    def test_64_levels_are_taken_and_stored(self, client, fake_llm, database):
        # The body's object is level 1: its value may nest 63 more.
        response = raw_post(client, "/v1/chat/completions", v1_body_with(nested(63)))

        assert response.status_code == 200
        assert fake_llm.requests[0].body["user_data"] == json.loads(nested(63))
        params = saved_exchange(database).request_params
        assert params["user_data"] == json.loads(nested(63))

    def test_65_levels_are_refused(self, client, fake_llm):
        response = raw_post(client, "/v1/chat/completions", v1_body_with(nested(64)))

        assert response.status_code == 400
        assert fake_llm.requests == []

    @pytest.mark.parametrize(
        ("path", "body"),
        [
            ("/conversations", '{"title": "t", "metadata": {"k": ' + nested(600) + "}}"),
            ("/import", '{"format": "convstore", "version": 1, "conversations": ' + DEEP + "}"),
        ],
    )
    def test_rest_bodies_are_refused_in_the_house_shape(self, client, database, path, body):
        response = raw_post(client, path, body)

        assert response.status_code == 400
        assert response.json["message"] == "Invalid JSON body: Nested deeper than 64 levels."
        assert database.scalar("SELECT count(*) FROM conversations") == 0

    def test_the_cli_import_refuses_them(self, app, alice, tmp_path):
        path = tmp_path / "export.ndjson"
        path.write_text('{"type": "conversation", "metadata": ' + DEEP + "}\n", "utf-8")

        result = app.test_cli_runner().invoke(
            args=["conversations", "import", str(path), "--user", alice.name]
        )

        assert result.exit_code == 1
        assert "not a valid export: Nested deeper than 64 levels." in result.output


EDGES = ["9999-12-31T23:00:00-05:00", "0001-01-01T00:30:00+01:00"]


class TestEdgeDates:
    """Defect 9: a time whose UTC falls outside years 1 to 9999 overflowed (500)."""

    @pytest.mark.parametrize("name", ["from", "to"])
    @pytest.mark.parametrize("value", EDGES)
    def test_search_refuses_them(self, client, name, value):
        response = client.get("/search", query_string={"q": "lyon", name: value})

        assert response.status_code == 422
        assert response.json["errors"] == {
            "query": {name: ["Must be between years 1 and 9999 in UTC."]}
        }

    @pytest.mark.parametrize("value", ["9999-12-31T18:59:59-05:00", "0001-01-01T00:30:00+00:30"])
    def test_search_takes_the_last_and_first_representable_times(self, client, value):
        response = client.get("/search", query_string={"q": "lyon", "from": value})

        assert response.status_code == 200

    @pytest.mark.parametrize("value", EDGES)
    def test_import_refuses_them(self, client, database, value):
        response = client.post("/import", json=export_document(created_at=value))

        assert response.status_code == 422
        errors = response.json["errors"]["json"]["conversations"]["0"]["messages"]["0"]
        assert errors == {"created_at": ["Must be between years 1 and 9999 in UTC."]}
        assert database.scalar("SELECT count(*) FROM conversations") == 0


def series(anonymous) -> dict[tuple[str, frozenset], float]:
    """Every sample /metrics exposes, by name and labels (histogram buckets included)."""
    text = anonymous.get("/metrics").get_data(as_text=True)
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def http_series(anonymous) -> dict[frozenset, float]:
    """The HTTP request counter's series (scrapes of /metrics left out), by labels."""
    return {
        labels: value
        for (name, labels), value in series(anonymous).items()
        if name == "convstore_http_requests_total" and dict(labels)["route"] != "/metrics"
    }


class TestMetricSeriesAreBounded:
    """Defect 6: every made-up HTTP method (or model name) was a new series."""

    def test_made_up_methods_share_one_label(self, client, anonymous):
        before = http_series(anonymous)

        for n in range(100):
            assert client.open("/conversations", method=f"BREW{n}").status_code == 405

        after = http_series(anonymous)
        new_methods = {dict(labels)["method"] for labels in after.keys() - before.keys()}
        assert new_methods <= {"other"}
        counted = frozenset({"route": "<unmatched>", "method": "other", "status": "405"}.items())
        assert after[counted] - before.get(counted, 0) == 100

    def test_model_names_past_the_bound_share_one_label(
        self, client, anonymous, fake_llm, monkeypatch
    ):
        monkeypatch.setattr(metrics, "MODEL_LABELS", 2)
        monkeypatch.setattr(metrics, "_models_seen", set())
        fake_llm.behavior = Behavior(tokens=["ok"])
        before = series(anonymous)

        for model in ("made-up-1", "made-up-2", "made-up-3", "made-up-4"):
            client.post("/v1/chat/completions", json={**chat_body(), "model": model})

        after = series(anonymous)
        labels = {
            dict(labels)["model"]
            for (name, labels) in after
            if name == "convstore_tokens_total" and (name, labels) not in before
        }
        assert labels <= {"made-up-1", "made-up-2", "other"}
        assert "made-up-3" not in {dict(lab).get("model") for _, lab in after}


class TestCliImportsEveryExportFormat:
    """Defect 11: a one-line NDJSON export was read as a JSON document and refused."""

    @pytest.mark.parametrize("messages", [0, 1])
    def test_an_ndjson_export_of_any_length(self, app, client, make_account, tmp_path, messages):
        bob = make_account("bob")
        conversation_id = client.post("/conversations", json={"title": "Solo"}).json["id"]
        if messages:
            client.post("/import", json=export_document())  # a second, with one message
        path = tmp_path / "export.ndjson"
        exported = client.get("/export").get_data()
        if not messages:
            assert exported.count(b"\n") == 1
        path.write_bytes(exported)

        result = app.test_cli_runner().invoke(
            args=["conversations", "import", str(path), "--user", "bob"]
        )

        assert result.exit_code == 0, result.output
        total = 2 if messages else 1
        assert result.output == (
            f"imported {total} conversation(s) and {messages} message(s) for bob\n"
        )
        titles = keyed_client(app, bob.key).get("/conversations").json
        assert [c["title"] for c in titles] == ["Solo", "Old"][:total]
        assert conversation_id not in [c["id"] for c in titles]


class TestTheServerRefusesWhatTheDocumentForbids:
    """The contract: values the OpenAPI document rules out are refused, not coerced."""

    @pytest.fixture
    def conversation_id(self, client) -> int:
        return client.post("/conversations", json={"title": "t", "model_type": "m"}).json["id"]

    @pytest.mark.parametrize("stream", [0, 1, "true", "yes"])
    def test_a_boolean_is_true_or_false(self, client, conversation_id, fake_llm, stream):
        response = client.post(
            f"/conversations/{conversation_id}/messages", json={"prompt": "hi", "stream": stream}
        )

        assert response.status_code == 422
        assert response.json["errors"] == {"json": {"stream": ["Not a valid boolean."]}}
        assert fake_llm.requests == []

    @pytest.mark.parametrize("tokens", ["5", 5.5, True])
    def test_an_imported_integer_is_a_json_number(self, client, database, tokens):
        response = client.post("/import", json=export_document(prompt_tokens=tokens))

        assert response.status_code == 422
        errors = response.json["errors"]["json"]["conversations"]["0"]["messages"]["0"]
        assert errors == {"prompt_tokens": ["Not a valid integer."]}

    def test_an_integral_float_is_an_integer(self, client, database):
        response = client.post("/import", json=export_document(prompt_tokens=5.0))

        assert response.status_code == 201
        assert database.scalar("SELECT prompt_tokens FROM messages") == 5

    def test_an_empty_group_by_is_refused(self, client):
        response = client.get("/usage?group_by=")

        assert response.status_code == 422
        errors = {"query": {"group_by": ["Shorter than minimum length 1."]}}
        assert response.json["errors"] == errors

    def test_a_lone_surrogate_becomes_a_replacement_character(self, client, fake_llm):
        body = '{"title": "t", "metadata": {"k\\udc00": "v\\ud800"}}'

        response = raw_post(client, "/conversations", body)

        assert response.status_code == 201
        assert response.json["metadata"] == {"k\ufffd": "v\ufffd"}

    def test_an_empty_patch_changes_nothing(self, client, conversation_id):
        before = client.get(f"/conversations/{conversation_id}").json

        response = client.patch(f"/conversations/{conversation_id}")

        assert response.status_code == 200
        assert response.json == before


class TestUndeclaredQueryParameters:
    """The contract: a query parameter no operation declares is refused, not ignored."""

    def test_on_an_operation_that_declares_none(self, client):
        conversation_id = client.post("/conversations", json={"title": "t"}).json["id"]

        response = client.get(f"/conversations/{conversation_id}?_external=1")

        assert response.status_code == 422
        assert response.json["errors"] == {"query": {"_external": ["Unknown field."]}}

    def test_a_body_operation_refuses_one_too(self, client, database):
        response = client.post("/conversations?title=t", json={"title": "t"})

        assert response.status_code == 422
        assert database.scalar("SELECT count(*) FROM conversations") == 0

    @pytest.mark.parametrize("path", ["/healthz", "/v1/models"])
    def test_probes_and_v1_ignore_them(self, client, fake_llm, path):
        # Load balancers add query strings; OpenAI clients send their own (api-version).
        response = client.get(f"{path}?api-version=2024-06-01")

        assert response.status_code == 200
