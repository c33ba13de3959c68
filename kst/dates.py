"""The client's 16-digit KST timestamps (``yyyyMMddHHmmssSS``, ``SS`` = hundredths of a second).

Feeds are matched by day (``date // 10**8``) or month, never by the exact value (the client's date
round-trip can shift hundredths); month and day filters become ranges over the indexed ``date`` column.
"""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

KST = ZoneInfo("Asia/Seoul")
MIN_DATE = 2000000000000000
MAX_DATE = 9999999999999999
DAY = 10**8
MONTH = 10**10


class InvalidDate(ValueError):
    """A value that is not a 16-digit ``yyyyMMddHHmmssSS`` timestamp of a real calendar moment."""


def check_date(value: int) -> int:
    """``value`` if it is a real ``yyyyMMddHHmmssSS`` moment, else ``InvalidDate`` saying why."""
    if not MIN_DATE <= value <= MAX_DATE:
        raise InvalidDate(f"must be 16 digits yyyyMMddHHmmssSS, got {value}")
    digits = str(value)
    year, month, day, hour, minute, second = (
        int(digits[i : i + w]) for i, w in ((0, 4), (4, 2), (6, 2), (8, 2), (10, 2), (12, 2))
    )
    try:
        datetime(year, month, day, hour, minute, second)
    except ValueError as exc:
        raise InvalidDate(f"{value} is not a calendar date and time ({exc})") from None
    return value


def day_of(value: int) -> int:
    """``yyyyMMdd`` of a timestamp."""
    return value // DAY


def month_range(value: int) -> tuple[int, int]:
    """``[start, end)`` of the timestamps in the month of ``value``."""
    year, month = divmod(value // MONTH, 100)
    following = year * 100 + month + 1 if month < 12 else (year + 1) * 100 + 1
    return (year * 100 + month) * MONTH, following * MONTH


def year_range(value: int) -> tuple[int, int]:
    """``[start, end)`` of the timestamps in the year of ``value``."""
    year = value // 10**12
    return year * 10**12, (year + 1) * 10**12


def days_in_month(value: int) -> int:
    """Length of the month of ``value`` (the requested month, not the server's)."""
    year, month = divmod(value // MONTH, 100)
    return calendar.monthrange(year, month)[1]


def day_of_month(value: int) -> int:
    """1–31."""
    return (value // DAY) % 100


def month_of_year(value: int) -> int:
    """1–12."""
    return (value // MONTH) % 100


def now_kst() -> int:
    """The current moment as the client writes it."""
    return from_moment(datetime.now(KST))


def from_moment(moment: datetime) -> int:
    """``yyyyMMddHHmmssSS`` of an aware datetime, in KST."""
    kst = moment.astimezone(KST)
    return int(kst.strftime("%Y%m%d%H%M%S")) * 100 + kst.microsecond // 10_000


def to_moment(value: int) -> datetime:
    """The KST moment of a timestamp that ``check_date`` accepts."""
    digits = str(value)
    year, month, day, hour, minute, second, hundredths = (
        int(digits[i : i + w]) for i, w in ((0, 4), (4, 2), (6, 2), (8, 2), (10, 2), (12, 2), (14, 2))
    )
    return datetime(year, month, day, hour, minute, second, hundredths * 10_000, tzinfo=KST)


def day_after(now: int, days: int) -> int:
    """``yyyyMMdd`` of the KST day ``days`` after the day of ``now``."""
    return day_of(from_moment(to_moment(now) + timedelta(days=days)))


def near_now(value: int, now: int, tolerance_seconds: float) -> int:
    """``value`` if it lies within ``tolerance_seconds`` of ``now`` (both checked timestamps), else
    ``now``: a client clock far off (or a chosen ``9999…``) cannot date a message away from its sending."""
    if abs(to_moment(value) - to_moment(now)) <= timedelta(seconds=tolerance_seconds):
        return value
    return now
