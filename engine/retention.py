"""Which snapshots a Stash ``RetentionPolicy`` removes: restic's own ``forget`` rules, applied here
to one listing so that one ``restic forget <ids>`` serves every target of a session.

restic applies a policy to groups (by default: one host and one set of paths) of the snapshots a
filter selects; a session needs that once per target (the filter ``--tag target:<kind>/<name>``),
which as restic commands is one start — one key derivation — per target. Here one listing is
grouped by target, host and paths, and each group gets restic's rules (``ApplyPolicy`` of restic
0.18): newest first, a snapshot is kept when it carries one of the ``keepTags`` lists or when it
opens a new bucket (the last N; hours, days, ISO weeks, months, years in the snapshot's own
recorded time zone) of a rule with count left; the oldest snapshot of a group is kept while a
rule still has count left; and, as restic does, a target where a group would lose every
snapshot (a ``keepTags``-only policy) is refused whole. And one guard restic lacks
(``hold_large``): a forget that would remove more than a share of a target's snapshots at once
(half, unless the invoker sets another) is held until the policy is confirmed: a typo in a
policy must not wipe a history. ``tests/integration/test_retention.py``
holds this to restic's own ``forget --dry-run`` on a real repository.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from api.common import RetentionPolicy
from api.constants import CONFIRM_RETENTION_ANNOTATION, RETENTION_HOLD_SHARE_ANNOTATION
from api.objects import JSON
from api.views import items, newest_succeeded
from engine.restic import Snapshot, retention_flags

_FRACTION = re.compile(r"(\.\d{6})\d+")

Bucket = Callable[[dt.datetime, int], object]


def _hour(t: dt.datetime, _: int) -> object:
    return (t.year, t.month, t.day, t.hour)


def _day(t: dt.datetime, _: int) -> object:
    return (t.year, t.month, t.day)


def _week(t: dt.datetime, _: int) -> object:
    year, week, _weekday = t.isocalendar()
    return (year, week)


def _month(t: dt.datetime, _: int) -> object:
    return (t.year, t.month)


def _year(t: dt.datetime, _: int) -> object:
    return t.year


def _always(_: dt.datetime, nr: int) -> object:
    return nr


def snapshot_time(text: str) -> dt.datetime:
    """restic's RFC 3339 time (nanoseconds, its own offset) as an aware datetime in that offset."""
    return dt.datetime.fromisoformat(_FRACTION.sub(r"\1", text.replace("Z", "+00:00")))


def keeps_anything(policy: RetentionPolicy) -> bool:
    """Whether the policy has a rule (restic refuses a ``forget`` without one)."""
    return any(flag.startswith("--keep") for flag in retention_flags(policy))


def apply_policy(
    snapshots: Iterable[Snapshot], policy: RetentionPolicy
) -> tuple[list[Snapshot], list[Snapshot]]:
    """One group's ``(keep, remove)``, newest first, by restic's rules."""
    ordered = sorted(snapshots, key=lambda s: snapshot_time(s.time), reverse=True)
    rules: list[tuple[int, Bucket]] = [
        (count, bucket)
        for count, bucket in (
            (policy.keep_last or 0, _always),
            (policy.keep_hourly or 0, _hour),
            (policy.keep_daily or 0, _day),
            (policy.keep_weekly or 0, _week),
            (policy.keep_monthly or 0, _month),
            (policy.keep_yearly or 0, _year),
        )
        if count > 0
    ]
    left = [count for count, _ in rules]
    last: list[object] = [None] * len(rules)
    tag_lists = [
        {t.strip() for t in entry.split(",") if t.strip()} for entry in policy.keep_tags or []
    ]
    keep: list[Snapshot] = []
    remove: list[Snapshot] = []
    oldest = len(ordered) - 1
    for nr, snap in enumerate(ordered):
        when = snapshot_time(snap.time)
        kept = any(tags and tags <= set(snap.tags) for tags in tag_lists)
        for i, (_, bucket) in enumerate(rules):
            if left[i] <= 0:
                continue
            value = bucket(when, nr)
            if value != last[i] or nr == oldest:
                kept = True
                last[i] = value
                left[i] -= 1
        (keep if kept else remove).append(snap)
    return keep, remove


@dataclass(frozen=True)
class TargetRetention:
    """What the policy does to one target's snapshots."""

    tag: str
    kept: tuple[Snapshot, ...]
    removed: tuple[Snapshot, ...]
    refused: str = ""  # restic's refusal: then nothing of this target is removed
    held: str = ""  # why nothing of this target is removed until the policy is confirmed
    protected: int = 0  # snapshots the policy would remove, kept as the last good copy


