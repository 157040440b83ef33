"""The search query language: words, "quoted phrases" and -exclusions, parsed once.

Both engines get the parsed terms, never the raw text: nothing a user types can reach
PostgreSQL's tsquery or SQLite's FTS5 syntax, so a malformed query is a 422, never a 500.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

QUERY_MAX = 256
TERMS_MAX = 16
# What both engines index as a word: runs of letters and digits (underscore separates).
WORD = re.compile(r"[^\W_]+")
_TOKEN = re.compile(r'(-?)"([^"]*)"|(-?)([^\s"]+)|(")')


class QueryError(ValueError):
    """The query cannot be searched for; the message says why."""


@dataclass(frozen=True)
class Term:
    """A word or a phrase (its words, in order), wanted or excluded."""

    words: tuple[str, ...]
    excluded: bool = False


@dataclass(frozen=True)
class SearchQuery:
    terms: tuple[Term, ...]

    @property
    def wanted(self) -> tuple[Term, ...]:
        return tuple(term for term in self.terms if not term.excluded)

    @property
    def excluded(self) -> tuple[Term, ...]:
        return tuple(term for term in self.terms if term.excluded)


def parse(text: str) -> SearchQuery:
    """Parse a query; QueryError if it is empty, unbalanced or has nothing to look for."""
    if len(text) > QUERY_MAX:
        raise QueryError(f"At most {QUERY_MAX} characters.")
    # Composed form: an accent typed as a combining mark is one character, as stored text
    # usually has it.
    text = unicodedata.normalize("NFC", text)
    terms: list[Term] = []
    for match in _TOKEN.finditer(text):
        if match[5]:
            raise QueryError("A quoted phrase is not closed.")
        excluded = bool(match[1] or match[3])
        words = tuple(WORD.findall(match[2] if match[2] is not None else match[4]))
        # Punctuation alone (a lone "-", "&&") searches for nothing: ignore it.
        if words:
            terms.append(Term(words, excluded))
    if len(terms) > TERMS_MAX:
        raise QueryError(f"At most {TERMS_MAX} words or phrases.")
    query = SearchQuery(tuple(terms))
    if not query.wanted:
        raise QueryError("Give at least one word to look for (not only -exclusions).")
    return query
