"""When a cron schedule fires, read as the CronJob controller reads ``spec.schedule``
(robfig/cron's standard parser): five fields (minute, hour, day of month, month, day of week)
with ``*``, ``?``, lists, ranges and steps, month and weekday names, and the descriptors
``@yearly``, ``@annually``, ``@monthly``, ``@weekly``, ``@daily``, ``@midnight``, ``@hourly``
and ``@every <duration>``. Day of month and day of week: when both are restricted a day
matching either fires, else both must match. Times are UTC (the trigger CronJob sets no time
zone).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from api.units import parse_duration

DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS = {m: i + 1 for i, m in enumerate(MONTH_NAMES)}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
# How far ahead a schedule is searched for its next slots: five years holds every real one
# (``0 0 29 2 *`` fires every fourth year); one that fires later is taken as never firing.
HORIZON_DAYS = 5 * 366


class ScheduleError(ValueError):
    """A schedule this reading cannot make sense of (the API server's dry run says more)."""


@dataclass(frozen=True)
class Field:
    values: frozenset[int]
    star: bool  # ``*`` or ``?``: not restricted (matters for day of month / day of week)


def _number(text: str, names: dict[str, int]) -> int:
    key = text.lower()
    if key in names:
        return names[key]
    if not text.isdigit():
        raise ScheduleError(f"{text!r} is not a number")
    return int(text)


def _field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> Field:
    names = names or {}
    values: set[int] = set()
    star = False
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        step = _number(step_text, {}) if step_text else 1
        if step < 1:
            raise ScheduleError(f"{part!r}: a step must be at least 1")
        if span in ("*", "?"):
            start, end = low, high
            star = star or step == 1
        elif "-" in span:
            first, _, last = span.partition("-")
            start, end = _number(first, names), _number(last, names)
        else:
            start = _number(span, names)
            end = high if step_text else start
        if start < low or end > high or start > end:
            raise ScheduleError(f"{part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return Field(frozenset(values), star)


@dataclass(frozen=True)
class Schedule:
    minutes: Field
    hours: Field
    days: Field
    months: Field
    weekdays: Field
    every: dt.timedelta | None = None  # ``@every``: a fixed interval instead of the fields

    def _day_matches(self, day: dt.date) -> bool:
        if day.month not in self.months.values:
            return False
        dom = day.day in self.days.values
        dow = (day.isoweekday() % 7) in self.weekdays.values
        if self.days.star or self.weekdays.star:
            return dom and dow
        return dom or dow

    def fires_after(self, after: dt.datetime, count: int) -> list[dt.datetime]:
        """The first ``count`` slots strictly after ``after`` (fewer when the schedule fires
        less often than ``HORIZON_DAYS``)."""
        after = after.astimezone(dt.UTC)
        if self.every is not None:
            return [after + self.every * (n + 1) for n in range(count)]
        found: list[dt.datetime] = []
        start = after.replace(second=0, microsecond=0)
        hours, minutes = sorted(self.hours.values), sorted(self.minutes.values)
        for offset in range(HORIZON_DAYS):
            day = start.date() + dt.timedelta(days=offset)
            if not self._day_matches(day):
                continue
            for hour in hours:
                for minute in minutes:
                    slot = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC)
                    if slot > after:
                        found.append(slot)
                        if len(found) == count:
                            return found
        return found


def parse_schedule(text: str) -> Schedule:
    """``spec.schedule`` read (a ``TZ=``/``CRON_TZ=`` prefix is left out: read as UTC)."""
    words = text.split()
    if words and words[0].upper().startswith(("TZ=", "CRON_TZ=")):
        words = words[1:]
    if len(words) == 2 and words[0].lower() == "@every":
        try:
            every = parse_duration(words[1])
        except ValueError as exc:
            raise ScheduleError(f"@every {words[1]}: {exc}") from None
        if every <= dt.timedelta(0):
            raise ScheduleError("@every needs a positive interval")
        anything = Field(frozenset(), True)
        return Schedule(anything, anything, anything, anything, anything, every=every)
    if len(words) == 1 and words[0].lower() in DESCRIPTORS:
        words = DESCRIPTORS[words[0].lower()].split()
    if len(words) != 5:
        raise ScheduleError(f"{text!r}: expected five fields or a descriptor such as @daily")
    weekdays = _field(words[4], 0, 7, _DAYS)
    if 7 in weekdays.values:  # 7 is Sunday too
        weekdays = Field(weekdays.values - {7} | {0}, weekdays.star)
    return Schedule(
        _field(words[0], 0, 59),
        _field(words[1], 0, 23),
        _field(words[2], 1, 31),
        _field(words[3], 1, 12, _MONTHS),
        weekdays,
    )
