"""``flask`` commands beyond Flask-Migrate's ``flask db``."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from app.cli_conversations import conversations
from app.errors import DomainError
from app.models import USER_NAME_MAX, utcnow
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
    expiry = "" if key.expires_at is None else f", expires {_when(key.expires_at)}"
    click.echo(f"API key {key.prefix} for {who}{expiry}; it is shown only this once:")
    click.echo(key.secret)


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_DURATION = re.compile(r"([1-9][0-9]{0,5})([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class Duration(click.ParamType):
    """A lifetime such as 30m, 12h, 90d or 2w."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        match = _DURATION.fullmatch(str(value).strip())
        if match is None:
            self.fail(f"{value!r} is not a duration like 30m, 12h, 90d or 2w", param, ctx)
        return timedelta(**{_UNITS[match[2]]: int(match[1])})


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
    """List users, their role, the prefixes of their unrevoked keys, and their limits."""
    for user in users_service.list_users():
        state = "" if user.is_active else " (inactive)"
        prefixes = ", ".join(user.key_prefixes) or "no keys"
        limits = _limits_text(user.rpm_limit, user.daily_token_budget)
        click.echo(f"{user.name}\t{user.role}{state}\t{prefixes}\t{limits}")


def _limits_text(rpm: int | None, tokens_per_day: int | None) -> str:
    config = current_app.config
    rpm_text = f"{rpm}/minute" if rpm else f"{config['RATE_LIMIT_GENERATION']} (default)"
    budget = tokens_per_day or config["TOKEN_BUDGET_DAILY"]
    budget_text = f"{budget} tokens/day" if budget else "no token budget"
    return f"generation {rpm_text}, {budget_text}{'' if tokens_per_day else ' (default)'}"


@users.command("limits")
@click.argument("name", callback=_check_name)
@click.option("--rpm", type=click.IntRange(min=1), help="Generation requests a minute.")
@click.option("--tokens-per-day", type=click.IntRange(min=1), help="Daily token budget.")
@click.option("--clear", is_flag=True, help="Back to the service-wide settings first.")
def set_limits(name: str, rpm: int | None, tokens_per_day: int | None, clear: bool) -> None:
    """Set user NAME's own rate limit and daily token budget (or --clear them)."""
    if rpm is None and tokens_per_day is None and not clear:
        raise click.UsageError("give --rpm, --tokens-per-day or --clear")
    now = _run(
        lambda: users_service.set_limits(name, rpm=rpm, tokens_per_day=tokens_per_day, clear=clear)
    )
    seconds = current_app.config["AUTH_CACHE_SECONDS"]
    click.echo(f"{name}: {_limits_text(*now)}; running servers apply it within {seconds:g}s")


@users.command("create-first")
def create_first_user() -> None:
    """For development: in an empty database, create an admin named dev and print its key."""
    key = users_service.create_first_user()
    if key is None:
        click.echo("users exist already; `flask keys create NAME` gives one another key")
        return
    _print_key(key, users_service.DEV_USER)


@users.command("deactivate")
@click.argument("name", callback=_check_name)
def deactivate_user(name: str) -> None:
    """Refuse every key of user NAME (their conversations are kept)."""
    changed = _run(lambda: users_service.set_active(name, False))
    if not changed:
        click.echo(f"{name} is already inactive")
        return
    seconds = current_app.config["AUTH_CACHE_SECONDS"]
    click.echo(f"deactivated {name}; running servers refuse their keys within {seconds:g}s")


@users.command("activate")
@click.argument("name", callback=_check_name)
def activate_user(name: str) -> None:
    """Accept the unrevoked, unexpired keys of user NAME again."""
    changed = _run(lambda: users_service.set_active(name, True))
    click.echo(f"activated {name}" if changed else f"{name} is already active")


@keys.command("create")
@click.argument("name", callback=_check_name)
@click.option(
    "--expires-in",
    type=Duration(),
    default=None,
    help="Lifetime of the key, e.g. 90d, 12h, 2w (default: it never expires).",
)
def create_key(name: str, expires_in: timedelta | None) -> None:
    """Give user NAME another API key (printed last, alone on its line)."""
    _print_key(_run(lambda: users_service.create_key(name, expires_in)), name)


@keys.command("list")
@click.argument("name", callback=_check_name)
def list_keys(name: str) -> None:
    """List the keys of user NAME: prefix, state, created, last used, expires (UTC)."""
    summaries = _run(lambda: users_service.list_keys(name))
    if not summaries:
        click.echo(f"{name} has no keys")
        return
    now = utcnow()
    click.echo("prefix\tstate\tcreated\tlast used\texpires")
    for key in summaries:
        fields = (key.created_at, key.last_used_at, key.expires_at)
        click.echo("\t".join([key.prefix, key.state(now), *(_when(f) for f in fields)]))


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
    for group in (messages, users, keys, conversations, usage):
        app.cli.add_command(group)
