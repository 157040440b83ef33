"""Property-based fuzzing of the live API against its own OpenAPI document (schemathesis).

The Procfile's web process (real gunicorn) serves a fresh, migrated database on each backend;
its LLM is the fake OpenAI-compatible server, so generation answers for real. schemathesis
reads ``/openapi.json`` from that server and, for every operation in it, sends requests made
from the document with an admin's API key: every phase (explicit examples, coverage's
boundary and invalid values, fuzzing, and a stateful run that chains operations), strings
with NUL and lone surrogates, and query parameters the document does not declare (the
server must refuse them: 422). Every check runs on every answer: no 5xx, a status, content
type, headers and body the document lists, valid requests accepted and invalid ones
refused, auth enforced, deleted resources gone.

The exceptions, each named in docs/api.md ("The contract") with its reason, are in exceptions():
rules the document cannot state (one parameter's bound set by another, an opaque cursor).

Deterministic and bounded: a fixed seed, Hypothesis derandomized and without its example
database, MAX_EXAMPLES fuzzed requests per operation (plus the coverage cases).
A failure names the operation and the check, and shows the response and a curl command.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events

from app.repositories.search_query import QueryError, parse
from tests.procfile import WebProcess, create_user, release

SEED = 20_260_101
MAX_EXAMPLES = 60
STATEFUL_EXAMPLES = 30
CONVERSATIONS = 4  # made before fuzzing, so that generated requests can name real ones
# An invalid request may also be refused for its size: a body over MAX_CONTENT_LENGTH (413),
# a request line over gunicorn's limit (414). schemathesis' own list leaves those out.
REFUSALS = [400, 401, 403, 404, 405, 406, 409, 413, 414, 415, 422, 428, 429]


# The Responses and Conversations APIs' request bodies (see ``exceptions``).
RESPONSES_BODIES = (
    "/v1/responses",
    "/v1/conversations",
    "/v1/conversations/{conversation_id}/items",
)


def exceptions(case: schemathesis.Case) -> list:
    """The checks skipped for this case; docs/api.md ("The contract") gives each one's reason."""
    query = case.query or {}
    if case.path == "/usage" and ("from" in query or "to" in query):
        # At most USAGE_MAX_DAYS from `from` to `to`: a bound between two parameters, which
        # OpenAPI cannot state. Past it the answer is 422.
        return [schemathesis.checks.positive_data_acceptance]
    if (
        case.path == "/conversations"
        and case.method.upper() == "GET"
        and ("cursor" in query or ("after" in query and query.get("order") == "recent"))
    ):
        # order=recent's cursor is opaque (only one the service gave is valid), and after
        # pages order=created only: a rule between two parameters. Both are 422 otherwise.
        return [schemathesis.checks.positive_data_acceptance]
    if case.method.upper() == "POST" and case.path in RESPONSES_BODIES:
        # OpenAI's requests, documented whole: rules between fields (input, unless a previous
        # response or a conversation gives the context; not both of those; store: false
        # without a conversation), Responses items (a union of item types, each checked by
        # the service) and features refused by name (background, built-in tools, ...), each
        # a 400 in OpenAI's shape that says why.
        return [schemathesis.checks.positive_data_acceptance]
    declared = {parameter.name.lower() for parameter in case.operation.headers}
    sent = {name.lower() for name in case.headers or {}} - {"authorization", "content-type"}
    if sent - declared:
        # A header the operation does not declare: an HTTP server ignores the headers it
        # does not know, so the service never refuses a request for one.
        return [schemathesis.checks.negative_data_rejection]
    if isinstance(case.body, dict) and case.body.get("expires_at") is not None:
        # A conversation's expires_at must be in the future: a bound set by the service's
        # clock, which no schema states. 422 otherwise.
        return [schemathesis.checks.positive_data_acceptance]
    if case.path == "/import" and _has_a_tombstone_rule(case):
        # An exported message has content unless it is a deleted one (deleted: true), which
        # has none: a rule between fields that OpenAPI 3.0 cannot state. 422 otherwise.
        return [schemathesis.checks.positive_data_acceptance]
    if _names_an_exchange(case):
        # An exchange named by id must be one of that conversation's (an earlier one of the
        # document's, in an import): existence, which no schema states. 422 otherwise.
        return [schemathesis.checks.positive_data_acceptance]
    if case.path == "/search" and ("cursor" in query or not _parses(query.get("q"))):
        # A cursor is opaque: only one the service gave is valid, which no pattern states;
        # q has a grammar (balanced quotes, at least one word not excluded, at most 16 terms)
        # that no pattern states either. Queries the service's own parser refuses are 422.
        return [schemathesis.checks.positive_data_acceptance]
    return []


