"""Happiness charts and recommendations (BACKEND_SPEC §7), as pure functions over one user's entries.

Fixed from the original: the month chart has the requested month's length, ``category.txt`` is read
without its BOM (so ``movie`` sentences are recommended), best-category ties break by category name,
and the recommendation list is never empty (the client reads ``[0]``).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from kst.dates import day_of_month, days_in_month, month_of_year

MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
BEST_COUNT = 3
MAX_SENTENCES = 10
SENTENCES_PER_RANK = 3
FALLBACK_SENTENCE = "피드 작성하기"
SENTENCES_FILE = Path(__file__).with_name("category.txt")


@dataclass(frozen=True)
class Entry:
    """What the charts need of one diary entry."""

    date: int
    happiness: int
    categories: Sequence[str] = ()


def parse_sentences(text: str) -> dict[str, list[str]]:
    """``key=sentence,sentence,…`` lines; a leading BOM and blank lines are ignored."""
    table: dict[str, list[str]] = {}
    for line in text.lstrip("\ufeff").splitlines():
        key, sep, rest = line.partition("=")
        if sep and key.strip():
            table[key.strip()] = [s.strip() for s in rest.split(",") if s.strip()]
    return table


@cache
def sentences() -> dict[str, list[str]]:
    """The recommendation sentences per category (``category.txt``)."""
    return parse_sentences(SENTENCES_FILE.read_text(encoding="utf-8-sig"))


def month_chart(month_date: int, entries: Iterable[Entry]) -> list[dict[str, object]]:
    """One point per day of the requested month: that day's happiness, ``0.0`` without an entry."""
    values = [0.0] * (days_in_month(month_date) + 1)
    for entry in sorted(entries, key=lambda e: e.date):  # a later entry of a day wins
        values[day_of_month(entry.date)] = float(entry.happiness)
    return [{"happiness": values[d], "formattedDate": str(d)} for d in range(1, len(values))]


def year_chart(entries: Iterable[Entry]) -> list[dict[str, object]]:
    """Twelve points ``Jan``–``Dec``: the mean happiness of each month, ``0.0`` without entries."""
    sums, counts = [0] * 13, [0] * 13
    for entry in entries:
        month = month_of_year(entry.date)
        sums[month] += entry.happiness
        counts[month] += 1
    return [
        {"happiness": sums[m] / counts[m] if counts[m] else 0.0, "formattedDate": MONTH_NAMES[m - 1]}
        for m in range(1, 13)
    ]


def best_categories(entries: Iterable[Entry]) -> list[str]:
    """Up to three categories with the most happiness points (sum of the entries' happiness).

    Ties go to the category with more entries, then to the alphabetically first one.
    """
    points: dict[str, int] = {}
    uses: dict[str, int] = {}
    for entry in entries:
        for category in entry.categories:
            points[category] = points.get(category, 0) + entry.happiness
            uses[category] = uses.get(category, 0) + 1
    ranked = sorted(points, key=lambda c: (-points[c], -uses[c], c))
    return ranked[:BEST_COUNT]


def recommendations(best: Sequence[str], rng: random.Random) -> list[str]:
    """Sentences for the best categories: rank ``j`` of ``n`` contributes up to ``(n-j)*3`` random ones;
    shuffled, at most ten, and never empty."""
    table = sentences()
    picked: list[str] = []
    for rank, category in enumerate(best):
        pool = table.get(category, [])
        picked += rng.sample(pool, min((len(best) - rank) * SENTENCES_PER_RANK, len(pool)))
    rng.shuffle(picked)
    return picked[:MAX_SENTENCES] or [FALLBACK_SENTENCE]


def analysis(entries: Iterable[Entry], rng: random.Random) -> dict[str, list[str]]:
    """``analysisHappiness``: the month's best categories and sentences recommending them."""
    best = best_categories(entries)
    return {"bestCategoryList": best, "recommendCategoryList": recommendations(best, rng)}


#: How the monthly story names a category (the client shows category keys only as pictures).
CATEGORY_NAMES = {
    "beer": "맥주", "books": "독서", "coffee": "커피", "cook": "요리", "dessert": "디저트",
    "drive": "드라이브", "exercise": "운동", "food": "맛있는 음식", "friends": "친구", "game": "게임",
    "home": "집", "love": "사랑", "movie": "영화", "music": "음악", "nature": "자연", "ott": "OTT",
    "pet": "반려동물", "picture": "사진", "youtube": "유튜브", "sea": "바다", "shopping": "쇼핑",
    "sleep": "잠", "study": "공부", "trip": "여행",
}  # fmt: skip


@dataclass(frozen=True)
class MonthStory:
    """One user's month in three figures: days written, mean happiness, best category (or ``None``)."""

    days: int
    mean_happiness: float
    best_category: str | None


def month_story(month_date: int, entries: Iterable[Entry]) -> MonthStory:
    """The story of the month of ``month_date`` by the charts' rules: the days the month chart shows,
    the year chart's mean for that month, and the first of the best categories."""
    listed = list(entries)
    days = sum(1 for point in month_chart(month_date, listed) if point["happiness"])
    mean = year_chart(e for e in listed if month_of_year(e.date) == month_of_year(month_date))
    best = best_categories(listed)
    return MonthStory(
        days=days,
        mean_happiness=float(mean[month_of_year(month_date) - 1]["happiness"]),  # type: ignore[arg-type]
        best_category=best[0] if best else None,
    )
