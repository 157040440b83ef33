"""Erasure: all of one user's conversations deleted, each in its own transaction through the
deletion model's conversation delete; for a person erased, then their keys, usage and user.

Every conversation goes whole or not at all (a crash between two leaves no half-deleted
one). SQLite's search index is compacted once after the run rather than after each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from flask import current_app

from app.conflicts import ExchangeInProgress, WriteConflict
from app.errors import Conflict, NotFound
from app.models import utcnow
from app.models.usage import ERASED_OWNER_ID
from app.repositories import UserRepository
from app.repositories.deletes import DeleteRepository
from app.repositories.erasure import compact_search_index
from app.repositories.people import PersonRepository
from app.repositories.usage import UsageRepository
from app.services.auth import Principal
from app.services.export import PageReader, ndjson
from app.services.unit_of_work import read_only, unit_of_work

log = logging.getLogger(__name__)

PAGE = 500  # conversation ids read at a time


@dataclass(frozen=True)
class Erasure:
    """What ``erase_user`` removed."""

    conversations: int
    keys: int
    usage_kept: bool


def _ids(user_id: int, up_to: int | None) -> Iterator[int]:
    """The user's conversation ids in id order, a page per short read (none held while the
    caller deletes)."""
    after = None
    while True:
        with read_only() as session:
            page = PersonRepository(session, user_id).conversation_ids(
                after=after, up_to=up_to, take=PAGE
            )
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1]


def _compact() -> None:
    with unit_of_work() as session:
        compact_search_index(session)


def delete_conversations(
    user_id: int, up_to: int | None = None
) -> tuple[int, ExchangeInProgress | None]:
    """Delete the user's conversations (those with ids up to ``up_to``), oldest first, one
    transaction each; returns how many, and the exchange in progress that stopped the run
    (those deleted before it stay deleted), if one did."""
    deleted = 0
    busy = None
    try:
        for conversation_id in _ids(user_id, up_to):
            with unit_of_work() as session:
                deletes = DeleteRepository(session, user_id)
                deleted += deletes.delete_conversation(conversation_id, compact=False)
    except ExchangeInProgress as error:
        busy = error
    if deleted:
        _compact()
    return deleted, busy


def delete_all_conversations(actor: Principal) -> int:
    """Delete every conversation the actor owns when asked (admins: their own too, no one
    else's), each in its own transaction; returns how many. ExchangeInProgress, before any
    is deleted, while one of their exchanges is in progress; one that begins meanwhile stops
    the run (WriteConflict: those deleted before it stay deleted)."""
    with read_only() as session:
        person = PersonRepository(session, actor.user_id)
        person.refuse_in_progress()
        up_to = person.newest_conversation_id()
    if up_to is None:
        return 0
    deleted, busy = delete_conversations(actor.user_id, up_to)
    if busy is not None:
        raise WriteConflict(
            f"{busy.message} {deleted} conversation(s) were deleted before it; ask again "
            "to delete the rest."
        )
    return deleted


def _busy(name: str, busy: ExchangeInProgress, deleted: int) -> Conflict:
    done = (
        f"{deleted} of their conversation(s) were erased"
        if deleted
        else "nothing of theirs was erased yet"
    )
    return Conflict(
        f"Exchange {busy.message_id} of {name} is in progress: {name} is deactivated and "
        f"{done}; run `flask users erase {name}` again once it has ended (the reaper ends a "
        "stale one as interrupted)."
    )


def erase_user(name: str, *, keep_usage: bool, wait: Callable[[float], None]) -> Erasure:
    """Erase user ``name``: deactivate them, delete every conversation of theirs (and so
    every exchange, item and feedback), then, once running servers have stopped accepting
    their keys (``wait`` is given the seconds left of AUTH_CACHE_SECONDS), in one transaction
    whatever conversation began meanwhile, their keys, their usage (``keep_usage``: moved to
    ERASED_OWNER_ID instead) and their user row.

    NotFound for an unknown name. Conflict, naming it, while an exchange of theirs is in
    progress: the user stays deactivated and running the erasure again finishes it.
    """
    ttl = timedelta(seconds=current_app.config["AUTH_CACHE_SECONDS"])
    with unit_of_work() as session:
        user = UserRepository(session).get_by_name(name)
        if user is None:
            raise NotFound(f"No user is named {name!r}.")
        user_id = user.id
        if user.is_active:
            user.is_active, user.updated_at = False, utcnow()
        # A process trusts what a key resolved to for AUTH_CACHE_SECONDS after its lookup.
        keys_trusted_until = user.updated_at + ttl
    try:
        with read_only() as session:
            PersonRepository(session, user_id).refuse_in_progress()
    except ExchangeInProgress as busy:
        raise _busy(name, busy, 0) from busy
    deleted, busy = delete_conversations(user_id)
    if busy is not None:
        raise _busy(name, busy, deleted) from busy
    left = (keys_trusted_until - utcnow()).total_seconds()
    if left > 0:
        wait(left)
    with unit_of_work() as session:
        person = PersonRepository(session, user_id)
        if not person.lock():
            raise NotFound(f"No user is named {name!r}.")  # erased meanwhile
        deletes = DeleteRepository(session, user_id)
        late = 0
        try:
            # What a key still trusted by a running server began during the run.
            while ids := person.conversation_ids(after=None, up_to=None, take=PAGE):
                for conversation_id in ids:
                    late += deletes.delete_conversation(conversation_id, compact=False)
        except ExchangeInProgress as busy:
            raise _busy(name, busy, deleted) from busy
        keys = person.key_count()
        usage = UsageRepository(session)
        if keep_usage:
            usage.reassign_owner(user_id, ERASED_OWNER_ID)
        else:
            usage.forget_owner(user_id)
        person.delete()
        compact_search_index(session)
    deleted += late
    log.info(
        "erased user %d: %d conversation(s), %d key(s), usage %s",
        user_id,
        deleted,
        keys,
        "kept as owner 0" if keep_usage else "deleted",
    )
    return Erasure(deleted, keys, keep_usage)


def export_user(name: str) -> Iterator[str]:
    """Every conversation of user ``name`` with its messages and feedback, as GET /export
    writes it (NDJSON), a page read at a time; NotFound for an unknown name."""
    with read_only() as session:
        user = UserRepository(session).get_by_name(name)
        if user is None:
            raise NotFound(f"No user is named {name!r}.")
        user_id = user.id
    return ndjson(PageReader(current_app._get_current_object()), user_id)  # type: ignore[attr-defined]
