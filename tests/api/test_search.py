"""GET /search: full-text search over the caller's titles, prompts and answers."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest

from app.models import Conversation, Message
from tests.conftest import keyed_client

NEXT = re.compile(r'^<([^>]+)>; rel="next"$')


@pytest.fixture
def add(database, owner_id):
    """Add a conversation with ended exchanges (prompt, answer): returns (its id, message
    ids)."""

    def make(title=None, *exchanges, owner=None, model="m", meta=None, at=None):
        extra = {} if at is None else {"created_at": at, "updated_at": at}
        (conversation_id,) = database.add(
            Conversation(
                title=title, model_type=model, owner_id=owner or owner_id, meta=meta or {}, **extra
            )
        )
        ids = database.add(
            *[
                Message(
                    conversation_id=conversation_id,
                    prompt_content=prompt,
                    response_content=answer,
                    is_success=True,
                    **extra,
                )
                for prompt, answer in exchanges
            ]
        )
        return conversation_id, ids

    return make


def search(client, q, **params):
    response = client.get("/search", query_string={"q": q, **params})
    assert response.status_code == 200, response.json
    return response.json["results"]


def found(client, q, **params):
    """(field, conversation id, message id) of each result, best first."""
    return [
        (r["field"], r["conversation_id"], r["message_id"]) for r in search(client, q, **params)
    ]


def walk(client, q, take, **params):
    """Every page of a search, following the Link headers: (all results, each page's order)."""
    results, orders = [], []
    url = "/search?" + urlencode({"q": q, "take": take, **params})
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.json
        results += response.json["results"]
        orders.append(response.json["order"])
        link = response.headers.get("Link")
        assert (link is None) == (response.json["next_cursor"] is None)
        url = NEXT.match(link)[1] if link else None
    return results, orders


def keys(results):
    """(field, conversation id, message id) of each result."""
    return [(r["field"], r["conversation_id"], r["message_id"]) for r in results]


def encoded(key) -> str:
    """A cursor's form, for a key of our choosing."""
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def plain(snippet: str) -> str:
    """A snippet with its marks joined across a phrase's words (engines differ there)."""
    return snippet.replace("</mark> <mark>", " ")


class TestFinds:
    def test_a_title(self, client, add):
        conversation, _ = add("Trip to Lyon")

        (result,) = search(client, "lyon")

        assert result["field"] == "title"
        assert (result["conversation_id"], result["message_id"]) == (conversation, None)
        assert result["snippet"] == "Trip to <mark>Lyon</mark>"
        assert result["rank"] > 0

    def test_a_prompt_and_an_answer(self, client, add):
        conversation, (message,) = add(None, ("Where to eat?", "Try a bouchon."))

        assert found(client, "eat") == [("prompt", conversation, message)]
        assert found(client, "bouchon") == [("response", conversation, message)]

    def test_every_field_that_matches_is_a_result(self, client, add):
        conversation, (message,) = add("Lyon", ("Lyon?", "Lyon."))

        assert sorted(found(client, "lyon")) == sorted(
            [
                ("title", conversation, None),
                ("prompt", conversation, message),
                ("response", conversation, message),
            ]
        )

    def test_all_words_must_match_in_any_order_and_case(self, client, add):
        add(None, ("the old TOWN of Lyon", ""), ("the old harbour", ""))

        assert [r["snippet"].count("<mark>") for r in search(client, "town OLD")] == [2]

    def test_nothing_is_an_empty_list(self, client, add):
        add("Trip", ("a", "b"))

        response = client.get("/search?q=absent")

        assert response.json == {"results": [], "next_cursor": None, "order": "rank"}
        assert "Link" not in response.headers

    def test_an_answer_changed_later_is_found_by_its_new_text(self, client, add, database):
        _, (message,) = add(None, ("q", "draft"))

        database.execute(
            "UPDATE messages SET response_content = 'final' WHERE id = :id", id=message
        )

        assert found(client, "draft") == []
        assert [r[2] for r in found(client, "final")] == [message]

    def test_deleted_conversations_are_gone_from_the_index(self, client, add):
        conversation, _ = add("Lyon", ("Lyon", "Lyon"))

        client.delete(f"/conversations/{conversation}")

        assert found(client, "lyon") == []


class TestRankAndSnippets:
    def test_more_occurrences_rank_first(self, client, add):
        _, (once, thrice) = add(
            None,
            ("paris is a city with many museums and parks", ""),
            ("paris paris paris", ""),
        )

        results = search(client, "paris")

        assert [r["message_id"] for r in results] == [thrice, once]
        assert results[0]["rank"] > results[1]["rank"]

    def test_the_snippet_marks_matches_and_escapes_the_rest(self, client, add):
        add(None, ("a <script>alert(1)</script> near the keyword", ""))

        (result,) = search(client, "keyword")

        assert "<mark>keyword</mark>" in result["snippet"]
        assert "<script>" not in result["snippet"]

    def test_phrases_are_marked(self, client, add):
        add(None, ("", "walk through the old town at night"))

        (result,) = search(client, '"old town"')

        assert "<mark>old town</mark>" in plain(result["snippet"])


class TestSyntax:
    def test_a_quoted_phrase_needs_its_words_together_in_order(self, client, add):
        _, (together, apart) = add(None, ("the old town", ""), ("the town is old", ""))

        assert [r[2] for r in found(client, '"old town"')] == [together]
        assert sorted(r[2] for r in found(client, "old town")) == [together, apart]

    def test_a_minus_excludes_a_word_or_a_phrase(self, client, add):
        _, (plain_one, with_word, _) = add(
            None, ("lyon food", ""), ("lyon food bouchon", ""), ("lyon food old town", "")
        )

        assert [r[2] for r in found(client, 'lyon -bouchon -"old town"')] == [plain_one]
        assert sorted(r[2] for r in found(client, "lyon -town")) == [plain_one, with_word]

    def test_punctuation_between_words_makes_a_phrase(self, client, add):
        _, (message,) = add(None, ("send an e-mail", ""))

        assert [r[2] for r in found(client, "e-mail")] == [message]

    def test_operators_of_either_engine_are_just_words(self, client, add):
        _, (message,) = add(None, ("this OR that AND NOT those", ""))

        assert [r[2] for r in found(client, "OR NOT")] == [message]
        assert found(client, "this | missing") == []
        assert found(client, "this & missing") == []

    @pytest.mark.parametrize(
        ("q", "message"),
        [
            ("", "Give at least one word to look for (not only -exclusions)."),
            ("   ", "Give at least one word to look for (not only -exclusions)."),
            ("!!! ???", "Give at least one word to look for (not only -exclusions)."),
            ("-lyon", "Give at least one word to look for (not only -exclusions)."),
            ('"old town', "A quoted phrase is not closed."),
            ('lyon "', "A quoted phrase is not closed."),
            ("x" * 257, "At most 256 characters."),
            (" ".join(["w"] * 17), "At most 16 words or phrases."),
        ],
        ids=[
            "empty",
            "blank",
            "punctuation",
            "only-excluded",
            "unclosed",
            "lone-quote",
            "long",
            "17-terms",
        ],
    )
    def test_malformed_queries_are_422(self, client, q, message):
        response = client.get("/search", query_string={"q": q})

        assert response.status_code == 422
        assert response.json["errors"] == {"query": {"q": [message]}}

    def test_a_missing_query_is_422(self, client):
        response = client.get("/search")

        assert response.status_code == 422
        assert response.json["errors"] == {"query": {"q": ["Missing data for required field."]}}

    @pytest.mark.parametrize(
        "cursor",
        [
            "nope",
            "WzEsIDIsIDNd" + "x",
            encoded([]),
            encoded(["a", 0, 1]),
            encoded([0.5, 3, 1]),
            encoded(["recent", 1.5, 0, 1]),
            encoded(["recent", 10**20, 0, 1]),
            encoded(["recent", 0, 0, 0]),
            encoded(["newest", 0, 0, 1]),
        ],
    )
    def test_a_cursor_the_service_did_not_give_is_422(self, client, cursor):
        response = client.get("/search", query_string={"q": "a", "cursor": cursor})

        assert response.status_code == 422
        assert response.json["errors"] == {"query": {"cursor": ["Not a cursor this service gave."]}}


class TestLanguages:
    def test_accents_are_kept_and_case_is_folded(self, client, add):
        _, (message,) = add(None, ("Un café près de l'École", ""))

        assert [r[2] for r in found(client, "CAFÉ école")] == [message]
        assert found(client, "cafe") == []

    def test_a_decomposed_accent_in_the_query_matches_the_composed_text(self, client, add):
        _, (message,) = add(None, ("café", ""))

        assert [r[2] for r in found(client, "cafe\u0301")] == [message]

    @pytest.mark.parametrize(
        ("text", "q"),
        [
            ("Привет, мир! Как дела?", "мир привет"),
            ("Καλημέρα κόσμε", "ΚΌΣΜΕ"),
            ("東京 タワー に 行く", "タワー"),
            ("مرحبا بالعالم", "بالعالم"),
        ],
        ids=["cyrillic", "greek", "japanese", "arabic"],
    )
    def test_non_latin_text_is_found(self, client, add, text, q):
        _, (message,) = add(None, (text, ""))

        assert [r[2] for r in found(client, q)] == [message]


class TestOwnership:
    def test_never_finds_somebody_elses_text(self, client, add, make_account):
        bob = make_account("bob")
        add("secret plans", ("secret prompt", "secret answer"), owner=bob.user_id)
        mine, _ = add("not secret")

        assert found(client, "secret") == [("title", mine, None)]

    def test_another_users_key_sees_only_their_own(self, app, add, make_account, alice):
        bob = make_account("bob")
        add("lyon")
        bobs, _ = add("lyon", owner=bob.user_id)

        assert found(keyed_client(app, bob.key), "lyon") == [("title", bobs, None)]

    def test_only_an_admin_searches_others_with_owner(self, app, client, add, make_account, alice):
        bob = make_account("bob")
        root = keyed_client(app, make_account("root", admin=True).key)
        alices, _ = add("lyon")
        bobs, _ = add("lyon", owner=bob.user_id)

        assert client.get("/search?q=lyon&owner=all").status_code == 403
        assert sorted(r[1] for r in found(root, "lyon", owner="all")) == [alices, bobs]
        assert [r[1] for r in found(root, "lyon", owner=bob.user_id)] == [bobs]
        assert found(root, "lyon") == []  # the admin's own: none


class TestFilters:
    def test_by_model(self, client, add):
        add("lyon", model="m1")
        other, _ = add("lyon", model="m2")

        assert found(client, "lyon", model="m2") == [("title", other, None)]

    def test_by_metadata(self, client, add):
        add("lyon", meta={"team": "a"})
        wanted, _ = add("lyon", meta={"team": "b", "env": "prod"})

        assert [r[1] for r in found(client, "lyon", **{"metadata[team]": "b"})] == [wanted]
        assert found(client, "lyon", **{"metadata[team]": "b", "metadata[env]": "dev"}) == []

    def test_by_time(self, client, add):
        early = datetime(2026, 1, 1, tzinfo=UTC)
        late = datetime(2026, 6, 1, tzinfo=UTC)
        _, (old,) = add(None, ("lyon", ""), at=early)
        _, (new,) = add(None, ("lyon", ""), at=late)

        assert [r[2] for r in found(client, "lyon", to="2026-03-01T00:00:00Z")] == [old]
        assert [r[2] for r in found(client, "lyon", **{"from": "2026-03-01T00:00:00+00:00"})] == [
            new
        ]
        assert found(client, "lyon", **{"from": "2026-06-01T00:00:01Z"}) == []

    def test_a_bad_date_is_422(self, client):
        response = client.get("/search?q=a&from=yesterday")

        assert response.status_code == 422
        assert list(response.json["errors"]["query"]) == ["from"]


class TestPages:
    def test_cursor_pages_walk_every_result_once_best_first(self, client, add):
        add("lyon lyon", *[("lyon " * (n % 3 + 1), "lyon") for n in range(7)])

        every = search(client, "lyon", take=100)
        seen, orders = walk(client, "lyon", 3)

        assert len(every) == 15
        assert seen == every
        assert orders == ["rank"] * 5
        assert [r["rank"] for r in every] == sorted((r["rank"] for r in every), reverse=True)

    def test_take_bounds_are_422(self, client):
        assert client.get("/search?q=a&take=0").status_code == 422
        assert client.get("/search?q=a&take=101").status_code == 422

    def test_statements_are_constant(self, client, add, database):
        add("lyon", *[("lyon", "lyon")] * 30)
        client.get("/conversations?take=1")  # the key is cached from here on

        with database.count_statements() as statements:
            client.get("/search?q=lyon&take=50")

        if postgresql(database):
            # What the statistics expect, then the page with its snippets.
            assert len(statements) == 2
        else:
            # The page, then one snippet query per field on it (FTS5 makes them in a MATCH).
            assert len(statements) == 4


def postgresql(database) -> bool:
    return database.app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql")


T1 = datetime(2026, 1, 1, tzinfo=UTC)
T2 = T1 + timedelta(days=1)
T3 = T1 + timedelta(days=2)


class TestBroadQueries:
    """Past SEARCH_RANKED_MAX matches, results come newest first, every one of them."""

    # The first page counts up to limit + 1 matches, titles first, then prompts, then
    # answers: these limits stop it in each kind of hit.
    @pytest.mark.parametrize("limit", [1, 3, 5, 7])
    def test_past_the_limit_every_match_comes_once_newest_first(
        self, client, add, configure, limit
    ):
        configure(SEARCH_RANKED_MAX=limit)
        old, (m1, m2) = add("lyon", ("lyon", "lyon"), ("lyon", "paris"), at=T1)
        mid, (m3, m4) = add(None, ("paris", "lyon"), ("lyon lyon", "lyon"), at=T2)
        new, _ = add("about lyon", at=T3)
        add("paris", ("paris", "paris"), at=T3)

        results, orders = walk(client, "lyon", 2)

        # When written, newest first; at the same time a title, then prompts, then answers;
        # then the higher id first.
        assert keys(results) == [
            ("title", new, None),
            ("prompt", mid, m4),
            ("response", mid, m4),
            ("response", mid, m3),
            ("title", old, None),
            ("prompt", old, m2),
            ("prompt", old, m1),
            ("response", old, m1),
        ]
        assert orders == ["recent"] * 4

    def test_up_to_the_limit_a_query_is_ranked(self, client, add, configure):
        configure(SEARCH_RANKED_MAX=3)
        _, (once, twice, thrice) = add(
            None, ("lyon", ""), ("lyon lyon", ""), ("lyon lyon lyon", ""), at=T1
        )

        ranked, ranked_orders = walk(client, "lyon", 2)
        add(None, ("lyon", ""), at=T2)
        listed, listed_orders = walk(client, "lyon", 2)

        assert [r["message_id"] for r in ranked] == [thrice, twice, once]
        assert ranked_orders == ["rank", "rank"]
        assert len(listed) == 4
        assert listed_orders == ["recent", "recent"]

    def test_an_exclusion_past_the_limit_finds_exactly_its_matches(self, client, add, configure):
        configure(SEARCH_RANKED_MAX=2)
        _, ids = add(
            None,
            *[("lyon food", ""), ("lyon bouchon", ""), ("lyon old town", "")] * 3,
            at=T1,
        )

        results, orders = walk(client, 'lyon -bouchon -"old town"', 2)

        assert [r["message_id"] for r in results] == sorted(ids[::3], reverse=True)
        assert set(orders) == {"recent"}

    def test_filters_hold_past_the_limit(self, client, add, configure):
        configure(SEARCH_RANKED_MAX=1)
        add(None, ("lyon", ""), ("lyon", ""), at=T1, model="m1")
        _, wanted = add(None, ("lyon", ""), ("lyon", ""), at=T2, model="m1")
        add(None, ("lyon", ""), ("lyon", ""), at=T2, model="m2")
        add(None, ("lyon", ""), ("lyon", ""), at=T3, model="m1")

        results, orders = walk(
            client, "lyon", 1, model="m1", **{"from": T2.isoformat(), "to": T3.isoformat()}
        )

        assert [r["message_id"] for r in results] == sorted(wanted, reverse=True)
        assert orders == ["recent", "recent"]

    def test_a_cursor_keeps_its_first_pages_order(self, client, add, configure):
        configure(SEARCH_RANKED_MAX=3)
        _, (_, thrice) = add(None, ("lyon", ""), ("lyon lyon lyon", ""), at=T1)
        first = client.get("/search?q=lyon&take=1").json
        add(None, *[("lyon", "")] * 3, at=T2)

        following = client.get(f"/search?q=lyon&take=1&cursor={first['next_cursor']}").json

        assert [r["message_id"] for r in first["results"]] == [thrice]
        assert first["order"] == following["order"] == "rank"
        assert following["results"][0]["rank"] <= first["results"][0]["rank"]

    @pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
    def test_statistics_send_a_common_word_straight_to_newest_first(
        self, client, add, configure, database
    ):
        # PostgreSQL's statistics only: SQLite counts the matches of every query.
        configure(SEARCH_RANKED_MAX=3)
        add(None, *[("lyon", "")] * 10, at=T1)
        client.get("/conversations?take=1")  # the key is cached from here on

        with database.count_statements() as unknown:
            client.get("/search?q=lyon")
        database.execute("ANALYZE messages")
        with database.count_statements() as known:
            client.get("/search?q=lyon")

        # Statistics, the ranked page (more matches than the limit), the newest-first page.
        assert len(unknown) == 3
        # Statistics saying lyon is in every prompt, the newest-first page.
        assert len(known) == 2
