"""``flask users``: create, list, limit, deactivate, activate, export and erase users."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from pathlib import Path
from time import sleep
from typing import IO, Any

import click
from flask import current_app
from flask.cli import AppGroup

from app.cli.common import check_name, print_key, run_service
from app.config import RETENTION_DAYS_MAX
from app.services import erasure
from app.services import users as users_service

users = AppGroup("users", help="Manage users.")


@users.command("create")
@click.argument("name", callback=check_name)
@click.option("--admin", is_flag=True, help="Give the user the admin role.")
def create_user(name: str, admin: bool) -> None:
    """Create a user and their first API key (printed last, alone on its line)."""
    key = run_service(lambda: users_service.create_user(name, admin=admin))
    click.echo(f"created {'admin' if admin else 'user'} {name}")
    print_key(key, name)


@users.command("list")
def list_users() -> None:
    """List users, their role, the prefixes of their unrevoked keys, how long their
    conversations are kept, and their limits."""
    for user in users_service.list_users():
        state = "" if user.is_active else " (inactive)"
        prefixes = ", ".join(user.key_prefixes) or "no keys"
        retention = _retention_text(user.retention_days)
        limits = _limits_text(user.rpm_limit, user.daily_token_budget)
        click.echo(f"{user.name}\t{user.role}{state}\t{prefixes}\t{retention}\t{limits}")


def _limits_text(rpm: int | None, tokens_per_day: int | None) -> str:
    config = current_app.config
    rpm_text = f"{rpm}/minute" if rpm else f"{config['RATE_LIMIT_GENERATION']} (default)"
    budget = tokens_per_day or config["TOKEN_BUDGET_DAILY"]
    budget_text = f"{budget} tokens/day" if budget else "no token budget"
    return f"generation {rpm_text}, {budget_text}{'' if tokens_per_day else ' (default)'}"


def _retention_text(days: int | None) -> str:
    if days is not None:
        return f"conversations kept {days} days"
    default = current_app.config["RETENTION_DAYS"]
    kept = f"{default} days" if default else "forever"
    return f"conversations kept {kept} (default)"


class RetentionDays(click.ParamType):
    """Days a user's inactive conversations are kept, or ``none`` (the setting applies)."""

    name = "days|none"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> int | users_service.Keep | None:
        if value is None or isinstance(value, int | users_service.Keep):
            return value
        if str(value).strip().lower() == "none":
            return None
        try:
            days = int(value)
        except ValueError:
            days = 0
        if not 1 <= days <= RETENTION_DAYS_MAX:
            maximum = RETENTION_DAYS_MAX
            self.fail(f"{value!r} is not a number of days from 1 to {maximum}, or none")
        return days


@users.command("limits")
@click.argument("name", callback=check_name)
@click.option("--rpm", type=click.IntRange(min=1), help="Generation requests a minute.")
@click.option("--tokens-per-day", type=click.IntRange(min=1), help="Daily token budget.")
@click.option(
    "--retention-days",
    type=RetentionDays(),
    default=users_service.Keep.KEEP,
    help="Days their inactive conversations are kept (RETENTION_DAYS for them); none: the "
    "setting applies.",
)
@click.option("--clear", is_flag=True, help="Back to the service-wide settings first.")
def set_limits(
    name: str,
    rpm: int | None,
    tokens_per_day: int | None,
    retention_days: int | users_service.Keep | None,
    clear: bool,
) -> None:
    """Set user NAME's own rate limit, daily token budget and retention (or --clear them)."""
    keep = retention_days is users_service.Keep.KEEP
    if rpm is None and tokens_per_day is None and keep and not clear:
        raise click.UsageError("give --rpm, --tokens-per-day, --retention-days or --clear")
    now = run_service(
        lambda: users_service.set_limits(
            name,
            rpm=rpm,
            tokens_per_day=tokens_per_day,
            clear=clear,
            retention_days=retention_days,
        )
    )
    seconds = current_app.config["AUTH_CACHE_SECONDS"]
    rpm_now, budget_now, retention_now = now
    click.echo(
        f"{name}: {_limits_text(rpm_now, budget_now)}; {_retention_text(retention_now)}; "
        f"running servers apply the limits within {seconds:g}s, the retention at the next "
        "purge"
    )


