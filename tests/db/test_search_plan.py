"""How a newest-first search reaches each kind of hit: walk the rows newest first, or read
every match through the full-text index and sort them (app/repositories/search.py)."""

from __future__ import annotations

from app.repositories.search_plan import Expected

TAKE = 21
MILLION = 1_000_000.0


class TestFromTheStatistics:
    def test_a_common_word_is_walked(self):
        # A page is found within 21 * 1M / 30,000 = 700 rows; reading would read 30,000.
        assert Expected(MILLION, 30_000, 30_000).walked(TAKE, None)

    def test_a_word_in_fewer_rows_than_a_walk_would_read_is_read(self):
        # 3,000 matches against a walk of 21 * 1M / 3,000 = 7,000 rows.
        assert not Expected(MILLION, 3_000, 3_000).walked(TAKE, None)

    def test_a_word_the_statistics_do_not_list_is_read(self):
        # It may be in no row at all: a walk would read the whole table.
        assert not Expected(MILLION, 0, 3_300).walked(TAKE, None)

    def test_a_bigger_page_needs_more_matches_to_be_walked(self):
        assert Expected(MILLION, 6_000, 6_000).walked(TAKE, None)
        assert not Expected(MILLION, 6_000, 6_000).walked(100, None)


class TestAfterARankedPageFilledItsWindow:
    def test_walked_when_there_may_be_many_more(self):
        # Words found together more often than their shares say: no bound but the table.
        assert Expected(MILLION, 500, MILLION).walked(TAKE, 2_001)

    def test_read_when_there_cannot_be_many_more(self):
        # A word not listed is in at most 3,300 rows (the least listed share): fewer than
        # the 21 * 1M / 2,001 = 10,500 a walk could read.
        assert not Expected(MILLION, 0, 3_300).walked(TAKE, 2_001)

    def test_the_fewer_counted_the_longer_a_walk_may_be(self):
        # 1,000 counted before the window filled up: a walk could read 21,000 rows.
        assert not Expected(MILLION, 0, 15_000).walked(TAKE, 1_000)
        assert Expected(MILLION, 0, 15_000).walked(TAKE, 2_001)

    def test_without_statistics_walked(self):
        assert Expected(0, 0, float("inf")).walked(TAKE, 2_001)
