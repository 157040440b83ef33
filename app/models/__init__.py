"""Database models: users and keys, conversations, exchanges, feedback; the usage rollups
in app/models/usage.py, what only the migrations create in app/models/unmanaged.py.
``migrations/`` holds the schema's history; never ``create_all``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    false,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from app.bounds import FINISH_REASON_MAX
from app.extensions import db

# SQLite has no 64-bit autoincrement type of its own; INTEGER PRIMARY KEY is its rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")

TITLE_MAX = 200
MODEL_MAX = 100
USER_NAME_MAX = 64
KEY_PREFIX_LENGTH = 12
ROLES = ("user", "admin")
OUTCOME_MAX = 16
ENDPOINT_MAX = 32
REQUEST_ID_MAX = 128
FINGERPRINT_LENGTH = 64  # a SHA-256 in hex

# OpenAI's limits for metadata: at most 16 pairs, keys up to 64 characters, values up to 512.
METADATA_MAX_PAIRS = 16
METADATA_KEY_MAX = 64
METADATA_VALUE_MAX = 512
FEEDBACK_COMMENT_MAX = 2000
RATINGS = (1, -1)

# JSONB on PostgreSQL: indexable (GIN) and compared by value; SQLite stores JSON as text.
JsonObject = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (a callable default: evaluated per row)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp that reads back aware on every engine.

    SQLite stores no offset, so values come back naive: they were written as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def _created_at(context: Any) -> datetime:
    """A row's created_at when the INSERT sets one (a default per row), else now."""
    return context.get_current_parameters().get("created_at") or utcnow()


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


# Without AUTOINCREMENT SQLite reuses the highest id after a delete, so a stale link could
# reach somebody's new conversation. PostgreSQL sequences never reuse ids.
_NO_ID_REUSE = {"sqlite_autoincrement": True}