def plan(
    snapshots: Sequence[Snapshot], policy: RetentionPolicy, target_tags: Sequence[str]
) -> list[TargetRetention]:
    """For each target tag (as ``restic forget --tag <tag>`` would select): its snapshots
    grouped by host and paths (restic's default ``--group-by host,paths``), the policy applied
    to each group."""
    result = []
    for tag in dict.fromkeys(target_tags):
        groups: dict[tuple[str, tuple[str, ...]], list[Snapshot]] = {}
        for snap in snapshots:
            if tag in snap.tags:
                groups.setdefault((snap.hostname, tuple(sorted(snap.paths))), []).append(snap)
        kept: list[Snapshot] = []
        removed: list[Snapshot] = []
        refused = ""
        for (host, paths), group in groups.items():
            k, r = apply_policy(group, policy)
            if not k and not refused:  # restic never empties a group
                refused = (
                    "refusing to delete last snapshot of snapshot group "
                    f'"host {host}, path [{" ".join(paths)}]"'
                )
            kept += k
            removed += r
        if refused:
            kept, removed = kept + removed, []
        result.append(TargetRetention(tag, tuple(kept), tuple(removed), refused))
    return result


@dataclass(frozen=True)
class LastGood:
    """The invoker's newest Succeeded session and the snapshots its hosts recorded: whatever a
    policy says, retention never removes them (the last copy known good)."""

    session: str
    snapshots: frozenset[str]

    def holds(self, snap: Snapshot) -> bool:
        return snap.id in self.snapshots or snap.short_id in self.snapshots


def last_good(sessions: Iterable[JSON], invoker_kind: str, invoker_name: str) -> LastGood | None:
    """The newest Succeeded session of the invoker among ``sessions`` (BackupSessions as the
    API server lists them), with the snapshot IDs of every host of every target in it."""
    best = newest_succeeded(sessions, invoker_kind, invoker_name)
    if best is None:
        return None
    recorded = {
        str(snap["name"])
        for target in best.status.targets
        for host in target.stats
        for snap in items(host.raw, "snapshots")
        if isinstance(snap, dict) and snap.get("name")
    }
    return LastGood(best.name, frozenset(recorded))


def protect(planned: Sequence[TargetRetention], good: LastGood | None) -> list[TargetRetention]:
    """``planned`` with the snapshots of the last good session kept, whatever the policy says
    (``protected`` counts those it would have removed)."""
    if good is None:
        return list(planned)
    result = []
    for target in planned:
        spared = tuple(s for s in target.removed if good.holds(s))
        if not spared:
            result.append(target)
            continue
        removed = tuple(s for s in target.removed if not good.holds(s))
        result.append(
            replace(target, kept=target.kept + spared, removed=removed, protected=len(spared))
        )
    return result


HOLD_SHARE = 0.5  # a forget may remove at most this share of a target's snapshots unconfirmed


def policy_mark(policy: RetentionPolicy) -> str:
    """A short mark of what ``policy`` keeps (its rules, not its name): confirming a held
    forget confirms this policy, and a changed one is judged again."""
    rules = "\n".join(sorted(retention_flags(policy)))
    return hashlib.sha256(rules.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Guard:
    """How much one forget may remove of a target's snapshots, unless ``confirmed``."""

    share: float = HOLD_SHARE
    confirmed: bool = False


def hold_large(planned: Sequence[TargetRetention], guard: Guard) -> list[TargetRetention]:
    """``planned`` with every target whose removal exceeds ``guard.share`` of its snapshots
    held (nothing of it removed, ``held`` saying why), unless the policy was confirmed."""
    result = []
    for target in planned:
        total = len(target.kept) + len(target.removed)
        if guard.confirmed or not target.removed or len(target.removed) <= guard.share * total:
            result.append(target)
            continue
        why = (
            f"would remove {len(target.removed)} of its {total} snapshots at once, more than "
            f"{guard.share:.0%} of them"
        )
        result.append(replace(target, kept=target.kept + target.removed, removed=(), held=why))
    return result


def guard_of(annotations: Mapping[str, str], policy: RetentionPolicy) -> Guard:
    """The guard an invoker's annotations set for ``policy``: its hold share (a number in
    (0, 1]; anything else keeps the default) and whether this very policy was confirmed."""
    share = HOLD_SHARE
    try:
        asked = float(annotations.get(RETENTION_HOLD_SHARE_ANNOTATION, ""))
        if 0 < asked <= 1:
            share = asked
    except ValueError:
        pass
    confirmed = annotations.get(CONFIRM_RETENTION_ANNOTATION) == policy_mark(policy)
    return Guard(share, confirmed)
