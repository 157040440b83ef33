"""Fixtures: every database test runs on SQLite and on a real PostgreSQL.

PostgreSQL comes from TEST_DATABASE_URL (default: the local server's ``test`` database); the
suite creates a database of its own there and drops it at the end, so runs don't collide.
Each test runs inside an outer transaction that is rolled back afterwards; the code under
test may still commit, because the session joins it with savepoints.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flask_migrate
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.engine import make_url

from app import create_app
from app.extensions import db
from app.llm.client import LLMClient
from app.models import User
from app.services import users as users_service
from tests.fake_llm import FakeLLMServer
from tests.openai_shapes import check_response

pytest_plugins = ["tests.clocks"]

BACKENDS = ("sqlite", "postgresql")
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
_pg_skip_reason: list[str] = []


def _admin_url() -> sa.URL:
    from app.config import normalize_database_url

    return make_url(normalize_database_url(os.environ.get("TEST_DATABASE_URL", DEFAULT_PG_URL)))


class PostgresServer:
    """Creates and drops throwaway databases on the test PostgreSQL server."""

    def __init__(self, admin_url: sa.URL) -> None:
        self.admin_url = admin_url
        self.engine = sa.create_engine(
            admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
        )
        self.created: list[str] = []

    def create_database(self) -> str:
        name = f"convstore_test_{uuid.uuid4().hex[:12]}"
        with self.engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return self.admin_url.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self.engine.connect() as conn:
            for name in self.created:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.engine.dispose()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer(_admin_url())
    try:
        with server.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sa.exc.OperationalError as exc:
        message = (
            f"PostgreSQL is unreachable at {server.admin_url.render_as_string()} "
            f"(set TEST_DATABASE_URL): {exc.orig}"
        )
        if os.environ.get("CI"):
            pytest.fail(f"CI requires PostgreSQL. {message}", pytrace=False)
        _pg_skip_reason.append(message)
        pytest.skip(message)
    yield server
    server.drop_all()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _pg_skip_reason:
        terminalreporter.write_sep("!", "THE POSTGRESQL HALF OF THE SUITE WAS SKIPPED", red=True)
        terminalreporter.write_line(_pg_skip_reason[0], red=True)


CHROMIUM_FLAGS = [
    # No name resolves but loopback's: the browser is offline whatever a page asks for.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    """The system's Chromium; in CI its absence fails the suite instead of skipping."""
    path = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if path is None:
        message = "Chromium is not installed (apt-get install chromium); browser tests need it"
        if os.environ.get("CI"):
            pytest.fail(f"CI requires Chromium. {message}", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium driven by playwright (which never downloads a browser here);
    per module, so that playwright's event loop is gone before other tests run."""
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def database_factory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], str]:
    """Make an empty database on a backend and return its URL."""

    def make(backend: str) -> str:
        if backend == "sqlite":
            path = tmp_path_factory.mktemp("sqlite") / "test.db"
            return f"sqlite:///{path}"
        return request.getfixturevalue("postgres").create_database()

    return make


@pytest.fixture(scope="session")
def llm_server() -> Iterator[FakeLLMServer]:
    """A real OpenAI-compatible HTTP server on loopback, steered by each test."""
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def fake_llm(llm_server: FakeLLMServer) -> Iterator[FakeLLMServer]:
    """The fake LLM server, reset to its default behaviour for this test."""
    llm_server.reset()
    yield llm_server
    llm_server.reset()


# Fail fast in tests: no client-side retries, short time-outs, quick save retries.
TEST_SETTINGS = {
    "TESTING": True,
    "OPENAI_API_KEY": "test-key",
    "OPENAI_MAX_RETRIES": 0,
    "OPENAI_READ_TIMEOUT": 2.0,
    "OPENAI_CONNECT_TIMEOUT": 2.0,
    "TITLE_TIMEOUT": 2.0,
    "SAVE_RETRY_DELAY": 0.01,
    # No background ticker on the connection a test shares: tests tick by hand.
    "LIVE_TICKER": False,
    # A client that hangs up closes the upstream at once; the drain's own tests turn it on.
    "USAGE_DRAIN_SECONDS": 0,
    # Off but where a test turns them on (tests/auth/test_rate_limits.py): counters would carry
    # over between tests that reuse user ids.
    "RATELIMIT_ENABLED": False,
}


