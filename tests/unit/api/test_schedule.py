"""When a cron schedule fires, read as the CronJob controller reads it."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.schedule import ScheduleError, parse_schedule

T0 = dt.datetime(2026, 12, 7, 10, 7, 30, tzinfo=dt.UTC)  # a Monday


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def fires(schedule: str, after: dt.datetime = T0, count: int = 3) -> list[dt.datetime]:
    return parse_schedule(schedule).fires_after(after, count)


def test_every_quarter_hour_fires_at_the_next_quarters_strictly_after_the_time() -> None:
    assert fires("*/15 * * * *") == [
        at("2026-12-07T10:15"),
        at("2026-12-07T10:30"),
        at("2026-12-07T10:45"),
    ]
    assert fires("*/15 * * * *", at("2026-12-07T10:15"), 1) == [at("2026-12-07T10:30")]


def test_descriptors_mean_what_cron_means() -> None:
    assert fires("@hourly", count=1) == [at("2026-12-07T11:00")]
    assert fires("@daily", count=2) == [at("2026-12-08T00:00"), at("2026-12-09T00:00")]
    assert fires("@midnight", count=1) == fires("0 0 * * *", count=1)
    assert fires("@weekly", count=1) == [at("2026-12-13T00:00")]  # a Sunday
    assert fires("@monthly", count=1) == [at("2027-01-01T00:00")]
    assert fires("@yearly", count=1) == fires("@annually", count=1) == [at("2027-01-01T00:00")]


def test_every_adds_its_interval() -> None:
    assert fires("@every 90m", count=2) == [
        T0 + dt.timedelta(minutes=90),
        T0 + dt.timedelta(minutes=180),
    ]


def test_ranges_steps_and_names_are_read() -> None:
    assert fires("0 9-17/4 * * mon-fri", count=4) == [
        at("2026-12-07T13:00"),
        at("2026-12-07T17:00"),
        at("2026-12-08T09:00"),
        at("2026-12-08T13:00"),
    ]
    assert fires("5/20 * * * *", count=2) == [at("2026-12-07T10:25"), at("2026-12-07T10:45")]
    assert fires("0 0 1 JAN *", count=1) == [at("2027-01-01T00:00")]
    assert fires("0 0 * * 7", count=1) == fires("0 0 * * SUN", count=1) == [at("2026-12-13T00:00")]


def test_day_of_month_and_day_of_week_both_restricted_fire_on_either() -> None:
    # Robfig's (and Vixie cron's) rule: the 15th, and every Friday.
    assert fires("0 0 15 * FRI", count=3) == [
        at("2026-12-11T00:00"),
        at("2026-12-15T00:00"),
        at("2026-12-18T00:00"),
    ]
    # One of them a star: both must match (every Friday of December only).
    assert fires("0 0 * 12 FRI", count=2) == [at("2026-12-11T00:00"), at("2026-12-18T00:00")]


def test_a_leap_day_schedule_fires_in_the_next_leap_year() -> None:
    assert fires("0 0 29 2 *", count=1) == [at("2028-02-29T00:00")]


def test_a_schedule_that_never_fires_gives_no_slots() -> None:
    assert fires("0 0 31 2 *", count=2) == []


def test_a_time_zone_prefix_is_read_as_utc() -> None:
    assert fires("TZ=Europe/Berlin 0 2 * * *", count=1) == [at("2026-12-08T02:00")]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "* * * *",
        "61 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * * 13 *",
        "*/0 * * * *",
        "a * * * *",
        "5-1 * * * *",
        "@every nothing",
        "@fortnightly",
    ],
)
def test_what_is_not_a_schedule_is_refused_saying_so(text: str) -> None:
    with pytest.raises(ScheduleError):
        parse_schedule(text)


minute_lists = st.lists(st.integers(0, 59), min_size=1, max_size=4, unique=True)
hour_lists = st.lists(st.integers(0, 23), min_size=1, max_size=3, unique=True)


@settings(max_examples=60, deadline=None)
@given(minutes=minute_lists, hours=hour_lists, offset=st.integers(0, 3 * 24 * 60))
def test_slots_are_exactly_the_matching_minutes_in_order(
    minutes: list[int], hours: list[int], offset: int
) -> None:
    schedule = f"{','.join(map(str, minutes))} {','.join(map(str, hours))} * * *"
    after = T0 + dt.timedelta(minutes=offset)
    found = fires(schedule, after, 5)
    expected: list[dt.datetime] = []
    minute = after.replace(second=0, microsecond=0)
    while len(expected) < 5:
        minute += dt.timedelta(minutes=1)
        if minute.minute in minutes and minute.hour in hours:
            expected.append(minute)
    assert found == expected
