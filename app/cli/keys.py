"""``flask keys``: create, list and revoke API keys."""

from __future__ import annotations

from datetime import timedelta

import click
from flask import current_app
from flask.cli import AppGroup

from app.cli.common import Duration, check_name, print_key, run_service, when
from app.models import utcnow
from app.services import users as users_service

keys = AppGroup("keys", help="Manage API keys.")


@keys.command("create")
@click.argument("name", callback=check_name)
@click.option(
    "--expires-in",
    type=Duration(),
    default=None,
    help="Lifetime of the key, e.g. 90d, 12h, 2w (default: it never expires).",
)
@click.option(
    "--no-store",
    is_flag=True,
    help="Exchanges made with the key are recorded and accounted, but none of their text.",
)
def create_key(name: str, expires_in: timedelta | None, no_store: bool) -> None:
    """Give user NAME another API key (printed last, alone on its line)."""
    key = run_service(lambda: users_service.create_key(name, expires_in, no_store))
    if no_store:
        click.echo("a no-store key: no prompt or answer made with it is stored")
    print_key(key, name)


@keys.command("list")
@click.argument("name", callback=check_name)
def list_keys(name: str) -> None:
    """List the keys of user NAME: prefix, state, created, last used, expires (UTC), and
    whether the text of its exchanges is stored (store: yes, or no for a no-store key)."""
    summaries = run_service(lambda: users_service.list_keys(name))
    if not summaries:
        click.echo(f"{name} has no keys")
        return
    now = utcnow()
    click.echo("prefix\tstate\tcreated\tlast used\texpires\tstore")
    for key in summaries:
        fields = (key.created_at, key.last_used_at, key.expires_at)
        store = "no" if key.no_store else "yes"
        click.echo("\t".join([key.prefix, key.state(now), *(when(f) for f in fields), store]))


@keys.command("revoke")
@click.argument("prefix")
def revoke_key(prefix: str) -> None:
    """Revoke the API key that starts with PREFIX (as `flask users list` shows it)."""
    run_service(lambda: users_service.revoke_key(prefix))
    seconds = current_app.config["AUTH_CACHE_SECONDS"]
    click.echo(f"revoked {prefix}; running servers stop accepting it within {seconds:g}s")
