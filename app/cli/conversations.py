"""``flask conversations``: move conversations between instances, purge expired ones."""

from __future__ import annotations

import json
from typing import IO, Any

import click
from flask.cli import AppGroup
from marshmallow import ValidationError

from app.errors import DomainError
from app.schemas import json_text
from app.schemas.export import ExportDocument
from app.services import imports
from app.services.purge import purge_expired

conversations = AppGroup("conversations", help="Import conversations, purge expired ones.")


def read_export(file: IO[str]) -> Any:
    """A JSON export, or an NDJSON one (however many lines) regrouped into the JSON form."""
    text = file.read()
    try:
        document = json_text.loads(text)
    except json_text.UnsupportedJSON as error:
        raise click.ClickException(f"not a valid export: {error.reason}") from error
    except json.JSONDecodeError:
        pass
    else:
        # One line of NDJSON is a JSON document too: a conversation record, not an export.
        if not (isinstance(document, dict) and "type" in document):
            return document
    grouped: list[dict[str, Any]] = []
    try:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            record = json_text.loads(line)
            kind = record.pop("type", None) if isinstance(record, dict) else None
            if kind == "conversation":
                grouped.append({**record, "messages": []})
            elif kind == "message" and grouped:
                record.pop("conversation_id", None)
                grouped[-1]["messages"].append(record)
            else:
                raise click.ClickException(f"line {number}: not a conversation or a message")
    except json_text.UnsupportedJSON as error:
        raise click.ClickException(f"not a valid export: {error.reason}") from error
    except json.JSONDecodeError as error:
        raise click.ClickException(f"neither JSON nor NDJSON: {error}") from error
    return {"format": "convstore", "version": 1, "conversations": grouped}


@conversations.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--user", "user", required=True, help="Who the conversations will belong to.")
def import_conversations(file: IO[str], user: str) -> None:
    """Import an export (JSON or NDJSON) as USER's conversations: new ids, same times."""
    try:
        document = ExportDocument().load(read_export(file))
    except ValidationError as error:
        raise click.ClickException(f"not a valid export: {json.dumps(error.messages)}") from error
    try:
        done = imports.import_for_user(user, document["conversations"])
    except DomainError as error:
        raise click.ClickException(error.message) from error
    messages = sum(item.messages for item in done)
    click.echo(f"imported {len(done)} conversation(s) and {messages} message(s) for {user}")


@conversations.command("purge")
@click.option("--dry-run", is_flag=True, help="Only list what a pass would delete.")
def purge(dry_run: bool) -> None:
    """Delete every expired conversation now (the workers do it every
    PURGE_INTERVAL_SECONDS): one line per conversation (its id, owner, exchanges and the
    rule that expired it; never its title), then the counts."""
    report = purge_expired(dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    for item in report.deleted:
        click.echo(
            f"{verb} conversation {item.conversation_id} (owner {item.owner_id}, "
            f"{item.exchanges} exchange(s), expired by {item.rule})"
        )
    skip = "would skip" if dry_run else "skipped"
    for uid in report.in_progress:
        click.echo(f"{skip} conversation {uid}: an exchange of it is in progress")
    click.echo(report.summary())