def make_app(url: str, **config: Any) -> Flask:
    """An app on ``url`` with test settings (its LLM is the fake server when one runs); its
    Responses and Conversations answers are validated against openai-python's models."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, **TEST_SETTINGS, **config})
    app.after_request(check_response)
    return app


@contextmanager
def disposing(app: Flask) -> Iterator[Flask]:
    """Yield ``app``, then close its connection pools."""
    try:
        yield app
    finally:
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def migrated_app(
    backend: str, database_factory: Callable[[str], str], llm_server: FakeLLMServer
) -> Iterator[Flask]:
    """One app per backend, on a database migrated to head once per run."""
    url = database_factory(backend)
    with disposing(make_app(url, OPENAI_BASE_URL=llm_server.base_url)) as app:
        with app.app_context():
            flask_migrate.upgrade()
            # Tests commit through savepoints inside a transaction they roll back.
            db.session.configure(join_transaction_mode="create_savepoint")
        yield app


@pytest.fixture
def app(migrated_app: Flask) -> Iterator[Flask]:
    """The app, its database bound to one connection whose transaction is rolled back."""
    with migrated_app.app_context():
        engines = db.engines
    engine = engines[None]
    connection = engine.connect()
    transaction = connection.begin()
    engines[None] = connection  # type: ignore[index]
    migrated_app.extensions["api_key_cache"].clear()
    migrated_app.extensions["api_key_usage"].take()
    try:
        yield migrated_app
    finally:
        engines[None] = engine  # type: ignore[index]
        transaction.rollback()
        connection.close()


@pytest.fixture
def pooled_app(backend, database_factory, llm_server):
    """An app on its own migrated database with a real connection pool (no test binding):
    for tests where several threads use the database. ``config["TEST_KEY"]`` is alice's."""
    url = database_factory(backend)
    with disposing(make_app(url, OPENAI_BASE_URL=llm_server.base_url)) as app:
        with app.app_context():
            flask_migrate.upgrade()
            app.config["TEST_KEY"] = users_service.create_user("alice").secret
        yield app


@dataclass(frozen=True)
class Account:
    """A user made for a test, with an API key."""

    user_id: int
    name: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


# Shaped like a real key, so it gets as far as the database lookup.
UNKNOWN_KEY = "cs_000000000_" + "0" * 43


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def keyed_client(app: Flask, key: str) -> FlaskClient:
    """A test client that sends ``key`` with every request."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


@pytest.fixture
def make_account(app: Flask) -> Callable[..., Account]:
    """Create a user (``admin=True`` for the admin role) and return it with its key."""

    def make(name: str, *, admin: bool = False) -> Account:
        with app.app_context():
            key = users_service.create_user(name, admin=admin)
            user_id = db.session.scalar(sa.select(User.id).where(User.name == name))
        return Account(user_id, name, key.secret)

    return make


@pytest.fixture
def alice(make_account: Callable[..., Account]) -> Account:
    return make_account("alice")


@pytest.fixture
def owner_id(alice: Account) -> int:
    """The user that owns the conversations a test adds straight to the database."""
    return alice.user_id


@pytest.fixture
def client(app: Flask, alice: Account) -> FlaskClient:
    """A client authenticated as alice (a user without the admin role)."""
    return keyed_client(app, alice.key)


@pytest.fixture
def anonymous(app: Flask) -> FlaskClient:
    """A client that sends no API key."""
    return app.test_client()


@pytest.fixture
def configure(app: Flask) -> Iterator[Callable[..., None]]:
    """Change app settings for one test (the LLM client is rebuilt from them)."""
    saved = dict(app.config)
    llm = app.extensions["llm"]

    def apply(**settings: Any) -> None:
        app.config.update(settings)
        app.extensions["llm"] = LLMClient(app.config)

    yield apply
    app.config.clear()
    app.config.update(saved)
    app.extensions["llm"] = llm


class Database:
    """Direct access to the test's database, each call in its own short app context."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def add(self, *records: Any) -> list[int]:
        """Insert ORM records and return their ids."""
        with self.app.app_context():
            db.session.add_all(records)
            db.session.commit()
            return [record.id for record in records]

    def scalar(self, statement: Any, **params: Any) -> Any:
        with self.app.app_context():
            if isinstance(statement, str):
                statement = sa.text(statement)
            return db.session.scalar(statement, params)

    def execute(self, sql: str, **params: Any) -> None:
        """Run raw SQL and commit (deletes through SQL bypass the ORM's cascade)."""
        with self.app.app_context():
            db.session.execute(sa.text(sql), params)
            db.session.commit()

    def get(self, model: type, uid: int) -> Any:
        with self.app.app_context():
            return db.session.get(model, uid)

    @contextmanager
    def count_statements(self) -> Iterator[list[str]]:
        """Collect the SQL statements the app sends, savepoint bookkeeping left out."""
        with self.app.app_context():
            connection = db.engines[None]
        statements: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            verb = statement.lstrip().split(None, 1)[0].upper()
            if verb not in {"SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT"}:
                statements.append(statement)

        sa.event.listen(connection, "before_cursor_execute", record)
        try:
            yield statements
        finally:
            sa.event.remove(connection, "before_cursor_execute", record)


@pytest.fixture
def database(app: Flask) -> Database:
    return Database(app)


REPO_ROOT = Path(__file__).resolve().parent.parent
