"""The usage rollups: per owner, day, model, kind and outcome, and what deleted exchanges
had added to them."""

from __future__ import annotations

from datetime import date

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models import MODEL_MAX, OUTCOME_MAX

# Upper bounds (ms) of the fixed latency histogram buckets of the usage rollups; one more
# bucket holds everything above the last. Neighbouring bounds differ by at most 1.5x from
# 100 ms to 60 s, which bounds the error of the percentiles reported. Changing them takes a
# migration and `flask usage rebuild`.
LATENCY_BUCKETS_MS = (
    10, 25, 50, 75, 100, 150, 200, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 4000, 5000,
    7500, 10000, 15000, 20000, 30000, 45000, 60000, 90000, 120000, 180000, 300000, 600000,
)  # fmt: skip
USAGE_KINDS = ("exchange", "title")
# The owner_id of usage rows an erased user left (`flask users erase --keep-usage`): users'
# ids start at 1, and usage has no foreign key to users.
ERASED_OWNER_ID = 0
# Each rollup is split in this many rows (by exchange id): many streams ending at once for
# one user and model would otherwise queue on one row's lock, each save holding it from its
# upsert to its commit. Reports sum the shards.
USAGE_SHARDS = 16


def latency_columns(measure: str) -> list[str]:
    """The bucket column names of one measure (``ttft`` or ``duration``), in bound order."""
    return [f"{measure}_le_{bound}" for bound in LATENCY_BUCKETS_MS] + [f"{measure}_le_inf"]


class UsageDaily(db.Model):
    """Usage per owner, UTC day, model, kind and outcome, kept current as exchanges end.

    ``kind`` exchange: ended exchanges (by outcome), their tokens and latency histograms;
    kind title: title calls (outcome ''), their tokens only. Bucket columns count values
    in (previous bound, bound], not cumulatively.
    """

    __tablename__ = "usage_daily"
    # The key leads with owner_id for one user's report; ix_usage_daily_day serves admins'.
    __table_args__ = (
        CheckConstraint(f"kind IN {USAGE_KINDS!r}", name="kind"),
        Index("ix_usage_daily_day", "day"),
    )

    owner_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    # '' where unknown (rows older than messages.model): key columns cannot be NULL.
    model: Mapped[str] = mapped_column(String(MODEL_MAX), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(OUTCOME_MAX), primary_key=True)
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    calls: Mapped[int] = mapped_column(Integer, server_default="0")
    # Failed exchanges the upstream refused with 429 (a subset of outcome failed).
    rate_limited: Mapped[int] = mapped_column(Integer, server_default="0")
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, server_default="0")
    response_tokens: Mapped[int] = mapped_column(BigInteger, server_default="0")
    total_tokens: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # Exchanges whose usage is an estimate (the upstream's was not received), and their
    # total tokens (counted in total_tokens too).
    estimated: Mapped[int] = mapped_column(Integer, server_default="0")
    estimated_tokens: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # One counter column per latency bucket and measure (declared in a loop: 60 of them).
    for _name in latency_columns("ttft") + latency_columns("duration"):
        locals()[_name] = mapped_column(Integer, nullable=False, server_default="0")
    del _name

    def __repr__(self) -> str:
        return f"<UsageDaily {self.owner_id} {self.day} {self.model!r} {self.kind} {self.outcome}>"


class UsageRemoved(db.Model):
    """What deleted exchanges had added to ``usage_daily``, by the same key and sums: tokens
    spent stay spent. ``flask usage rebuild`` adds it to what the exchanges left give."""

    __table__ = Table(
        "usage_removed",
        db.metadata,
        *(column._copy() for column in UsageDaily.__table__.columns),
        CheckConstraint(f"kind IN {USAGE_KINDS!r}", name="kind"),
    )

    def __repr__(self) -> str:
        return f"<UsageRemoved {self.owner_id} {self.day} {self.model!r} {self.outcome}>"