class User(TimestampMixin, db.Model):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(f"role IN {ROLES!r}", name="role"),
        _NO_ID_REUSE,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(USER_NAME_MAX), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="user")
    # An inactive user's keys stop working; their conversations are kept.
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Overrides of RATE_LIMIT_GENERATION (requests a minute) and TOKEN_BUDGET_DAILY; NULL:
    # the service-wide setting applies.
    rpm_limit: Mapped[int | None] = mapped_column(Integer)
    daily_token_budget: Mapped[int | None] = mapped_column(BigInteger)
    # Override of RETENTION_DAYS for this user's conversations; NULL: the setting applies.
    retention_days: Mapped[int | None] = mapped_column(Integer)

    api_keys: Mapped[list[ApiKey]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"<User {self.id} {self.name!r}>"


class ApiKey(db.Model):
    """A bearer key. Only its SHA-256 is stored; the prefix lets people tell keys apart."""

    __tablename__ = "api_keys"
    __table_args__ = _NO_ID_REUSE

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    prefix: Mapped[str] = mapped_column(String(KEY_PREFIX_LENGTH), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # NULL: the key never expires.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Exchanges made with this key are recorded and accounted, but none of their text.
    no_store: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    user: Mapped[User] = relationship(back_populates="api_keys")

    def __repr__(self) -> str:
        return f"<ApiKey {self.prefix} of user {self.user_id}>"


class Conversation(TimestampMixin, db.Model):
    __tablename__ = "conversations"
    # Serves listing one owner's conversations in id order, either direction.
    __table_args__ = (
        Index("ix_conversations_owner_id_id", "owner_id", "id"),
        # order=recent: one owner's archived or unarchived conversations, pinned first, most
        # recently active first; the first page is one backward range scan.
        Index(
            "ix_conversations_recent", "owner_id", "archived", "pinned", "last_activity_at", "id"
        ),
        # A broad search's title matches, newest first (app/repositories/search.py).
        Index("ix_conversations_owner_id_created_at_id", "owner_id", "created_at", "id"),
        # The purge's walks (app/repositories/retention.py), oldest first and from where it
        # left off: own lifetimes, temporary ones, and the retention policy's, each a range
        # of one index up to its cutoff.
        Index(
            "ix_conversations_expires_at_id",
            "expires_at",
            "id",
            postgresql_where=text("expires_at IS NOT NULL"),
            sqlite_where=text("expires_at IS NOT NULL"),
        ),
        Index(
            "ix_conversations_temporary_last_activity_at_id",
            "last_activity_at",
            "id",
            postgresql_where=text("temporary"),
            sqlite_where=text("temporary"),
        ),
        Index("ix_conversations_last_activity_at_id", "last_activity_at", "id"),
        _NO_ID_REUSE,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # No cascade: deleting a user who still owns conversations fails rather than lose them.
    owner_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id"))
    # NULL until the first prompt gives it a title (or the client sets one).
    title: Mapped[str | None] = mapped_column(String(TITLE_MAX))
    model_type: Mapped[str] = mapped_column(String(MODEL_MAX), index=True)
    # "metadata" is reserved on declarative classes, hence the attribute's other name.
    meta: Mapped[dict[str, str]] = mapped_column(
        "metadata", JsonObject, default=dict, server_default=text("'{}'")
    )
    # The exchange the user sees last: the leaf of the current branch of the conversation's
    # tree (NULL: no exchange yet). Moved by the INSERT of every new exchange, in the same
    # statement; deleting a subtree that holds it hands it to the subtree's parent in the
    # same transaction (DeleteRepository). No foreign key: a second one between the two
    # tables would make every join of messages to conversations ambiguous to name.
    current_message_id: Mapped[int | None] = mapped_column(BigInteger)
    # Creation, a new exchange, or an edit of its title, model or metadata: order=recent.
    # The server default serves rows written by SQL alone (the ORM sets it per row).
    last_activity_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=_created_at, server_default=func.now()
    )
    # Exchanges in every branch, kept by the statements that add and delete them.
    message_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    archived: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    pinned: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # When the purge deletes it, whatever the policy says (pinned or not); NULL: the policy
    # decides (app/repositories/retention.py).
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Expires TEMPORARY_RETENTION_HOURS after its last activity; left out of lists and search.
    temporary: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    # passive_deletes: the database's ON DELETE CASCADE removes the messages, so deleting
    # a conversation never loads them.
    messages: Mapped[list[Message]] = relationship(
        back_populates="conversation",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Message.id",
    )

    def __repr__(self) -> str:
        return f"<Conversation {self.id} {self.title!r}>"


# A parent_id that stands for the conversation's current exchange (the default place of a new one).
CURRENT_EXCHANGE = -1
# The request_params of an exchange that keeps no text (store: false on /v1/responses, or
# any exchange made with a no-store key): it cannot be read back or continued.
NOT_STORED_PARAMS: dict[str, Any] = {"store": False}


class Message(TimestampMixin, db.Model):
    """One exchange: a prompt and its answer. Its lifecycle is app/exchange/lifecycle.py's."""

    __tablename__ = "messages"
    __table_args__ = (
        # Serves both the foreign key lookups and listing a conversation's messages in order.
        Index("ix_messages_conversation_id_id", "conversation_id", "id"),
        # The reaper's scan: only exchanges in progress, by how long since their heartbeat.
        Index(
            "ix_messages_in_progress_heartbeat",
            "heartbeat_at",
            postgresql_where=text("is_success IS NULL"),
            sqlite_where=text("is_success IS NULL"),
        ),
        # A tree's walks: children of an exchange (subtrees, siblings, the foreign key's
        # checks) and, with parent_id IS NULL, a conversation's first exchanges.
        Index("ix_messages_parent_id_conversation_id", "parent_id", "conversation_id"),
        # A broad search's prompt and answer matches, newest first: walked backwards until a
        # page of them is found (app/repositories/search.py).
        Index("ix_messages_created_at_id", "created_at", "id"),
        # The /v1 gateway's threading: the exchange whose history a request continues.
        Index(
            "ix_messages_history_fingerprint",
            "history_fingerprint",
            postgresql_where=text("history_fingerprint IS NOT NULL"),
            sqlite_where=text("history_fingerprint IS NOT NULL"),
        ),
        _NO_ID_REUSE,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("conversations.id", ondelete="CASCADE")
    )
    # The exchange this one follows in its branch (NULL: a first exchange); always an
    # older one of the same conversation, so a branch in id order is root first. No ON
    # DELETE CASCADE: SQLite runs cascades recursively and gives up past 1,000 levels, so
    # a subtree is deleted by one statement that names all of it (DeleteRepository).
    parent_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("messages.id"))
    # /v1: SHA-256 of the history this exchange ended, as an OpenAI client resends it
    # (app/services/gateway.py); set when it completes. NULL for other endpoints.
    history_fingerprint: Mapped[str | None] = mapped_column(String(FINGERPRINT_LENGTH))
    prompt_content: Mapped[str] = mapped_column(Text)
    response_content: Mapped[str] = mapped_column(Text, default="")
    # What a reasoning model thought before answering (DeepSeek-R1, Qwen3, o-series relays).
    reasoning_content: Mapped[str | None] = mapped_column(Text)
    # What the model said instead of answering (Chat Completions' ``refusal``); NULL if none.
    refusal_content: Mapped[str | None] = mapped_column(Text)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    response_tokens: Mapped[int | None] = mapped_column(Integer)
    total_tokens: Mapped[int | None] = mapped_column(Integer)
    # The upstream's usage details (prompt_tokens_details.cached_tokens,
    # completion_tokens_details.reasoning_tokens); NULL when it did not report them.
    cached_tokens: Mapped[int | None] = mapped_column(Integer)
    reasoning_tokens: Mapped[int | None] = mapped_column(Integer)
    # The tokens are an estimate (app/exchange/progress.py: ``estimate_tokens``), the
    # upstream's usage having not been received; while in progress, prompt_tokens holds
    # the estimate of what was sent.
    usage_estimated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # NULL while the exchange is in progress; set once it ends.
    is_success: Mapped[bool | None] = mapped_column(Boolean)
    status_code: Mapped[int | None] = mapped_column(Integer)
    # complete | failed | client_closed | interrupted; NULL while in progress.
    outcome: Mapped[str | None] = mapped_column(String(OUTCOME_MAX))
    # Moved by the owning worker every few seconds while the answer streams: a stale one
    # means the worker died and the reaper may close the exchange as interrupted.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Where and how the answer was made (NULL on rows older than these columns).
    model: Mapped[str | None] = mapped_column(String(MODEL_MAX))
    endpoint: Mapped[str | None] = mapped_column(String(ENDPOINT_MAX))
    request_id: Mapped[str | None] = mapped_column(String(REQUEST_ID_MAX))
    finish_reason: Mapped[str | None] = mapped_column(String(FINISH_REASON_MAX))
    ttft_ms: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    # /v1 exchanges: the tool calls the model requested ([{id, type, function: {name,
    # arguments}}]), the request's parameters other than its messages, its system prompt.
    tool_calls: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True))
    request_params: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    system_prompt: Mapped[str | None] = mapped_column(Text)
    # The input the exchange added to its conversation, as the client sent it, in order,
    # in its endpoint's format. Chat endpoints: chat messages ({role, content, ...}: user
    # turns, tool results; the seed's endpoints: the one user prompt; NULL on /v1 rows older
    # than this column). /v1/responses: its input items, whole (app/exchange/responses_items.py).
    input_items: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True))
    # Responses API: its output items' layout ("reasoning", "message", "fc:<n>"; their text
    # is the columns above); null at a deleted item's position. NULL: the answer reads as one
    # assistant message (other endpoints).
    output_items: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True))
    # When the exchange was deleted as a tombstone: its content erased, its place in the
    # tree and its accounting kept for the exchanges that continued it. NULL: not deleted.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    conversation: Mapped[Conversation] = relationship(back_populates="messages")
    # Loaded only where asked for (joinedload): an exchange being generated never queries it.
    feedback: Mapped[Feedback | None] = relationship(lazy="raise", passive_deletes=True)

    @property
    def deleted(self) -> bool:
        """A tombstone: listed in its branch, its content gone."""
        return self.deleted_at is not None

    def __repr__(self) -> str:
        return f"<Message {self.id} of conversation {self.conversation_id}>"


class Feedback(TimestampMixin, db.Model):
    """A user's rating of one exchange: at most one per message, deleted with it."""

    __tablename__ = "feedback"
    __table_args__ = (CheckConstraint("rating IN (1, -1)", name="rating"),)

    message_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    rating: Mapped[int] = mapped_column(SmallInteger)
    comment: Mapped[str | None] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"<Feedback {self.rating:+d} on message {self.message_id}>"


# Registered on the same metadata, so that autogenerate and the app see every table.
from app.models import unmanaged, usage  # noqa: E402, F401
