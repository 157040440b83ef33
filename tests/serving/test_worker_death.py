"""A worker killed mid-stream strands nothing: its exchanges end as interrupted, with the
text of their last checkpoint, while the service keeps running; live streams elsewhere are
never taken for dead. Real gunicorn, real SIGKILL."""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import sqlalchemy as sa

from tests.fake_llm import Behavior
from tests.procfile import WebProcess, create_user, deployment_env, release, wait_until

# Fast enough for a test, in the same proportions as the defaults (2 s, 15 s, 5 s).
WATCH = {"CHECKPOINT_SECONDS": "1", "REAP_AFTER_SECONDS": "5", "REAP_INTERVAL_SECONDS": "1"}


def kill_workers(web: WebProcess) -> None:
    for pid in web.workers():
        os.kill(pid, signal.SIGKILL)


class Reader:
    """A plain-text stream read in a thread, remembering when each piece arrived."""

    def __init__(self, web: WebProcess, conversation_id: int, prompt: str) -> None:
        self.pieces: list[tuple[float, bytes]] = []
        self.finished = threading.Event()
        query = urlencode({"prompt": prompt, "conversation_id": conversation_id})
        self.connection = web.connection(timeout=120)
        self.connection.request("GET", f"/text/generate/stream?{query}", headers=web.headers)
        self.response = self.connection.getresponse()
        assert self.response.status == 200
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            while piece := self.response.read1(65536):
                self.pieces.append((time.monotonic(), piece))
        except (OSError, http.client.HTTPException):
            pass  # the worker was killed
        finally:
            self.finished.set()

    def text(self, until: float = float("inf")) -> str:
        return b"".join(piece for at, piece in self.pieces if at <= until).decode()


def deploy(url: str, llm_base_url: str, log: Path) -> tuple[WebProcess, str]:
    env = deployment_env(url, llm_base_url, **WATCH)
    release(env)
    key = create_user(env, f"user{os.getpid()}{time.monotonic_ns()}")
    web = WebProcess(env, log)
    web.headers = {"Authorization": f"Bearer {key}"}
    return web, key


def rows(engine: sa.Engine) -> list:
    with engine.connect() as connection:
        return connection.execute(
            sa.text("SELECT id, response_content, outcome, status_code FROM messages ORDER BY id")
        ).all()


def test_a_sigkilled_workers_exchange_is_ended_with_its_checkpoint_within_30_s(
    backend, database_factory, llm_server, fake_llm, tmp_path
):
    url = database_factory(backend)
    web, _ = deploy(url, llm_server.base_url, tmp_path / "gunicorn.log")
    engine = sa.create_engine(url)
    # A 10-second answer: 20 pieces, half a second apart.
    fake_llm.behavior = Behavior(n_tokens=20, delay=0.5)
    with web:
        reader = Reader(web, web.create_conversation(), "a long answer")
        assert wait_until(lambda: reader.text().count("tok") >= 14, timeout=30)
        killed_at = time.monotonic()
        kill_workers(web)
        reader.finished.wait(10)

        assert wait_until(lambda: rows(engine)[0].outcome is not None, timeout=30)
        (row,) = rows(engine)
        # Still serving, no restart: the replacement workers answer.
        assert web.get("/healthz")[0] == 200
    engine.dispose()

    assert (row.outcome, row.status_code) == ("interrupted", 500)
    received = reader.text()
    assert received.startswith(row.response_content)
    assert row.response_content.startswith(reader.text(until=killed_at - 5))
    assert len(reader.text(until=killed_at - 5)) > 0


def test_two_instances_one_killed_every_exchange_ends_none_stays_in_progress(
    postgres, llm_server, fake_llm, tmp_path
):
    url = postgres.create_database()
    doomed, _ = deploy(url, llm_server.base_url, tmp_path / "doomed.log")
    survivor, _ = deploy(url, llm_server.base_url, tmp_path / "survivor.log")
    engine = sa.create_engine(url)
    # 15-second answers: three times the reaper's staleness bound.
    fake_llm.behavior = Behavior(n_tokens=30, delay=0.5)
    expected = "".join(f"tok{i} " for i in range(30))
    with doomed, survivor:
        doomed_readers = [Reader(doomed, doomed.create_conversation(), "d") for _ in range(3)]
        survivor_readers = [Reader(survivor, survivor.create_conversation(), "s") for _ in range(3)]
        assert wait_until(lambda: all(r.text() for r in doomed_readers), timeout=30)
        kill_workers(doomed)

        for reader in survivor_readers:
            assert reader.finished.wait(60)
        assert wait_until(lambda: all(row.outcome is not None for row in rows(engine)), timeout=30)
        saved = rows(engine)
    engine.dispose()

    outcomes = sorted(row.outcome for row in saved)
    assert outcomes == ["complete"] * 3 + ["interrupted"] * 3
    assert [reader.text() for reader in survivor_readers] == [expected] * 3
    assert (
        sorted(row.response_content for row in saved if row.outcome == "complete") == [expected] * 3
    )
