"""The search query language: words, "quoted phrases" and -exclusions, parsed once.

Both engines get the parsed terms, never the raw text: nothing a user types can reach
PostgreSQL's tsquery or SQLite's FTS5 syntax, so a malformed query is a 422, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
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


@dataclass(frozen=True)
class Cursor:
    """Where a page of hits ended: its last hit's rank, kind and id (opaque to clients)."""

    rank: float
    kind: int
    ref: int

    def encode(self) -> str:
        # repr-exact floats: the next page starts exactly after this hit.
        raw = json.dumps([self.rank, self.kind, self.ref]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """The cursor ``encode`` made; QueryError for anything else."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            rank, kind, ref = json.loads(raw)
        except (ValueError, TypeError, binascii.Error, RecursionError) as exc:
            raise QueryError("Not a cursor this service gave.") from exc
        valid = (
            isinstance(rank, float | int)
            and not isinstance(rank, bool)
            and math.isfinite(rank)
            and type(kind) is int
            and 0 <= kind <= 2
            and type(ref) is int
            and 0 < ref < 2**63
        )
        if not valid:
            raise QueryError("Not a cursor this service gave.")
        return cls(float(rank), kind, ref)