def _names_an_exchange(case: schemathesis.Case) -> bool:
    """Whether the request names an exchange by id: a leaf, a parent, a current exchange."""
    query, body = case.query or {}, case.body if isinstance(case.body, dict) else {}
    if query.get("leaf") is not None:
        return True
    if body.get("parent_id") is not None or body.get("current_message_id") is not None:
        return True
    conversations = body.get("conversations") if case.path == "/import" else None
    return any(
        isinstance(c, dict)
        and (
            c.get("current_message_id") is not None
            or any(
                isinstance(m, dict) and m.get("parent_id") is not None
                for m in (c.get("messages") if isinstance(c.get("messages"), list) else ())
            )
        )
        for c in (conversations if isinstance(conversations, list) else ())
    )


def _has_a_tombstone_rule(case: schemathesis.Case) -> bool:
    """Whether an /import document has a message without prompt_content, or a deleted one."""
    body = case.body if isinstance(case.body, dict) else {}
    conversations = body.get("conversations")
    return any(
        isinstance(m, dict) and ("prompt_content" not in m or m.get("deleted") is True)
        for c in (conversations if isinstance(conversations, list) else ())
        if isinstance(c, dict)
        for m in (c.get("messages") if isinstance(c.get("messages"), list) else ())
    )


def _parses(q: object) -> bool:
    try:
        parse(str(q))
    except QueryError:
        return False
    return True


