"""What the command groups share: running a service call, names, durations, keys."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import click

from app.errors import DomainError
from app.models import USER_NAME_MAX
from app.services.auth import NewKey

T = TypeVar("T")


def run_service(action: Callable[[], T]) -> T:
    """Run a service call; its domain errors become a one-line error and exit status 1."""
    try:
        return action()
    except DomainError as error:
        raise click.ClickException(error.message) from error


def print_key(key: NewKey, who: str) -> None:
    # The key itself last and alone, so scripts can take it with `tail -n 1`.
    expiry = "" if key.expires_at is None else f", expires {when(key.expires_at)}"
    click.echo(f"API key {key.prefix} for {who}{expiry}; it is shown only this once:")
    click.echo(key.secret)


def when(moment: datetime | None) -> str:
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


def check_name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if not value.strip() or len(value) > USER_NAME_MAX or any(c.isspace() for c in value):
        raise click.BadParameter(f"1 to {USER_NAME_MAX} characters, no spaces")
    return value
