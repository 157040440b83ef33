"""Daily usage rollups: folded in as exchanges end, read back as aggregates."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from http import HTTPStatus
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Date,
    Insert,
    Integer,
    Select,
    String,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.models import Conversation, Message, utcnow
from app.models.usage import (
    LATENCY_BUCKETS_MS,
    USAGE_SHARDS,
    UsageDaily,
    UsageRemoved,
    latency_columns,
)
from app.repositories.functions import utc_day

MEASURES = ("ttft", "duration")
KEY = ("owner_id", "day", "model", "kind", "outcome", "shard")
SUMS = (
    "calls",
    "rate_limited",
    "prompt_tokens",
    "response_tokens",
    "total_tokens",
    "estimated",
    "estimated_tokens",
    *latency_columns("ttft"),
    *latency_columns("duration"),
)
GROUPS = {"day": "day", "model": "model", "user": "owner_id"}
OUTCOMES = ("complete", "failed", "client_closed", "interrupted")
# What ``report`` sums per group, in its column order (after the group's keys).
REPORT_SUMS = (
    "exchanges",
    *OUTCOMES,
    "rate_limited",
    "prompt_tokens",
    "response_tokens",
    "total_tokens",
    "title_tokens",
    "estimated",
    "estimated_tokens",
)


def _sql(value: int | str) -> ColumnElement[Any]:
    """A constant written into the SQL, not bound: these statements are built once, and
    binding 70-odd constants per execution would cost more than running them."""
    return literal_column(str(value) if isinstance(value, int) else f"'{value}'")


def _buckets(column: Any) -> list[ColumnElement[Any]]:
    """One SUM per bucket: how many of the grouped rows fall in it."""
    sums = []
    lower = None
    for bound in (*LATENCY_BUCKETS_MS, None):
        conditions = [] if lower is None else [column > _sql(lower)]
        if bound is not None:
            conditions.append(column <= _sql(bound))
        sums.append(func.sum(case((and_(*conditions), _sql(1)), else_=_sql(0))))
        lower = bound
    return sums


def _exchanges_by_key(
    where: Iterable[ColumnElement[bool]], messages: Any = Message.__table__
) -> Select[Any]:
    """Ended exchanges matching ``where``, rolled up by the table's key (in SUMS order).
    ``messages``: the messages table, or a CTE returning its rows."""
    m = messages.c
    day = utc_day(m.created_at)
    model = func.coalesce(m.model, _sql(""))
    shard = m.id % _sql(USAGE_SHARDS)
    return (
        select(
            Conversation.owner_id,
            day,
            model,
            _sql("exchange"),
            m.outcome,
            shard,
            func.count(),
            func.sum(
                case((m.status_code == _sql(HTTPStatus.TOO_MANY_REQUESTS), _sql(1)), else_=_sql(0))
            ),
            func.coalesce(func.sum(m.prompt_tokens), _sql(0)),
            func.coalesce(func.sum(m.response_tokens), _sql(0)),
            func.coalesce(func.sum(m.total_tokens), _sql(0)),
            func.sum(case((m.usage_estimated, _sql(1)), else_=_sql(0))),
            func.coalesce(
                func.sum(case((m.usage_estimated, m.total_tokens), else_=_sql(0))), _sql(0)
            ),
            *_buckets(m.ttft_ms),
            *_buckets(m.duration_ms),
        )
        .select_from(messages)
        .join(Conversation, Conversation.id == m.conversation_id)
        .where(m.outcome.is_not(None), *where)
        .group_by(Conversation.owner_id, day, model, m.outcome, shard)
    )


def _insert(dialect: str, rows: Select[Any], into: Table = UsageDaily.__table__) -> Any:
    insert_of = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # The Table, not the mapped class: with parameters, an ORM insert is a bulk insert.
    return insert_of(into).from_select([*KEY, *SUMS], rows)


def _upsert(
    dialect: str, rows: Select[Any], sign: int, into: Table = UsageDaily.__table__
) -> Insert:
    statement = _insert(dialect, rows, into)
    table = into.c
    operator = (lambda a, b: a + b) if sign > 0 else (lambda a, b: a - b)
    return statement.on_conflict_do_update(
        index_elements=list(KEY),
        set_={name: operator(table[name], statement.excluded[name]) for name in SUMS},
    )


# Built once per engine and sign, as the report's statement is: the exchange fold runs in
# every exchange's save, where building it anew costs more CPU than the rest of the save.
@functools.lru_cache(maxsize=8)
def _fold(dialect: str, sign: int) -> Insert:
    ids = bindparam("ids", expanding=True)
    return _upsert(dialect, _exchanges_by_key([Message.__table__.c.id.in_(ids)]), sign)


@functools.lru_cache(maxsize=4)
def _carry_conversation(dialect: str) -> Insert:
    """``carry_removed`` of one conversation's exchanges, built once per engine: purges
    delete conversations by the thousand, and building this statement costs several times
    what running it does."""
    of_conversation = Message.__table__.c.conversation_id == bindparam("conversation_id")
    return _upsert(dialect, _exchanges_by_key([of_conversation]), 1, UsageRemoved.__table__)


@functools.lru_cache(maxsize=32)
def _end_and_fold(columns: tuple[str, ...], whole: bool) -> Select[Any]:
    """PostgreSQL: end an exchange in progress and fold it into its rollup in one statement
    (data-modifying CTEs), returning the ended row (``whole``) or its id. Built once per
    shape."""
    table = Message.__table__
    ended = (
        update(table)
        .where(table.c.id == bindparam("uid"), table.c.is_success.is_(None))
        .values({name: bindparam(name) for name in columns})
        .returning(*table.c)
        .cte("ended")
    )
    fold = _upsert("postgresql", _exchanges_by_key([], ended), 1).cte("folded")
    return select(*ended.c if whole else [ended.c.id]).add_cte(fold)


@functools.lru_cache(maxsize=4)
def _title_fold(dialect: str) -> Insert:
    rows = select(
        Conversation.owner_id,
        bindparam("day", type_=Date()),
        bindparam("model", type_=String()),
        _sql("title"),
        _sql(""),
        Conversation.id % _sql(USAGE_SHARDS),
        _sql(1),
        _sql(0),
        bindparam("prompt", type_=Integer()),
        bindparam("response", type_=Integer()),
        bindparam("total", type_=Integer()),
        *[_sql(0)] * (len(SUMS) - 5),
    ).where(Conversation.id == bindparam("conversation_id"))
    return _upsert(dialect, rows, 1)


class UsageRepository:
    """The ``usage_daily`` rollups. Every write is one upsert, valid on both engines."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.dialect = session.get_bind().dialect.name

    def add_exchanges(self, message_ids: Sequence[int]) -> None:
        """Fold these ended exchanges into their days' rollups (one statement)."""
        if message_ids:
            self.session.execute(_fold(self.dialect, 1), {"ids": list(message_ids)})

    def end_and_fold(
        self, message_id: int, values: Mapping[str, Any], whole: bool = True
    ) -> Message | None:
        """PostgreSQL only: ``MessageRepository.end`` and ``add_exchanges`` as one statement,
        atomic without a transaction; None if the exchange was not in progress. Not
        ``whole``: a Message holding only its id."""
        params = {**values, "updated_at": utcnow(), "uid": message_id}
        statement = _end_and_fold(tuple(sorted(params.keys() - {"uid"})), whole)
        # Core on the session's connection: the ORM's execution layer costs more CPU than
        # the statement's own round trip. The row comes back as a plain Message.
        row = self.session.connection().execute(statement, params).one_or_none()
        if row is None:
            return None
        return Message(**row._mapping) if whole else Message(id=row[0])

    def remove_exchanges(self, message_ids: Sequence[int]) -> None:
        """Take these ended exchanges back out (before their ending is rewritten)."""
        if not message_ids:
            return
        self.session.execute(_fold(self.dialect, -1), {"ids": list(message_ids)})
        # A rollup emptied so is deleted: a report would show it as a row of zeros.
        owners = (
            select(Conversation.owner_id)
            .join(Message, Message.conversation_id == Conversation.id)
            .where(Message.id.in_(message_ids))
        )
        self.session.execute(
            delete(UsageDaily).where(
                UsageDaily.kind == "exchange",
                UsageDaily.calls == 0,
                UsageDaily.owner_id.in_(owners),
            )
        )

    def carry_removed(self, deleted: ColumnElement[bool]) -> None:
        """Add what the ended exchanges matching ``deleted`` count in the rollups to
        ``usage_removed``, before they are deleted in the same transaction: the rollups
        keep them, and ``rebuild_exchanges`` adds them back."""
        carried = _exchanges_by_key([deleted])
        self.session.execute(_upsert(self.dialect, carried, 1, UsageRemoved.__table__))

    def carry_removed_conversation(self, conversation_id: int) -> None:
        """``carry_removed`` of every exchange of one conversation (a prebuilt statement)."""
        params = {"conversation_id": conversation_id}
        self.session.execute(_carry_conversation(self.dialect), params)

    def reassign_owner(self, owner_id: int, to: int) -> None:
        """Move every rollup and ledger row of ``owner_id`` to owner ``to``, summed into the
        rows ``to`` already has on the same key (erasure keeping usage: ERASED_OWNER_ID)."""
        for table in (UsageDaily.__table__, UsageRemoved.__table__):
            moved = select(_sql(to), *(table.c[name] for name in (*KEY[1:], *SUMS))).where(
                table.c.owner_id == owner_id
            )
            self.session.execute(_upsert(self.dialect, moved, 1, table))
        self.forget_owner(owner_id)

    def forget_owner(self, owner_id: int) -> None:
        """Delete every rollup and ledger row of ``owner_id``."""
        for table in (UsageDaily.__table__, UsageRemoved.__table__):
            self.session.execute(delete(table).where(table.c.owner_id == owner_id))

    def add_title(
        self,
        conversation_id: int,
        day: date,
        model: str,
        tokens: tuple[int | None, int | None, int | None],
    ) -> None:
        """Count one title call and its (prompt, response, total) tokens for the
        conversation's owner; nothing if the conversation is gone."""
        prompt, response, total = (value or 0 for value in tokens)
        values = {"prompt": prompt, "response": response, "total": total}
        params = {"conversation_id": conversation_id, "day": day, "model": model, **values}
        self.session.execute(_title_fold(self.dialect), params)

    def tokens_spent(self, owner_id: int, day: date) -> int:
        """Tokens ``owner_id`` spent on ``day`` (exchanges and titles): one primary-key range."""
        query = select(func.coalesce(func.sum(UsageDaily.total_tokens), 0)).where(
            UsageDaily.owner_id == owner_id, UsageDaily.day == day
        )
        return int(self.session.scalar(query) or 0)

    def rebuild_exchanges(self) -> int:
        """Recompute every exchange rollup from the messages and what deleted exchanges
        carried (``usage_removed``); returns the rows written. Title rows stay: their calls
        are recorded nowhere else."""
        self.session.execute(delete(UsageDaily).where(UsageDaily.kind == "exchange"))
        self.session.execute(_insert(self.dialect, _exchanges_by_key([])))
        removed = UsageRemoved.__table__.c
        # WHERE: SQLite reads an INSERT ... SELECT's ON CONFLICT as a join's ON without one.
        carried = select(*(removed[name] for name in (*KEY, *SUMS))).where(true())
        self.session.execute(_upsert(self.dialect, carried, 1))
        # Counted, not rowcount: drivers report -1 for some INSERT ... SELECT.
        exchanges = select(func.count()).where(UsageDaily.kind == "exchange")
        return self.session.scalar(exchanges) or 0

    def report(
        self, start: date, end: date, group_by: Sequence[str], owner_id: int | None
    ) -> list[tuple[Any, ...]]:
        """Sums over [start, end] per group, as tuples: the key columns named in
        ``group_by``, then REPORT_SUMS, then the ttft and the duration bucket counts."""
        query = _report_query(tuple(group_by), owner_id is not None)
        params = {"start": start, "end": end, "owner_id": owner_id}
        return [tuple(row) for row in self.session.execute(query, params)]


