"""``flask messages``: end exchanges whose worker died, write back spooled endings."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from app.services.persistence import SpoolRefused, recover_spooled
from app.services.reaper import reap_interrupted

messages = AppGroup("messages", help="Maintain stored exchanges.")


@messages.command("reap")
@click.option(
    "--older-than",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds since an exchange's last heartbeat (default: REAP_AFTER_SECONDS).",
)
def reap(older_than: float | None) -> None:
    """End exchanges whose worker died mid-stream (stale heartbeat) as interrupted."""
    seconds = current_app.config["REAP_AFTER_SECONDS"] if older_than is None else older_than
    count = reap_interrupted(seconds)
    click.echo(f"marked {count} interrupted exchange(s) with no heartbeat for {seconds:g}s")


@messages.command("recover")
def recover() -> None:
    """Write records spooled during a database outage (exchange endings, titles) back;
    safe while the service runs. Exits 1 if some had to be kept for a later run."""
    try:
        written, kept = recover_spooled(current_app._get_current_object())  # type: ignore[attr-defined]
    except SpoolRefused as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"recovered {written} record(s); {kept} kept in the spool for a later run")
    if kept:
        raise SystemExit(1)
