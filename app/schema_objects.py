"""Schema objects the migrations create but the models cannot describe.

Full-text indexes (PostgreSQL expression GIN indexes, SQLite FTS5 tables and their shadow
tables) and the JSONB GIN index on metadata: autogenerate must not report them as drift.
"""

from __future__ import annotations

from typing import Any

# SQLite: FTS5 virtual tables kept in sync by triggers (FTS5 adds _data, _idx, ... tables).
FTS_TABLE_PREFIX = "fts_"
FTS_TITLES = "fts_conversation_titles"
FTS_PROMPTS = "fts_message_prompts"
FTS_RESPONSES = "fts_message_responses"

# PostgreSQL: GIN indexes over expressions (to_tsvector) and over the JSONB metadata.
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
    return not (type_ == "index" and name in UNMANAGED_INDEXES)
