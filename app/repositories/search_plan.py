"""The search's cost planner: from PostgreSQL's statistics, whether a query is ranked, and which
kinds of hit a newest-first page walks in date order rather than reading all their matches."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import Text, TextClause, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from app.models.unmanaged import PROMPT_VECTOR, RESPONSE_VECTOR, TITLE_VECTOR
from app.repositories.search_fields import KINDS, SOURCES
from app.repositories.search_query import SearchQuery

RANKED_MAX = 2000  # SEARCH_RANKED_MAX's default
# Of the rows holding all of a phrase's words, the share where they are next to each other:
# a guess, that keeps a phrase of common words walked newest first and reads one of words
# seldom side by side through the index (walking for it could read most of the table).
ADJACENT = 0.1


@dataclass(frozen=True)
class Expected:
    """Of one kind of hit, from PostgreSQL's statistics: the rows searched, the matches
    expected (a word not listed counting as in none, the terms as found independently)
    and at most (those of the rarest wanted word, one not listed being in fewer rows than
    any that is)."""

    rows: float
    matches: float
    at_most: float

    def walked(self, take: int, at_least: int | None) -> bool:
        """Whether to walk the rows newest first rather than read every match: walking
        reads about take * rows / matches rows, reading reads the matches. ``at_least``:
        the matches a ranked first page counted before its window filled up."""
        if at_least is None:
            return self.matches * self.matches > take * self.rows
        # Walk unless reading all there can be costs less than the longest walk.
        return self.at_most > take * self.rows / at_least


UNKNOWN = Expected(0.0, 0.0, float("inf"))  # no statistics: read, or walk past a window


def ranked_first(statistics: dict[int, Expected], ranked_max: int) -> bool:
    """Whether a first page is tried ranked: the statistics expect at most ``ranked_max``
    matches of all kinds together."""
    return sum(e.matches for e in statistics.values()) <= ranked_max


def walked_kinds(
    statistics: dict[int, Expected], take: int, window: list[int] | None
) -> frozenset[int]:
    """The kinds of hit whose rows a newest-first page walks newest first (the others'
    matches are read, then sorted). ``window``: when a ranked first page was tried and
    its window filled up, the matches of each kind it counted."""
    full: set[int] = set()
    at_least: list[int | None] = [None] * len(SOURCES)
    if window is not None:
        # More than the statistics foresaw (a word they do not list, words found together
        # more often than their shares say, or no statistics yet). The window holds the
        # kinds in turn: it filled up in the last one it holds, and holds the others whole.
        last = max(kind for kind, n in enumerate(window) if n)
        full, at_least[last] = set(range(last)), window[last]
    return frozenset(
        kind
        for kind in range(len(SOURCES))
        if kind not in full and statistics.get(kind, UNKNOWN).walked(take, at_least[kind])
    )


def expected_matches(session: Session, language: str, query: SearchQuery) -> dict[int, Expected]:
    """What each kind of hit is expected to match, from PostgreSQL's statistics (none before
    ANALYZE)."""
    rows: dict[int, float] = {}
    shares: dict[int, dict[int, float]] = defaultdict(lambda: defaultdict(lambda: 1.0))
    most: dict[int, dict[int, float]] = defaultdict(lambda: defaultdict(lambda: 1.0))
    lexemes: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    terms = [" ".join(term.words) for term in query.terms]
    found = session.execute(statistics_statement(language), {"terms": terms})
    for vector, column_rows, least_share, n, share in found:
        kind = KINDS[vector]
        rows[kind] = column_rows
        shares[kind][n] *= share or 0.0
        # A lexeme not listed is in fewer rows than any that is (none listed: in any).
        unlisted = 1.0 if least_share is None else least_share
        most[kind][n] = min(most[kind][n], share or unlisted)
        lexemes[kind][n] += 1
    expected = {}
    for kind, column_rows in rows.items():
        matches, at_most = column_rows, 1.0
        for n, term in enumerate(query.terms, start=1):
            # 1 for a term without a lexeme (a stop word): it matches anything.
            share = shares[kind][n] * (ADJACENT if lexemes[kind][n] > 1 else 1.0)
            matches *= 1 - share if term.excluded else share
            if not term.excluded:
                at_most = min(at_most, most[kind][n])
        expected[kind] = Expected(column_rows, matches, column_rows * at_most)
    return expected


@lru_cache(maxsize=4)
def statistics_statement(language: str) -> TextClause:
    """What PostgreSQL's statistics say of each term (``terms``, numbered from 1) in each
    searched column: rows of (column, its rows, the least share listed, term, share of the
    rows holding one of the term's lexemes, NULL when not listed). pg_stats keeps, of a
    tsvector column, its most common lexemes (about 1,000) and the share of its non-null
    rows each is in, followed by the least and greatest of those shares."""
    return text(
        f"""
        WITH terms AS (
            SELECT t.n, l.lexeme
            FROM unnest(CAST(:terms AS text[])) WITH ORDINALITY AS t(words, n)
            CROSS JOIN LATERAL unnest(
                tsvector_to_array(to_tsvector('{language}'::regconfig, t.words))
            ) AS l(lexeme)
        ), columns AS MATERIALIZED (
            SELECT s.tablename, s.attname, s.null_frac, s.most_common_elem_freqs AS shares,
                   CAST(CAST(s.most_common_elems AS text) AS text[]) AS lexemes
            FROM pg_stats AS s
            WHERE s.schemaname = current_schema() AND NOT s.inherited
              AND (s.tablename, s.attname) IN (
                  ('conversations', '{TITLE_VECTOR}'),
                  ('messages', '{PROMPT_VECTOR}'),
                  ('messages', '{RESPONSE_VECTOR}'))
        )
        SELECT c.attname, greatest(r.reltuples, 0) * (1 - c.null_frac),
               c.shares[cardinality(c.lexemes) + 1], terms.n,
               c.shares[array_position(c.lexemes, terms.lexeme)]
        FROM columns AS c
        JOIN pg_class AS r
          ON r.oid = to_regclass(quote_ident(current_schema()) || '.' || c.tablename)
        CROSS JOIN terms
        """
    ).bindparams(bindparam("terms", type_=ARRAY(Text)))
