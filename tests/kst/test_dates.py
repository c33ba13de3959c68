"""The client's 16-digit KST timestamps: validation and the day/month ranges queries use."""

from __future__ import annotations

import pytest

from kst.dates import (
    InvalidDate,
    check_date,
    day_of,
    day_of_month,
    days_in_month,
    from_moment,
    month_of_year,
    month_range,
    near_now,
    now_kst,
    to_moment,
    year_range,
)


@pytest.mark.parametrize("value", [2024012017042712, 2024022923595999, 2000010100000000, 9999123123595999])
def test_real_moments_pass(value: int) -> None:
    assert check_date(value) == value


@pytest.mark.parametrize(
    "value",
    [
        202401201704271,  # 15 digits
        20240120170427120,  # 17 digits (milliseconds)
        1999123123595999,
        2023022917042712,  # 29 February of a common year
        2024130117042712,
        2024010024000000,
        2024012024000000,  # hour 24
        2024012017604271,  # minute 60
    ],
)
def test_impossible_values_are_refused_with_a_reason(value: int) -> None:
    with pytest.raises(InvalidDate, match=str(value)[:4]):
        check_date(value)


def test_ranges_cover_exactly_the_day_month_and_year() -> None:
    assert day_of(2024012017042712) == 20240120
    assert month_range(2024012017042712) == (2024010000000000, 2024020000000000)
    assert month_range(2024121500000000) == (2024120000000000, 2025010000000000)
    assert year_range(2024061500000000) == (2024000000000000, 2025000000000000)
    assert (day_of_month(2024010917042712), month_of_year(2024110917042712)) == (9, 11)


@pytest.mark.parametrize(
    ("value", "days"),
    [(2024020100000000, 29), (2023020100000000, 28), (2024043000000000, 30), (2024123100000000, 31)],
)
def test_month_length_is_the_requested_months(value: int, days: int) -> None:
    assert days_in_month(value) == days


def test_now_is_a_valid_16_digit_kst_moment() -> None:
    now = now_kst()
    assert len(str(now)) == 16 and check_date(now) == now


def test_a_date_within_the_tolerance_is_kept_and_one_outside_becomes_now() -> None:
    now = 2024012017042712  # 2024-01-20 17:04:27.12 KST
    assert near_now(now, now, 300) == now
    assert near_now(2024012016592712, now, 300) == 2024012016592712  # exactly 5 minutes before
    assert near_now(2024012017092712, now, 300) == 2024012017092712  # exactly 5 minutes after
    assert near_now(2024012017092713, now, 300) == now  # a hundredth of a second more
    assert near_now(2024012016592711, now, 300) == now
    assert near_now(9999123123595999, now, 300) == now  # would pin a room at the top of every list
    assert near_now(2000010100000000, now, 300) == now
    assert near_now(2024012100000000, 2024012023590000, 300) == 2024012100000000  # across midnight


def test_a_timestamp_round_trips_through_its_moment() -> None:
    for value in (2024012017042712, 2000010100000000, 2024022923595999):
        assert from_moment(to_moment(value)) == value
    assert len(str(now_kst())) == 16
