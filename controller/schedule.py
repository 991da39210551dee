"""Validate a cron schedule the way a Kubernetes CronJob will read it, with a message that says
which field is wrong and why (the API server only says the CronJob was rejected)."""

from __future__ import annotations

MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
FIELDS = (
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day of month", 1, 31, None),
    ("month", 1, 12, MONTHS),
    ("day of week", 0, 7, DAYS),
)


class ScheduleError(ValueError):
    pass


def _value(text: str, low: int, high: int, names: list[str] | None, field: str) -> int:
    if names and text.lower() in names:
        return names.index(text.lower()) + (1 if names is MONTHS else 0)
    if not text.isdigit():
        raise ScheduleError(f"{field}: {text!r} is not a number")
    value = int(text)
    if not low <= value <= high:
        raise ScheduleError(f"{field}: {value} is outside {low}-{high}")
    return value


def _check_field(text: str, field: str, low: int, high: int, names: list[str] | None) -> None:
    for item in text.split(","):
        if not item:
            raise ScheduleError(f"{field}: empty list item in {text!r}")
        base, _, step = item.partition("/")
        if step and (not step.isdigit() or int(step) == 0):
            raise ScheduleError(f"{field}: step {step!r} must be a positive number")
        if base in ("*", "?"):
            continue
        first, dash, last = base.partition("-")
        start = _value(first, low, high, names, field)
        if dash:
            end = _value(last, low, high, names, field)
            if end < start:
                raise ScheduleError(f"{field}: range {base!r} runs backwards")


def validate_schedule(schedule: str) -> None:
    """Raise ``ScheduleError`` unless ``schedule`` is a CronJob schedule."""
    text = schedule.strip()
    if not text:
        raise ScheduleError("schedule is empty")
    if text.upper().startswith(("TZ=", "CRON_TZ=")):
        raise ScheduleError("time zones in the schedule are not supported by CronJobs")
    if text.startswith("@"):
        if text.lower() not in MACROS:
            raise ScheduleError(f"unknown schedule macro {text!r}")
        return
    parts = text.split()
    if len(parts) != 5:
        raise ScheduleError(
            f"a schedule has 5 fields (minute hour day month weekday), got {len(parts)}"
        )
    for part, (field, low, high, names) in zip(parts, FIELDS, strict=True):
        _check_field(part, field, low, high, names)
