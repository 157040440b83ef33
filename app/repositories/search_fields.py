"""What full-text search searches: the three kinds of hit, where each is stored and indexed on
both engines, and the marks around matches in snippets."""

from __future__ import annotations

from app.models.unmanaged import (
    FTS_PROMPTS,
    FTS_RESPONSES,
    FTS_TITLES,
    PROMPT_VECTOR,
    RESPONSE_VECTOR,
    TITLE_VECTOR,
)

# Kinds of hit, in the order ties are broken.
TITLE, PROMPT, RESPONSE = 0, 1, 2
FIELDS = ("title", "prompt", "response")
# Per kind: the searched table and column, its stored tsvector (PostgreSQL), its FTS5 table.
SOURCES = (
    ("conversations", "title", TITLE_VECTOR, FTS_TITLES),
    ("messages", "prompt_content", PROMPT_VECTOR, FTS_PROMPTS),
    ("messages", "response_content", RESPONSE_VECTOR, FTS_RESPONSES),
)
KINDS = {vector: kind for kind, (_, _, vector, _) in enumerate(SOURCES)}
# Private-use characters mark the matches in snippets: the caller escapes the text, then
# turns them into <mark> tags (a "<mark>" typed in a message stays text).
MARK_START, MARK_END = "\ue000", "\ue001"