@users.command("create-first")
def create_first_user() -> None:
    """For development: in an empty database, create an admin named dev and print its key."""
    key = users_service.create_first_user()
    if key is None:
        click.echo("users exist already; `flask keys create NAME` gives one another key")
        return
    print_key(key, users_service.DEV_USER)


@users.command("deactivate")
@click.argument("name", callback=check_name)
def deactivate_user(name: str) -> None:
    """Refuse every key of user NAME (their conversations are kept)."""
    changed = run_service(lambda: users_service.set_active(name, False))
    if not changed:
        click.echo(f"{name} is already inactive")
        return
    seconds = current_app.config["AUTH_CACHE_SECONDS"]
    click.echo(f"deactivated {name}; running servers refuse their keys within {seconds:g}s")


@users.command("activate")
@click.argument("name", callback=check_name)
def activate_user(name: str) -> None:
    """Accept the unrevoked, unexpired keys of user NAME again."""
    changed = run_service(lambda: users_service.set_active(name, True))
    click.echo(f"activated {name}" if changed else f"{name} is already active")


# ---------------------------------------------------------------- erasure of a person
@users.command("erase")
@click.argument("name", callback=check_name)
@click.option(
    "--keep-usage",
    is_flag=True,
    help="Keep their daily token counts, under owner 0 (erased users) instead of theirs.",
)
def erase_user(name: str, keep_usage: bool) -> None:
    """Delete everything of user NAME (conversations, exchanges, feedback, API keys), then
    NAME; their usage too unless --keep-usage. `flask users export` first keeps a copy."""

    def wait(seconds: float) -> None:
        click.echo(
            f"waiting {math.ceil(seconds)}s for running servers to stop accepting {name}'s "
            "keys (AUTH_CACHE_SECONDS)"
        )
        sleep(seconds)

    done = run_service(lambda: erasure.erase_user(name, keep_usage=keep_usage, wait=wait))
    usage = "usage kept as owner 0 (erased users)" if done.usage_kept else "usage deleted"
    click.echo(
        f"erased {name}: {done.conversations} conversation(s) with their exchanges and "
        f"feedback, {done.keys} API key(s); {usage}"
    )


@users.command("export")
@click.argument("name", callback=check_name)
@click.argument("file", type=click.Path(dir_okay=False, writable=True, allow_dash=True))
def export_user(name: str, file: str) -> None:
    """Write every conversation of user NAME, with its messages and feedback, to FILE (- for
    standard output) as GET /export does (NDJSON; `flask conversations import` takes it)."""
    chunks = run_service(lambda: erasure.export_user(name))
    if file == "-":
        counts = _write(chunks, sys.stdout)
    else:
        # Written aside and renamed once whole: FILE is never a partial export.
        target = Path(file)
        partial = target.with_name(f".{target.name}.partial")
        try:
            with partial.open("w", encoding="utf-8") as out:
                counts = _write(chunks, out)
            partial.replace(target)
        except OSError as error:
            raise click.ClickException(f"cannot write {file}: {error.strerror}") from error
        finally:
            partial.unlink(missing_ok=True)
    click.echo(
        f"exported {name}: {counts[0]} conversation(s), {counts[1]} message(s) to {file}",
        err=file == "-",
    )


def _write(chunks: Iterator[str], out: IO[str]) -> tuple[int, int]:
    """Write the NDJSON lines; returns how many conversations and messages they held."""
    conversations = messages = 0
    for line in chunks:
        out.write(line)
        if line.startswith('{"type": "conversation"'):
            conversations += 1
        else:
            messages += 1
    return conversations, messages
