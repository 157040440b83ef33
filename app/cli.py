"""``flask`` commands beyond Flask-Migrate's ``flask db``."""

from __future__ import annotations

from flask import Flask


def register_cli(app: Flask) -> None:
    """Attach the project's CLI command groups to ``app``."""
