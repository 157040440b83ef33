"""Key checks never write: unknown keys cannot starve exchange saves of SQLite's write lock,
and cannot push valid keys out of the cache."""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Callable

import flask_migrate
import pytest
import sqlalchemy as sa

from app.extensions import db
from app.models import ApiKey, Message
from app.services import users as users_service
from app.services.auth import KeyCache, Principal, ResolvedKey
from tests.conftest import bearer, disposing, keyed_client, make_app
from tests.fake_llm import Behavior


def random_key() -> str:
    """Well formed, so it gets as far as the database, and unknown there."""
    return f"cs_{secrets.token_hex(5)[:9]}_{secrets.token_urlsafe(32)}"


def resolved(user_id: int) -> ResolvedKey:
    return ResolvedKey(Principal(user_id, f"u{user_id}", "user"), user_id, None)


class TestCache:
    def test_rejected_keys_never_evict_valid_ones(self):
        cache = KeyCache(ttl=30, max_entries=2, max_rejected=3)
        cache.put("valid-1", resolved(1))
        cache.put("valid-2", resolved(2))

        for n in range(1000):
            cache.put(f"bad-{n}", "The API key is unknown or revoked.")

        assert cache.get("valid-1") == resolved(1)
        assert cache.get("valid-2") == resolved(2)
        assert len(cache) == 2 + 3
        assert cache.get("bad-999") == "The API key is unknown or revoked."
        assert cache.get("bad-0") is None

    def test_when_full_of_valid_keys_the_oldest_goes(self):
        cache = KeyCache(ttl=30, max_entries=2)
        for n in (1, 2, 3):
            cache.put(f"valid-{n}", resolved(n))

        assert [cache.get(f"valid-{n}") for n in (1, 2, 3)] == [None, resolved(2), resolved(3)]

    def test_entries_lapse_after_the_ttl(self):
        now = [0.0]
        cache = KeyCache(ttl=30, clock=lambda: now[0])
        cache.put("valid", resolved(1))
        cache.put("bad", "nope")

        now[0] = 30.0
        at_ttl = (cache.get("valid"), cache.get("bad"))
        now[0] = 30.001
        after = (cache.get("valid"), cache.get("bad"))

        assert at_ttl == (resolved(1), "nope")
        assert after == (None, None)


def _resolve_concurrently(
    cache: KeyCache, callers: int, look_up: Callable[[], ResolvedKey | str]
) -> list[ResolvedKey | str | Exception]:
    """``callers`` threads resolve one key at once, the first one's ``look_up`` held until
    every other caller waits for it. Returns what each got (or raised)."""
    release = threading.Event()
    results: list[ResolvedKey | str | Exception] = []

    def held() -> ResolvedKey | str:
        release.wait(10)
        return look_up()

    def call() -> None:
        try:
            results.append(cache.resolve("digest", held))
        except Exception as error:
            results.append(error)

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lookup = cache._lookups.get("digest")
        if lookup is not None and lookup.waiting == callers - 1:
            break
        time.sleep(0.001)
    release.set()
    for thread in threads:
        thread.join(10)
    return results


class TestConcurrentMisses:
    def test_callers_missing_the_same_key_at_once_share_one_lookup(self):
        cache = KeyCache(ttl=30)
        lookups = []

        def look_up() -> ResolvedKey:
            lookups.append(1)
            return resolved(1)

        results = _resolve_concurrently(cache, 20, look_up)

        assert len(lookups) == 1
        assert results == [resolved(1)] * 20
        assert cache.get("digest") == resolved(1)

    def test_when_the_lookup_fails_each_waiting_caller_looks_up_on_its_own(self):
        cache = KeyCache(ttl=30)
        lookups = []

        def look_up() -> ResolvedKey:
            lookups.append(1)
            if len(lookups) == 1:
                raise OSError("the database went away")
            return resolved(1)

        results = _resolve_concurrently(cache, 5, look_up)

        # The first caller gets its own error; the four that waited for it looked the key
        # up again themselves.
        assert len(lookups) == 5
        assert [str(r) for r in results if isinstance(r, Exception)] == ["the database went away"]
        assert [r for r in results if not isinstance(r, Exception)] == [resolved(1)] * 4