@functools.lru_cache(maxsize=16)
def _report_query(group_by: tuple[str, ...], one_owner: bool) -> Select[Any]:
    """The report's statement for one shape, built once: with 70 aggregates, building it
    and computing its cache key costs several times what the database takes to answer."""
    t = UsageDaily.__table__.c
    keys = [t[GROUPS[name]].label(name) for name in group_by]
    # Constants as SQL literals, not bound parameters: fewer values to bind per execution.
    exchange, zero = t.kind == literal_column("'exchange'"), literal_column("0")

    def exchanges(condition: ColumnElement[bool] | None = None) -> ColumnElement[Any]:
        matches = exchange if condition is None else and_(exchange, condition)
        return func.coalesce(func.sum(case((matches, t.calls), else_=zero)), 0)

    columns = [
        *keys,
        exchanges().label("exchanges"),
        *(
            exchanges(t.outcome == literal_column(f"'{outcome}'")).label(outcome)
            for outcome in OUTCOMES
        ),
        func.sum(t.rate_limited).label("rate_limited"),
        func.sum(t.prompt_tokens).label("prompt_tokens"),
        func.sum(t.response_tokens).label("response_tokens"),
        func.sum(t.total_tokens).label("total_tokens"),
        func.coalesce(
            func.sum(case((t.kind == literal_column("'title'"), t.total_tokens), else_=zero)), 0
        ).label("title_tokens"),
        func.sum(t.estimated).label("estimated"),
        func.sum(t.estimated_tokens).label("estimated_tokens"),
        *(func.sum(t[name]).label(name) for m in MEASURES for name in latency_columns(m)),
    ]
    query = select(*columns).where(
        t.day >= bindparam("start", type_=Date()), t.day <= bindparam("end", type_=Date())
    )
    if one_owner:
        query = query.where(t.owner_id == bindparam("owner_id"))
    # Ungrouped, an empty range would still give one row of NULLs: none instead.
    return query.group_by(*keys).order_by(*keys) if keys else query.having(func.count() > 0)