@dataclass
class LiveService:
    """The service under gunicorn, an admin's key, and the conversations made up front."""

    base_url: str
    key: str
    conversation_ids: list[int] = field(default_factory=list)
    # Another user's key: DELETE /conversations deletes all of its caller's conversations.
    deleter_key: str = ""

    def create_conversation(self, title: str) -> int:
        response = requests.post(
            f"{self.base_url}/conversations",
            json={"title": title},
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        return response.json()["id"]


@pytest.fixture
def live(backend, database_factory, fake_llm, tmp_path) -> Iterator[LiveService]:
    env = {
        "DATABASE_URL": database_factory(backend),
        "OPENAI_BASE_URL": fake_llm.base_url,
        "OPENAI_API_KEY": "test-key",
        "OPENAI_MAX_RETRIES": "0",
        "WEB_CONCURRENCY": "1",
        "GUNICORN_ACCESS_LOG": "",
        "LOG_LEVEL": "WARNING",
        # Thousands of requests from one user: limits (tests/auth/test_rate_limits.py) would
        # answer most of them 429 and leave the rest of the API unexplored.
        "RATELIMIT_ENABLED": "false",
    }
    release(env)
    key = create_user(env, "fuzzer", admin=True)
    deleter_key = create_user(env, "deleter")
    with WebProcess(env, tmp_path / "gunicorn.log") as web:
        service = LiveService(f"http://127.0.0.1:{web.port}", key, deleter_key=deleter_key)
        service.conversation_ids = [
            service.create_conversation(f"fuzz {n}") for n in range(CONVERSATIONS)
        ]
        yield service


@pytest.fixture
def api_schema(live: LiveService) -> schemathesis.BaseSchema:
    config = _config(live, phases=["examples", "coverage", "fuzzing"])
    schema = schemathesis.openapi.from_url(f"{live.base_url}/openapi.json", config=config)

    @schema.hook
    def flatmap_path_parameters(_context, path_parameters):
        # Random ids almost never exist: mix in the real ones, or every request past the
        # routing would end in a 404.
        if not isinstance(path_parameters, dict) or "conversation_id" not in path_parameters:
            return st.just(path_parameters)
        real = st.sampled_from(live.conversation_ids)
        return st.one_of(
            st.just(path_parameters),
            real.map(lambda uid: {**path_parameters, "conversation_id": uid}),
        )

    return schema


PHASES = ("examples", "coverage", "fuzzing", "stateful")


def _config(live: LiveService, phases: list[str]) -> SchemathesisConfig:
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "base-url": live.base_url,
            # As the document's security scheme, so that the auth checks can leave it out or
            # spoil it (a static header would be sent with their requests too).
            "auth": {"openapi": {"bearerAuth": {"bearer": live.key}}},
            "request-timeout": 10,
            "phases": {phase: {"enabled": phase in phases} for phase in PHASES},
            "checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}},
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
                "allow-x00": True,
                "allow-extra-parameters": True,
            },
        }
    )
    # Every code point, lone surrogates included (the config file cannot say "no codec").
    config.projects.default.generation.codec = None
    return config


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request):
    # schemathesis 4.32's from_fixture() reads and rewrites `item._nodeid`, which pytest 9.2
    # no longer has (the id is `nodeid`): without this, the test dies with an AttributeError
    # before sending a request. Its per-operation reports work as before.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_api_conforms_to_its_openapi_document(case, live):
    shared = {str(uid) for uid in live.conversation_ids}
    if case.method == "DELETE" and str(case.path_parameters.get("conversation_id")) in shared:
        # Deleting the shared conversations would leave the operations fuzzed later nothing
        # but 404s: delete one made for the purpose.
        case.path_parameters["conversation_id"] = live.create_conversation("to delete")
    headers = case.headers or {}
    if (
        case.method == "DELETE"
        and case.path == "/conversations"
        and headers.get("Authorization") == f"Bearer {live.key}"
    ):
        # It deletes every conversation of its caller, the shared ones too: another user
        # calls it (the auth checks still send it without a key, or a spoiled one).
        headers["Authorization"] = f"Bearer {live.deleter_key}"
    case.call_and_validate(excluded_checks=exceptions(case))


def test_api_conforms_in_stateful_sequences(live: LiveService):
    """The stateful phase: operations chained by the links schemathesis finds (a conversation
    created, read, changed, listed, deleted), every check on every step. Run by schemathesis'
    engine, which replays a failure against the live server's changed state (a plain
    Hypothesis state machine reports that as FlakyStrategyDefinition and hides it)."""
    schema = schemathesis.openapi.from_url(
        f"{live.base_url}/openapi.json", config=_config(live, phases=["stateful"])
    )

    failures = []
    checked = 0
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            checked += sum(len(checks) for checks in event.recorder.checks.values())
            failures += [
                f"{check.name}: {check.failure_info.failure.title} ({event.recorder.label})"
                for case_id, checks in event.recorder.checks.items()
                for check in checks
                if check.status == Status.FAILURE
                and not _excepted(check.name, event.recorder.cases.get(case_id))
            ]
        elif isinstance(event, events.FatalError | events.NonFatalError):
            failures.append(f"error: {getattr(event, 'value', None) or event.exception!r}")

    assert failures == []
    assert checked > 0, "the stateful phase ran no sequence"


def _excepted(check: str, node: object) -> bool:
    """Whether EXCEPTIONS skip ``check`` for the case behind ``node``."""
    case = getattr(node, "value", None)
    return case is not None and check in {c.__name__ for c in exceptions(case)}