def test_a_flood_of_unknown_keys_leaves_a_cached_valid_key_cached(
    app, client, database, monkeypatch
):
    monkeypatch.setitem(app.extensions, "api_key_cache", KeyCache(30, max_rejected=5))
    assert client.get("/conversations").status_code == 200
    anonymous = app.test_client()

    statuses = {anonymous.get("/conversations", headers=bearer(random_key())).status_code
                for _ in range(50)}  # fmt: skip
    with database.count_statements() as statements:
        assert client.get("/conversations").status_code == 200

    assert statuses == {401}
    assert len(statements) == 1  # the listing: the key did not have to be looked up again


def test_an_unknown_key_costs_one_read_and_no_write(anonymous, database):
    with database.count_statements() as statements:
        response = anonymous.get("/conversations", headers=bearer(random_key()))

    assert response.status_code == 401
    assert [statement.split()[0] for statement in statements] == ["SELECT"]


@pytest.fixture
def sqlite_app(tmp_path, llm_server):
    """An app on its own SQLite file with a real connection pool (no test transaction).

    Its busy timeout is short: a key check that wanted the write lock would fail fast.
    """
    path = tmp_path / "locks.db"
    app = make_app(f"sqlite:///{path}", OPENAI_BASE_URL=llm_server.base_url, DB_BUSY_TIMEOUT=1.0)
    with disposing(app):
        with app.app_context():
            flask_migrate.upgrade()
            key = users_service.create_user("alice").secret
        app.config["TEST_KEY"] = key
        yield app, path


def test_key_checks_need_no_write_lock(sqlite_app):
    app, path = sqlite_app
    key = app.config["TEST_KEY"]
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA busy_timeout = 0")
    writer.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        client = app.test_client()
        unknown = client.get("/conversations", headers=bearer(random_key()))
        with client.get("/conversations", headers=bearer(key)) as valid:
            valid_status = valid.status_code
        # Its last_used_at could not be written while the lock was held: kept for later.
        pending_while_locked = bool(app.extensions["api_key_usage"])
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    with client.get("/conversations", headers=bearer(key)):
        pass  # cached now: no lookup, but the pending usage is flushed after this response

    with app.app_context():
        last_used = db.session.scalar(sa.select(ApiKey.last_used_at))
    assert unknown.status_code == 401
    assert valid_status == 200
    assert pending_while_locked
    assert last_used is not None
    assert not app.extensions["api_key_usage"]


def test_exchange_saves_keep_succeeding_under_a_flood_of_unknown_keys(sqlite_app, fake_llm):
    app, _ = sqlite_app
    fake_llm.behavior = Behavior(n_tokens=3)
    client = keyed_client(app, app.config["TEST_KEY"])
    conversation = client.post("/conversations", json={"title": "flooded"}).json["id"]
    stop = threading.Event()
    flood_statuses: list[set[int]] = []

    def flood() -> None:
        attacker = app.test_client()
        seen: set[int] = set()
        while not stop.is_set():
            seen.add(attacker.get("/conversations", headers=bearer(random_key())).status_code)
        flood_statuses.append(seen)

    attackers = [threading.Thread(target=flood) for _ in range(4)]
    for attacker in attackers:
        attacker.start()
    try:
        saves = [
            client.post(f"/conversations/{conversation}/messages", json={"prompt": f"p{n}"})
            for n in range(20)
        ]
    finally:
        stop.set()
        for attacker in attackers:
            attacker.join()

    with app.app_context():
        rows = db.session.execute(sa.select(Message.is_success, Message.status_code)).all()
    assert [save.status_code for save in saves] == [201] * 20
    assert [tuple(row) for row in rows] == [(True, 200)] * 20
    assert flood_statuses == [{401}] * 4
