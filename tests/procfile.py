"""Run the Procfile's process types as a deployment would: release, then web under gunicorn."""

from __future__ import annotations

import atexit
import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.config import normalize_database_url
from app.services.users import add_user

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def procfile_command(process: str) -> str:
    """The command line of one Procfile process type."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process:
            return command.strip()
    raise KeyError(process)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUNICORN_", "FLASK_"))}
    return {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", **extra}


def release(env: Mapping[str, str]) -> None:
    """Run the release step (migrations) on the empty database ``env`` names.

    The step itself runs once per database server (or SQLite) in a process; later calls give
    the empty database a copy of the one it migrated (PostgreSQL: created from it as a
    template; SQLite: a backup of the file), which is the same schema in a tenth of the time:
    a deployment's set-up was 13 s, 4 of them this step. The migrations' own tests
    (tests/db/test_migrations.py) run every revision for real."""
    url = env["DATABASE_URL"]
    if url.startswith("sqlite"):
        _release_sqlite(env, Path(url.split("///", 1)[1]))
    else:
        _release_postgresql(env, url)


def _run_release(env: Mapping[str, str]) -> None:
    subprocess.run(
        ["bash", "-c", procfile_command("release")],
        cwd=ROOT,
        env=_env(env),
        check=True,
        capture_output=True,
        timeout=120,
    )


_MIGRATED: dict[str, str] = {}  # server (or "sqlite") -> the migrated copy to clone


def _release_sqlite(env: Mapping[str, str], path: Path) -> None:
    template = _MIGRATED.get("sqlite")
    if template is None or path.exists():
        _run_release(env)
        if template is None:
            template = tempfile.mkdtemp(prefix="convstore-migrated-") + "/migrated.db"
            _sqlite_copy(path, Path(template))
            _MIGRATED["sqlite"] = template
        return
    _sqlite_copy(Path(template), path)


def _sqlite_copy(source: Path, target: Path) -> None:
    with sqlite3.connect(source) as origin, sqlite3.connect(target) as copy:
        origin.backup(copy)
    origin.close()
    copy.close()


def _release_postgresql(env: Mapping[str, str], url: str) -> None:
    parsed = sa.make_url(normalize_database_url(url))
    server = parsed.set(database="postgres")
    key = server.render_as_string(hide_password=False)
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as connection:
            template = _MIGRATED.get(key)
            if template is None or _has_tables(parsed):
                _run_release(env)
                if template is None:
                    template = f"convstore_migrated_{uuid.uuid4().hex[:12]}"
                    connection.exec_driver_sql(
                        f'CREATE DATABASE "{template}" TEMPLATE "{parsed.database}"'
                    )
                    _MIGRATED[key] = template
                    atexit.register(_drop_database, server, template)
                return
            connection.exec_driver_sql(f'DROP DATABASE "{parsed.database}"')
            connection.exec_driver_sql(f'CREATE DATABASE "{parsed.database}" TEMPLATE "{template}"')
    finally:
        admin.dispose()


def _has_tables(url: sa.URL) -> bool:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as inside:
            return bool(sa.inspect(inside).get_table_names())
    finally:
        engine.dispose()


def _drop_database(server: sa.URL, name: str) -> None:
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except sa.exc.OperationalError:
        pass  # the server is gone already (a test's own PostgreSQL)
    finally:
        admin.dispose()


def flask_command(env: Mapping[str, str], *args: str) -> str:
    """Run a ``flask`` CLI command against the deployment's environment; returns its output."""
    done = subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", *args],
        cwd=ROOT,
        env=_env(env),
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout


def create_user(env: Mapping[str, str], name: str, *, admin: bool = False) -> str:
    """Create a user and its first key in the deployment's database as ``flask users
    create`` does (its own tests run the command), in this process rather than in a CLI
    process of 3 to 4 s per deployment; returns the key."""
    engine = sa.create_engine(normalize_database_url(env["DATABASE_URL"]))
    try:
        with Session(engine) as session, session.begin():
            return add_user(session, name, admin=admin).secret
    finally:
        engine.dispose()


def wait_until(predicate: Callable[[], object], timeout: float = 30.0) -> bool:
    """Whether ``predicate`` came true within ``timeout`` seconds (polled every 0.1 s): for
    what a deployment does after the response a test read."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def deployment_env(database_url: str, llm_base_url: str, **settings: str) -> dict[str, str]:
    """A test deployment's environment: two workers, the fake LLM, no client retries, quiet."""
    return {
        "DATABASE_URL": database_url,
        "OPENAI_BASE_URL": llm_base_url,
        "OPENAI_API_KEY": "test-key",
        "OPENAI_MAX_RETRIES": "0",
        "WEB_CONCURRENCY": "2",
        "GUNICORN_ACCESS_LOG": "",
        # One user drives hundreds of streams here; tests of limits turn them back on.
        "RATELIMIT_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
        **settings,
    }


class WebProcess:
    """The Procfile's web process on a free loopback port; ``stop()`` sends SIGTERM."""

    def __init__(self, env: Mapping[str, str], log_path: Path, app: str = "wsgi:app") -> None:
        """``app``: the WSGI app to serve in place of the Procfile's (benchmark baselines)."""
        self.app = app
        self.port = free_port()
        self.env = _env({"PORT": str(self.port), **env})
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        # Headers a test sends with every request it makes through this process (its API key).
        self.headers: dict[str, str] = {}

    def start(self, timeout: float = 120) -> WebProcess:
        # Generous: a loaded 2-core machine (CI, other suites) can take long to boot workers.
        # The Procfile binds every interface for a PaaS; tests only ever talk to loopback.
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            ["bash", "-c", f"exec {procfile_command('web').replace('wsgi:app', self.app)}"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log_path.read_text()[-3000:]}")
            try:
                if self.get("/readyz")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn never became ready: {self.log_path.read_text()[-3000:]}")

    def connection(self, timeout: float = 60) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def get(self, path: str) -> tuple[int, bytes]:
        """A GET without the process's headers (probes)."""
        connection = self.connection(timeout=5)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def request(
        self, method: str, path: str, payload: object = None, timeout: float = 60
    ) -> tuple[int, bytes]:
        """One request with the process's headers, and ``payload`` as a JSON body if given."""
        headers = dict(self.headers)
        body = None
        if payload is not None:
            body = json.dumps(payload)
            headers["Content-Type"] = "application/json"
        connection = self.connection(timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def create_conversation(self, title: str = "e2e") -> int:
        """POST a conversation; returns its id."""
        status, body = self.request("POST", "/conversations", {"title": title})
        assert status == 201, body
        return json.loads(body)["id"]

    def workers(self) -> list[int]:
        """The pids of gunicorn's workers (the master's children)."""
        assert self.process is not None
        master = self.process.pid
        return [
            int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()
        ]

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (graceful shutdown), then wait; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait()

    def __enter__(self) -> WebProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
