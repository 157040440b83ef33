"""Run the Procfile's process types as a deployment would: release, then web under gunicorn."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

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
    """Run the release step (migrations)."""
    subprocess.run(
        ["bash", "-c", procfile_command("release")],
        cwd=ROOT,
        env=_env(env),
        check=True,
        capture_output=True,
        timeout=120,
    )


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
    """Create a user with ``flask users create`` and return its API key (the last line)."""
    output = flask_command(env, "users", "create", name, *(["--admin"] if admin else []))
    return output.strip().splitlines()[-1]


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
