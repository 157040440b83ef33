"""One side of ``bench.ab_commits``: a checkout's app in-process, timing batches of requests.

Run by path from the checkout that holds this file (the measured one may predate it):

    python bench/ab_worker.py --root CHECKOUT --target text

with the environment of ``bench.ab_targets.ab_env`` on a migrated database. Reads a count per
line on stdin, sends that many requests, and answers one JSON line, ``{"cpu": [seconds, ...]}``
(each request's thread CPU time), on the stdout it started with; anything else the app
prints goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

HERE = Path(__file__).resolve().parent.parent


def import_paths(root: Path) -> None:
    """This checkout's bench modules first, then ``root`` alone in front, for ``app``."""
    ours = {str(HERE), str(HERE / "bench")}
    sys.path[:] = [str(HERE)] + [p for p in sys.path if p and str(Path(p).resolve()) not in ours]
    import bench.ab_targets  # noqa: F401  (loaded now, while ``bench`` is this checkout's)

    sys.path[0] = str(root)


def reply(channel: TextIO, message: dict[str, Any]) -> None:
    channel.write(json.dumps(message) + "\n")
    channel.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="the checkout to measure")
    parser.add_argument("--target", required=True)
    args = parser.parse_args()
    root: Path = args.root.resolve()
    # The replies get a descriptor of their own, so the app's prints cannot corrupt them.
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    import_paths(root)
    import app
    from app import create_app
    from bench.ab_targets import create_target_data, drain, request_functions

    if not Path(app.__file__).resolve().is_relative_to(root):
        raise SystemExit(f"app imported from {app.__file__}, not from {root}")
    flask_app = create_app()
    # The checkout's own CLI makes the user, so its key is hashed and stored as that code does.
    created = flask_app.test_cli_runner().invoke(args=["users", "create", "bench"])
    if created.exit_code != 0:
        raise SystemExit(f"flask users create failed: {created.output}") from created.exception
    key = created.output.strip().splitlines()[-1]
    conversation_id = create_target_data(os.environ["DATABASE_URL"], args.target)
    send = request_functions(flask_app.test_client(), key, conversation_id)[args.target]
    reply(channel, {"ready": True, "app": app.__file__})

    n = 0
    for line in sys.stdin:
        times = []
        for _ in range(int(line)):
            started = time.thread_time()
            response = send(n)
            drain(response)
            times.append(time.thread_time() - started)
            if response.status_code >= 400:  # a refusal would be timed as a fast request
                raise SystemExit(f"request {n} answered {response.status_code}")
            n += 1
        reply(channel, {"cpu": times})


if __name__ == "__main__":
    main()
