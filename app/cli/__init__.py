"""The ``flask`` commands beyond Flask-Migrate's ``flask db``, one module per group.

Commands parse their arguments and call services; they may import services, schemas, models
and the leaf modules, and only the app factory imports them (pyproject.toml's import-linter
contracts).
"""

from __future__ import annotations

from flask import Flask

from app.cli.conversations import conversations
from app.cli.keys import keys
from app.cli.messages import messages
from app.cli.usage import usage
from app.cli.users import users


def register_cli(app: Flask) -> None:
    """Attach the project's CLI command groups to ``app``."""
    for group in (messages, users, keys, conversations, usage):
        app.cli.add_command(group)
