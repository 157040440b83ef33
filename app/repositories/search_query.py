"""What a search request says, parsed once: its query (words, "quoted phrases" and
-exclusions) and its cursor (where the previous page of hits ended)."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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
    """Parse a query; QueryError if it is empty, unbalanced or has nothing to look for.

    Both engines get the parsed terms, never the raw text: nothing a user types can reach
    PostgreSQL's tsquery or SQLite's FTS5 syntax, so a malformed query is a 422, never a 500.
    """
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


# The orders of a page of results: best first, or newest first (SearchRepository.hits).
RANK, RECENT = "rank", "recent"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# datetime's range, in microseconds from the epoch: anything else cannot be a time written.
_WRITTEN_RANGE = range(
    (datetime.min.replace(tzinfo=UTC) - _EPOCH) // _MICROSECOND,
    (datetime.max.replace(tzinfo=UTC) - _EPOCH) // _MICROSECOND + 1,
)


@dataclass(frozen=True)
class Cursor:
    """Where a page of hits ended: its last hit's kind and id, and its rank or, in newest
    first order, when its text was written (opaque to clients)."""

    kind: int
    ref: int
    rank: float = 0.0
    written: datetime | None = None

    @property
    def order(self) -> str:
        return RANK if self.written is None else RECENT

    def encode(self) -> str:
        # repr-exact floats and whole microseconds: the next page starts exactly after this hit.
        if self.written is None:
            key: list[object] = [self.rank, self.kind, self.ref]
        else:
            key = [RECENT, (self.written - _EPOCH) // _MICROSECOND, self.kind, self.ref]
        raw = json.dumps(key).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """The cursor ``encode`` made; QueryError for anything else."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            key = json.loads(raw)
            if isinstance(key, list) and len(key) == 4 and key[0] == RECENT:
                _, written, kind, ref = key
                rank = 0.0
                valid = type(written) is int and written in _WRITTEN_RANGE
            else:
                rank, kind, ref = key
                written = None
                valid = (
                    isinstance(rank, float | int)
                    and not isinstance(rank, bool)
                    and math.isfinite(rank)
                )
        except (ValueError, TypeError, binascii.Error, RecursionError) as exc:
            raise QueryError("Not a cursor this service gave.") from exc
        valid = valid and type(kind) is int and 0 <= kind <= 2 and type(ref) is int
        if not (valid and 0 < ref < 2**63):
            raise QueryError("Not a cursor this service gave.")
        return cls(
            kind,
            ref,
            float(rank),
            None if written is None else _EPOCH + written * _MICROSECOND,
        )
