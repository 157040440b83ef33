"""What the migrations create and the models cannot: the full-text tables, columns and
indexes, which autogenerate must leave out."""

from __future__ import annotations

from typing import Any

# Full-text indexes (PostgreSQL generated tsvector columns and their GIN indexes, SQLite FTS5
# tables and their shadow tables) and the JSONB GIN index on metadata: autogenerate must not
# report them as drift.

# SQLite: FTS5 virtual tables kept in sync by triggers (FTS5 adds _data, _idx, ... tables).
FTS_TABLE_PREFIX = "fts_"
FTS_TITLES = "fts_conversation_titles"
FTS_PROMPTS = "fts_message_prompts"
FTS_RESPONSES = "fts_message_responses"

# PostgreSQL: generated tsvector columns (never mapped: the ORM neither reads nor writes
# them), their GIN indexes, and the GIN index over the JSONB metadata.
TITLE_VECTOR = "title_search"
PROMPT_VECTOR = "prompt_search"
RESPONSE_VECTOR = "response_search"
SEARCH_COLUMNS = frozenset({TITLE_VECTOR, PROMPT_VECTOR, RESPONSE_VECTOR})
TITLE_SEARCH_INDEX = "ix_conversations_title_search"
PROMPT_SEARCH_INDEX = "ix_messages_prompt_search"
RESPONSE_SEARCH_INDEX = "ix_messages_response_search"
METADATA_INDEX = "ix_conversations_metadata"
UNMANAGED_INDEXES = frozenset(
    {TITLE_SEARCH_INDEX, PROMPT_SEARCH_INDEX, RESPONSE_SEARCH_INDEX, METADATA_INDEX}
)


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic's ``include_object``: leave the objects above out of autogenerate."""
    if type_ == "table" and name and name.startswith(FTS_TABLE_PREFIX):
        return False
    if type_ == "column" and name in SEARCH_COLUMNS:
        return False
    return not (type_ == "index" and name in UNMANAGED_INDEXES)
