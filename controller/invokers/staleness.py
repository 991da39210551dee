"""Whether an invoker's backups stopped happening: ``BackupStale``.

An invoker is stale when no session of it succeeded for longer than it promised: by default
once two slots of its schedule have passed since its last successful session began (or since it
was created, when none ever succeeded), or, with the annotation
``stash.appscode.com/stale-after: <duration>``, once that long has passed since its last
successful session ended. The slots are read from ``spec.schedule`` itself, not from its
CronJob, so a CronJob that stopped firing (deleted, suspended by hand, its pods refused) makes the
invoker stale as surely as sessions that fail. A paused invoker promises nothing and is never
stale; one without a schedule is judged only with the annotation.

The messages hold times, not ages, so that judging again writes nothing until the verdict or
the last success changes; ``Staleness.due`` is when a fresh invoker turns stale (the reconciler
looks again then).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from api import constants as c
from api.conditions import now_rfc3339, parse_rfc3339
from api.objects import JSON
from api.schedule import ScheduleError, parse_schedule
from api.units import parse_duration
from api.views import Obj, newest_succeeded, session_ended


@dataclass(frozen=True)
class LastSuccess:
    """The newest Succeeded session of an invoker."""

    session: str
    began: dt.datetime  # its creation: its slot
    ended: dt.datetime


@dataclass(frozen=True)
class Staleness:
    stale: bool
    reason: str
    message: str
    due: dt.datetime | None = None  # when it turns stale if nothing succeeds first


def last_success(sessions: Iterable[JSON]) -> LastSuccess | None:
    """The newest Succeeded one among an invoker's ``sessions``."""
    newest = newest_succeeded(sessions)
    if newest is None:
        return None
    try:
        return LastSuccess(newest.name, parse_rfc3339(newest.meta.created), session_ended(newest))
    except ValueError:  # no creation time: nothing to judge by
        return None


def _when(at: dt.datetime) -> str:
    return now_rfc3339(at)


def _since(last: LastSuccess | None, created: str) -> str:
    if last is None:
        return f"no backup session of it has succeeded since it was created ({created})"
    return f"its last successful backup session, {last.session}, ended {_when(last.ended)}"


def _stale_after(invoker: Obj) -> tuple[dt.timedelta | None, str]:
    """The age the annotation allows (None: unset), and what is wrong with it, if anything."""
    text = invoker.meta.annotation(c.STALE_AFTER_ANNOTATION)
    if not text:
        return None, ""
    age = parse_duration(text)
    if age <= dt.timedelta(0):
        return None, f"annotation {c.STALE_AFTER_ANNOTATION}={text!r} is not a duration such as 36h"
    return age, ""


def staleness(invoker: JSON, last: LastSuccess | None, now: dt.datetime) -> Staleness:
    """Whether ``invoker`` is stale now, given its newest successful session ``last``."""
    view = Obj(invoker)
    if view.spec.paused:
        return Staleness(False, "InvokerPaused", "paused: no backup is expected until resumed")
    created = view.meta.created
    try:
        born = parse_rfc3339(created)
    except ValueError:  # not stored yet: judged from now
        born = now
    age, problem = _stale_after(view)
    note = f" ({problem}; the schedule decides)" if problem else ""
    if age is not None:
        start = last.ended if last is not None else born
        due = start + age
        promise = (
            f"{c.STALE_AFTER_ANNOTATION} allows {view.meta.annotation(c.STALE_AFTER_ANNOTATION)}"
        )
    elif view.spec.schedule:
        try:
            slots = parse_schedule(view.spec.schedule).fires_after(
                last.began if last is not None else born, 2
            )
        except (ScheduleError, ValueError) as exc:
            return Staleness(False, "ScheduleUnreadable", f"cannot judge: {exc}")
        if len(slots) < 2:
            return Staleness(False, "BackupRecent", "its schedule fires too rarely to judge")
        due = slots[1]
        promise = (
            f"its schedule {view.spec.schedule!r} had slots at {_when(slots[0])} and "
            f"{_when(slots[1])} since"
        )
    else:
        return Staleness(
            False,
            "ScheduleNotSet",
            f"no spec.schedule: sessions run on demand only; set {c.STALE_AFTER_ANNOTATION} "
            f"to be told when none succeeded for a while{note}",
        )
    since = _since(last, created)
    if now >= due:
        return Staleness(True, "NoRecentBackup", f"stale: {since}; {promise}{note}")
    return Staleness(False, "BackupRecent", f"{since}; stale from {_when(due)}{note}", due)
