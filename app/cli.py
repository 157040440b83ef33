"""``flask`` commands beyond Flask-Migrate's ``flask db``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from app.errors import DomainError
from app.models import USER_NAME_MAX
from app.services import users as users_service
from app.services.auth import NewKey
from app.services.persistence import recover_spooled
from app.services.reaper import reap_interrupted
from app.services.usage import rebuild_usage

T = TypeVar("T")

messages = AppGroup("messages", help="Maintain stored exchanges.")
users = AppGroup("users", help="Manage users.")
keys = AppGroup("keys", help="Manage API keys.")
usage = AppGroup("usage", help="Maintain the daily usage rollups.")


def _run(action: Callable[[], T]) -> T:
    """Run a service call; its domain errors become a one-line error and exit status 1."""
    try:
        return action()
    except DomainError as error:
        raise click.ClickException(error.message) from error


def _print_key(key: NewKey, who: str) -> None:
    # The key itself last and alone, so scripts can take it with `tail -n 1`.
    click.echo(f"API key {key.prefix} for {who}; it is shown only this once:")
    click.echo(key.secret)


def _check_name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if not value.strip() or len(value) > USER_NAME_MAX or any(c.isspace() for c in value):
        raise click.BadParameter(f"1 to {USER_NAME_MAX} characters, no spaces")
    return value


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
    """Write exchanges spooled during a database outage back to their rows."""
    written, kept = recover_spooled(current_app._get_current_object())  # type: ignore[attr-defined]
    click.echo(f"recovered {written} exchange(s); {kept} still waiting for the database")
    if kept:
        raise SystemExit(1)


@users.command("create")
@click.argument("name", callback=_check_name)
@click.option("--admin", is_flag=True, help="Give the user the admin role.")
def create_user(name: str, admin: bool) -> None:
    """Create a user and their first API key (printed last, alone on its line)."""
    key = _run(lambda: users_service.create_user(name, admin=admin))
    click.echo(f"created {'admin' if admin else 'user'} {name}")
    _print_key(key, name)


@users.command("list")
def list_users() -> None:
    """List users, their role, and the prefixes of their unrevoked keys."""
    for user in users_service.list_users():
        state = "" if user.is_active else " (inactive)"
        prefixes = ", ".join(user.key_prefixes) or "no keys"
        click.echo(f"{user.name}\t{user.role}{state}\t{prefixes}")


@users.command("create-first")
def create_first_user() -> None:
    """For development: in an empty database, create an admin named dev and print its key."""
    key = users_service.create_first_user()
    if key is None:
        click.echo("users exist already; `flask keys create NAME` gives one another key")
        return
    _print_key(key, users_service.DEV_USER)


@keys.command("create")
@click.argument("name", callback=_check_name)
def create_key(name: str) -> None:
    """Give user NAME another API key (printed last, alone on its line)."""
    _print_key(_run(lambda: users_service.create_key(name)), name)


@keys.command("revoke")
@click.argument("prefix")
def revoke_key(prefix: str) -> None:
    """Revoke the API key that starts with PREFIX (as `flask users list` shows it)."""
    _run(lambda: users_service.revoke_key(prefix))
    seconds = current_app.config["AUTH_CACHE_SECONDS"]
    click.echo(f"revoked {prefix}; running servers stop accepting it within {seconds:g}s")


@usage.command("rebuild")
def rebuild() -> None:
    """Recompute the exchange rollups from the stored messages (title usage is kept)."""
    rows = rebuild_usage()
    click.echo(f"rebuilt the usage rollups: {rows} row(s) from the stored exchanges")


def register_cli(app: Flask) -> None:
    """Attach the project's CLI command groups to ``app``."""
    for group in (messages, users, keys, usage):
        app.cli.add_command(group)
