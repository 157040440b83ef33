"""``flask`` commands beyond Flask-Migrate's ``flask db``."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from app.services.reaper import reap_interrupted

messages = AppGroup("messages", help="Maintain stored exchanges.")


@messages.command("reap")
@click.option(
    "--older-than",
    type=click.IntRange(min=0),
    default=None,
    help="Seconds an exchange may stay in progress (default: REAP_AFTER_SECONDS).",
)
def reap(older_than: int | None) -> None:
    """Mark exchanges left in progress by a killed worker as interrupted."""
    seconds = current_app.config["REAP_AFTER_SECONDS"] if older_than is None else older_than
    count = reap_interrupted(seconds)
    click.echo(f"marked {count} interrupted exchange(s) in progress for over {seconds}s")


def register_cli(app: Flask) -> None:
    """Attach the project's CLI command groups to ``app``."""
    app.cli.add_command(messages)
