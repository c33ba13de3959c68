"""What a diary entry may contain (CLIENT_CONTRACT §3.9): weather, happiness, categories, text, images."""

from __future__ import annotations

WEATHERS = frozenset({"sunny", "partlyCloudy", "cloudy", "rainy", "snowy"})
# The client turns category keys into image names (``<key>NoSpace``), so only these may be stored.
CATEGORIES = frozenset(
    "beer books coffee cook dessert drive exercise food friends game home love movie music nature ott pet "
    "picture youtube sea shopping sleep study trip".split()
)
MIN_HAPPINESS, MAX_HAPPINESS = 1, 5
MAX_CATEGORIES = 3
MAX_TEXT = 3000
MAX_IMAGES = 5  # the client's picker allows 2; edits re-upload the existing ones
MAX_IMAGE_BYTES = 25 * 1024 * 1024  # full-resolution PNGs from the client reach 10-25 MB


#: How many unknown categories a refusal quotes, and how much of each.
QUOTED_UNKNOWN, QUOTED_CHARS = 5, 40


class InvalidEntry(ValueError):
    """A field of a diary entry the client could not have meant; the message names it."""


def clean_categories(items: list[str]) -> list[str]:
    """Known categories, duplicates dropped (first kept), at most ``MAX_CATEGORIES``."""
    unique = list(dict.fromkeys(items))
    unknown = [c for c in unique if c not in CATEGORIES]
    if unknown:
        # The reason quotes a few of them, shortened: a body may carry a megabyte of made-up ones.
        quoted = [c if len(c) <= QUOTED_CHARS else c[:QUOTED_CHARS] + "…" for c in unknown[:QUOTED_UNKNOWN]]
        more = f" and {len(unknown) - QUOTED_UNKNOWN} more" if len(unknown) > QUOTED_UNKNOWN else ""
        raise InvalidEntry(
            f"categoryList has unknown categories {quoted}{more}; allowed: {sorted(CATEGORIES)}"
        )
    if len(unique) > MAX_CATEGORIES:
        raise InvalidEntry(f"categoryList must have at most {MAX_CATEGORIES} categories")
    return unique


def check_weather(value: str) -> str:
    """One of the client's five weather keys."""
    if value not in WEATHERS:
        raise InvalidEntry(f"weather must be one of {sorted(WEATHERS)}")
    return value
