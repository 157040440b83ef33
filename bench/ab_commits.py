"""A/B across two checkouts: each in a worker process of its own, alternated round by round.

    .venv/bin/python -m bench.ab_commits --a 1d0c947 --b . --target text --rounds 20

``--a`` and ``--b`` each name a checkout's directory or a git commit (checked out for the run
in a temporary worktree). Each worker imports that checkout's app, on a database of its own
migrated by that checkout's release step, and sends ``--per-round`` requests of the target
(as ``bench.ab`` sends them) per round, each timed in thread CPU time; the rounds go A B,
B A, A B... so that the VM's drift falls on both alike. Prints the median CPU per request of
each and B/A, then B/A round by round (their median, min and max): the method's noise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.ab_targets import TARGETS, ab_env  # noqa: E402
from bench.common import create_database, drop_database, start_fake_llm  # noqa: E402
from tests.procfile import BIN, free_port  # noqa: E402


def git(*args: str, cwd: Path = ROOT) -> str:
    done = subprocess.run(
        ["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def checkout(spec: str, stack: contextlib.ExitStack) -> tuple[Path, str]:
    """The directory ``spec`` names, or a temporary worktree of the commit it names (removed
    when ``stack`` closes); and a label for it."""
    if Path(spec).is_dir():
        root = Path(spec).resolve()
        try:
            return root, f"{spec} ({git('describe', '--always', '--dirty', cwd=root)})"
        except subprocess.CalledProcessError:
            return root, spec
    try:
        commit = git("rev-parse", "--verify", f"{spec}^{{commit}}")
    except subprocess.CalledProcessError:
        raise SystemExit(f"{spec}: neither a directory nor a commit") from None
    parent = Path(tempfile.mkdtemp(prefix="convstore-ab-"))
    root = parent / "checkout"
    git("worktree", "add", "--detach", str(root), commit)

    def remove() -> None:
        git("worktree", "remove", "--force", str(root))
        shutil.rmtree(parent, ignore_errors=True)

    stack.callback(remove)
    return root, f"{spec} ({commit[:9]})"


def release_in(root: Path, env: Mapping[str, str]) -> None:
    """Run ``root``'s own release step (its Procfile's, with its migrations) on the database
    ``env`` names."""
    for line in (root / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == "release":
            break
    else:
        raise SystemExit(f"{root}/Procfile has no release step")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GUNICORN_", "FLASK_"))}
    subprocess.run(
        ["bash", "-c", command.strip()],
        cwd=root,
        env={
            **base,
            **env,
            "PATH": f"{BIN}{os.pathsep}{base.get('PATH', '')}",
            "PYTHONPATH": str(root),
        },
        check=True,
        capture_output=True,
        timeout=300,
    )


class Worker:
    """A worker process (bench/ab_worker.py) serving one checkout's app on its own database."""

    def __init__(self, root: Path, target: str, llm_port: int, stack: contextlib.ExitStack):
        self.url = create_database("postgresql")
        stack.callback(drop_database, self.url)
        env = ab_env(self.url, llm_port)
        release_in(root, env)
        script = ROOT / "bench" / "ab_worker.py"
        self.process = subprocess.Popen(
            [sys.executable, str(script), "--root", str(root), "--target", target],
            cwd=root,
            env={**os.environ, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        stack.callback(self.stop)

    def receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"a worker exited ({self.process.wait()}): see its stderr above")
        return json.loads(line)

    def run(self, requests: int) -> list[float]:
        """Each request's CPU time, in seconds."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"{requests}\n")
        self.process.stdin.flush()
        return self.receive()["cpu"]

    def stop(self) -> None:
        assert self.process.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="a checkout's directory, or a commit")
    parser.add_argument("--b", required=True, help="a checkout's directory, or a commit")
    parser.add_argument("--target", choices=TARGETS, default="text")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--per-round", type=int, default=20, help="requests per version")
    parser.add_argument("--warmup", type=int, default=30, help="requests per version")
    parser.add_argument("--tokens", type=int, default=20)
    args = parser.parse_args(argv)

    with contextlib.ExitStack() as stack:
        (root_a, label_a), (root_b, label_b) = (checkout(s, stack) for s in (args.a, args.b))
        llm_port = free_port()
        llm = start_fake_llm(llm_port, args.tokens, 0)
        stack.callback(llm.terminate)
        roots = {"A": root_a, "B": root_b}
        workers = {v: Worker(roots[v], args.target, llm_port, stack) for v in "AB"}
        for worker in workers.values():
            worker.receive()  # ready
        for version in "AB":
            workers[version].run(args.warmup)
        times: dict[str, list[float]] = {"A": [], "B": []}
        ratios = []
        for n in range(args.rounds):
            medians = {}
            for version in "AB" if n % 2 == 0 else "BA":
                batch = workers[version].run(args.per_round)
                times[version] += batch
                medians[version] = statistics.median(batch)
            ratios.append(medians["B"] / medians["A"])

    a, b = (statistics.median(times[v]) * 1000 for v in "AB")
    print(
        f"A {label_a}, B {label_b}, {args.target}, {args.tokens} tokens, "
        f"{args.rounds * args.per_round} requests each: CPU per request median A {a:.3f} ms, "
        f"B {b:.3f} ms, B/A {b / a:.3f}"
    )
    print(
        f"B/A of each round's medians ({args.rounds} rounds of {args.per_round}): "
        f"median {statistics.median(ratios):.3f}, min {min(ratios):.3f}, max {max(ratios):.3f}"
    )


if __name__ == "__main__":
    main()
