"""Happiness charts and recommendations as pure functions, against values worked out by hand."""

from __future__ import annotations

import random

from feeds.happiness import (
    FALLBACK_SENTENCE,
    Entry,
    analysis,
    best_categories,
    month_chart,
    parse_sentences,
    recommendations,
    sentences,
    year_chart,
)


def test_a_bom_does_not_hide_the_first_category() -> None:
    table = parse_sentences("\ufeffmovie=a,b\nbeer=c\n\n")
    assert table == {"movie": ["a", "b"], "beer": ["c"]}
    shipped = sentences()
    assert sorted(shipped) == ["beer", "cook", "food", "love", "movie", "music", "study", "trip"]
    assert shipped["movie"][0] == "팝콘 먹으면서 영화 보기" and len(shipped["movie"]) == 7


def test_month_chart_has_the_requested_months_length_and_zero_for_empty_days() -> None:
    entries = [Entry(2024020317000000, 5), Entry(2024022923000000, 1)]
    chart = month_chart(2024020100000000, entries)
    assert len(chart) == 29
    assert chart[0] == {"happiness": 0.0, "formattedDate": "1"}
    assert chart[2] == {"happiness": 5.0, "formattedDate": "3"}
    assert chart[28] == {"happiness": 1.0, "formattedDate": "29"}
    assert len(month_chart(2023020100000000, [])) == 28
    # Of two entries on one day (impossible in storage, possible in input), the later one counts.
    assert (
        month_chart(2024010100000000, [Entry(2024010523000000, 2), Entry(2024010501000000, 4)])[4][
            "happiness"
        ]
        == 2.0
    )


def test_year_chart_averages_each_month() -> None:
    entries = [Entry(2024010100000000, 2), Entry(2024013100000000, 5), Entry(2024120100000000, 4)]
    chart = year_chart(entries)
    assert [p["formattedDate"] for p in chart] == [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
    ]  # fmt: skip
    assert [p["happiness"] for p in chart] == [3.5] + [0.0] * 10 + [4.0]


def test_best_categories_rank_by_points_then_uses_then_name() -> None:
    entries = [
        Entry(1, 5, ("coffee", "friends")),  # coffee 5, friends 5
        Entry(2, 3, ("coffee", "movie")),  # coffee 8, movie 3
        Entry(3, 1, ("trip", "movie")),  # movie 4, trip 1
        Entry(4, 2, ("beer",)),
        Entry(5, 2, ("sea",)),
    ]
    assert best_categories(entries) == ["coffee", "friends", "movie"]
    # friends (5 points, 1 use) and dessert (5 points, 2 uses): more uses first; equal uses: by name.
    tied = [
        Entry(1, 5, ("friends",)),
        Entry(2, 2, ("dessert",)),
        Entry(3, 3, ("dessert",)),
        Entry(4, 5, ("book",)),
    ]
    assert best_categories(tied) == ["dessert", "book", "friends"]
    assert best_categories([]) == []


def test_recommendations_take_three_per_rank_and_at_most_ten() -> None:
    table = sentences()
    got = recommendations(["movie", "beer", "trip"], random.Random(7))
    # movie: min(9, 7) = 7, beer: min(6, 5) = 5, trip: min(3, 5) = 3 -> 15 candidates, 10 kept.
    assert len(got) == 10 and len(set(got)) == 10
    pool = set(table["movie"]) | set(table["beer"]) | set(table["trip"])
    assert set(got) <= pool
    single = recommendations(["coffee", "friends", "movie"], random.Random(1))
    # Only movie has sentences, at rank 3 of 3: (3 - 2) * 3 = 3 of them.
    assert len(single) == 3 and set(single) <= set(table["movie"])


def test_recommendations_are_never_empty() -> None:
    assert recommendations([], random.Random(0)) == [FALLBACK_SENTENCE]
    assert recommendations(["coffee"], random.Random(0)) == [FALLBACK_SENTENCE]
    assert analysis([], random.Random(0)) == {
        "bestCategoryList": [],
        "recommendCategoryList": [FALLBACK_SENTENCE],
    }
