"""``flask usage``: maintain the daily usage rollups."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from app.services.usage import rebuild_usage

usage = AppGroup("usage", help="Maintain the daily usage rollups.")


@usage.command("rebuild")
def rebuild() -> None:
    """Recompute the exchange rollups from the stored messages and the usage deleted ones
    carried (title usage is kept)."""
    rows = rebuild_usage()
    click.echo(f"rebuilt the usage rollups: {rows} row(s) from the stored exchanges")
