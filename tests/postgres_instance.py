"""A throwaway PostgreSQL server of a test's own, which the test may restart at will.

The machine's shared server (TEST_DATABASE_URL) is used by other test runs at the same time,
so a test that restarts its database needs a server nobody else talks to: ``initdb`` into a
temporary directory, listen on a free loopback port (and a unix socket in that directory),
trust authentication, no fsync. initdb refuses to run as root, so as root every command runs
as the ``postgres`` OS user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.procfile import free_port

OS_USER = "postgres"


class PostgresUnavailable(Exception):
    """No PostgreSQL binaries (or no OS user to run them as) on this machine."""


def find_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding initdb and pg_ctl."""
    candidates = [
        Path(path).parent
        for path in glob.glob("/usr/lib/postgresql/*/bin/initdb")
        if (Path(path).parent / "pg_ctl").exists()
    ]

    def version(bin_dir: Path) -> tuple[int, ...]:
        name = bin_dir.parent.name
        return tuple(int(part) for part in name.split(".") if part.isdigit())

    if not candidates:
        raise PostgresUnavailable(
            "no PostgreSQL server binaries: /usr/lib/postgresql/*/bin/initdb not found "
            "(install the postgresql package)"
        )
    return max(candidates, key=version)


class PostgresInstance:
    """``start()`` initialises and starts the server; ``close()`` stops it and deletes it."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = 0
        self.base_dir: Path | None = None
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam(OS_USER)
            except KeyError:
                raise PostgresUnavailable(
                    f"running as root and there is no {OS_USER!r} OS user to run initdb as"
                ) from None
            if shutil.which("runuser") is None:
                raise PostgresUnavailable("running as root and runuser (util-linux) is missing")
            self._uid, self._gid = account.pw_uid, account.pw_gid
            self._as_user = ["runuser", "-u", OS_USER, "--"]

    @property
    def data_dir(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir / "data"

    @property
    def log_path(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir / "server.log"

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the ``postgres`` database as the ``postgres`` role."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        command = [*self._as_user, str(self.bin_dir / tool), *args]
        done = subprocess.run(
            command, cwd=self.base_dir, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            log = self.log_path.read_text() if self.log_path.exists() else ""
            raise RuntimeError(
                f"{tool} {' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stdout}{done.stderr}\nserver log:\n{log[-3000:]}"
            )

    def start(self) -> PostgresInstance:
        # Not under pytest's tmp_path: its parents are root-only, the server runs as postgres.
        self.base_dir = Path(tempfile.mkdtemp(prefix="convstore-pg-"))
        if self._as_user:
            os.chown(self.base_dir, self._uid, self._gid)
        self._run(
            "initdb",
            "--pgdata",
            str(self.data_dir),
            "--username",
            "postgres",
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-sync",
        )
        self.port = free_port()
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.base_dir}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "'32MB'",
            "max_connections": "200",
        }
        # In postgresql.conf, so that `pg_ctl restart` keeps them.
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
        self._pg_ctl("start")
        return self

    def _pg_ctl(self, action: str, *options: str) -> None:
        self._run(
            "pg_ctl",
            action,
            "--pgdata",
            str(self.data_dir),
            "--log",
            str(self.log_path),
            "--wait",
            "--timeout",
            "30",
            *options,
        )

    def restart(self) -> None:
        """Restart the server, disconnecting every client; returns once it accepts again."""
        self._pg_ctl("restart", "--mode", "fast")

    def close(self) -> None:
        """Stop the server (if it runs) and delete its files."""
        if self.base_dir is None:
            return
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._pg_ctl("stop", "--mode", "immediate")
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    def __enter__(self) -> PostgresInstance:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()
