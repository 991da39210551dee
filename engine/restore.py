"""Restoring what a backup made: a target's files back into place (``stash restore``, the
``pvc-restore`` Function) or a dump streamed into a restore command (``stash restore-dump``, the
PostgreSQL example's restore). A restore command that fails fails the restore, with its own last
lines.

Which snapshots a host restores follows Stash's ``rules``: the first rule naming the host in
``targetHosts``, else the (last) rule without ``targetHosts``. A rule gives ``snapshots`` (by id,
or ``latest``), else ``paths`` (the newest snapshot of the source host holding each path, only
that path restored), else the newest snapshot of the source host (``sourceHost``, by default
the host itself). Snapshots of the target itself (its ``target:<kind>/<name>`` tag) come first;
restoring into another target takes the source host's snapshots only when they come from one
target, so a shared repository never gives a host another target's data by surprise.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from api.restore import Rule
from api.tags import SnapshotOwner, target_tag
from engine.restic import Progress, Restic, ResticError, Snapshot, tail

log = logging.getLogger(__name__)
_CHUNK = 1 << 20


class RestoreError(RuntimeError):
    """Nothing to restore, or the restore failed; says what and why."""


@dataclass(frozen=True)
class RestoreSource:
    target_kind: str
    target_name: str
    hostname: str
    snapshot: str = "latest"


@dataclass(frozen=True)
class HostRule:
    """What one host restores: Stash's Rule, chosen for the host."""

    source_host: str
    snapshots: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pick:
    """One snapshot to restore, and the paths of it to restore (all when empty)."""

    snapshot: Snapshot
    include: tuple[str, ...] = field(default=())


def rule_for_host(hostname: str, rules: Sequence[Rule] | None, where: str = "rules") -> HostRule:
    """The rule that applies to ``hostname``: no rules restore the host's own newest snapshot."""
    if not rules:
        return HostRule(hostname)
    chosen: Rule | None = None
    for rule in rules:
        if not rule.target_hosts:
            chosen = rule  # applies unless a rule names the host
        elif hostname in rule.target_hosts:
            chosen = rule
            break
    if chosen is None:
        named = sorted({h for r in rules for h in r.target_hosts or []})
        raise RestoreError(
            f"no rule of {where} applies to {hostname} (targetHosts name only "
            f"{', '.join(named)}; add a rule without targetHosts for the other hosts)"
        )
    return HostRule(
        source_host=chosen.source_host or hostname,
        snapshots=tuple(chosen.snapshots or ()),
        paths=tuple(chosen.paths or ()),
        include=tuple(chosen.include or ()),
        exclude=tuple(chosen.exclude or ()),
    )


def _holds(snapshot: Snapshot, path: str) -> bool:
    path = path.rstrip("/") or "/"
    return any(
        path == p.rstrip("/") or path.startswith(p.rstrip("/") + "/") or p == "/"
        for p in snapshot.paths
    )


def _newest(snapshots: Sequence[Snapshot]) -> Snapshot:
    return max(snapshots, key=lambda s: (s.time, s.id))


def _of_target(snapshots: Sequence[Snapshot], tag: str, host: str, what: str) -> list[Snapshot]:
    """The host's snapshots of the target itself, else of the one other target they are of."""
    mine = [s for s in snapshots if tag in s.tags]
    if mine:
        return mine
    targets = sorted({t for s in snapshots for t in s.tags if t.startswith("target:")})
    if len(targets) > 1:
        raise RestoreError(
            f"host {host} has snapshots {what} of {len(targets)} targets "
            f"({', '.join(t.removeprefix('target:') for t in targets)}) and none of this one: "
            "name the snapshot to restore in rules[].snapshots"
        )
    return list(snapshots)


def choose_snapshots(
    snapshots: Sequence[Snapshot],
    target_kind: str,
    target_name: str,
    rule: HostRule,
    owner: SnapshotOwner | None = None,
) -> list[Pick]:
    """What ``rule`` restores, from the repository's ``snapshots`` that ``owner`` owns (a
    shared repository's other namespaces' are never chosen, not even by id); a RestoreError
    saying what is missing otherwise. Pure."""
    if owner is not None:
        snapshots = [s for s in snapshots if owner.owns(s.tags)]
    tag = target_tag(target_kind, target_name)
    host = rule.source_host
    of_host = [s for s in snapshots if s.hostname == host]
    picks: list[Pick] = []
    for wanted in rule.snapshots:
        if wanted == "latest":
            if not of_host:
                raise RestoreError(_none_of_host(snapshots, host))
            picks.append(Pick(_newest(_of_target(of_host, tag, host, ""))))
            continue
        found = [s for s in snapshots if s.id.startswith(wanted) or s.short_id == wanted]
        if not found:
            raise RestoreError(f"no snapshot {wanted} in the repository")
        if len(found) > 1:
            raise RestoreError(f"snapshot id {wanted} is ambiguous: give more of it")
        picks.append(Pick(found[0]))
    if rule.snapshots:
        return picks
    if not of_host:
        raise RestoreError(_none_of_host(snapshots, host))
    for path in rule.paths:
        holding = [s for s in of_host if _holds(s, path)]
        if not holding:
            raise RestoreError(f"no snapshot of host {host} holds {path}")
        snapshot = _newest(_of_target(holding, tag, host, f"holding {path}"))
        whole = tuple(p.rstrip("/") for p in snapshot.paths) == (path.rstrip("/"),)
        picks.append(Pick(snapshot, () if whole else (path,)))
    if rule.paths:
        return picks
    return [Pick(_newest(_of_target(of_host, tag, host, "")))]


def _none_of_host(snapshots: Sequence[Snapshot], host: str) -> str:
    hosts = sorted({s.hostname for s in snapshots})
    if not hosts:
        return "the repository has no snapshots"
    return f"no snapshot of host {host} in the repository (its hosts: {', '.join(hosts)})"


def restore_rule(
    restic: Restic,
    target_kind: str,
    target_name: str,
    rule: HostRule,
    target_dir: str = "/",
    *,
    progress: Progress | None = None,
    owner: SnapshotOwner | None = None,
) -> list[Snapshot]:
    """Restore what ``rule`` picks (of ``owner``'s snapshots) into ``target_dir``; the
    snapshots restored."""
    picks = choose_snapshots(restic.snapshots(), target_kind, target_name, rule, owner)
    for pick in picks:
        include = rule.include or pick.include
        try:
            restic.restore(
                pick.snapshot.id,
                target_dir,
                include=include,
                exclude=rule.exclude,
                progress=progress,
            )
        except ResticError as exc:
            raise RestoreError(f"restoring snapshot {pick.snapshot.short_id}: {exc}") from None
        log.info(
            "restored snapshot %s (%s) of host %s into %s",
            pick.snapshot.short_id,
            ",".join(include or pick.snapshot.paths),
            pick.snapshot.hostname,
            target_dir,
        )
    return [pick.snapshot for pick in picks]


def pick_snapshot(restic: Restic, what: RestoreSource) -> Snapshot:
    snapshots = restic.snapshots(
        host=what.hostname, tags=[target_tag(what.target_kind, what.target_name)]
    )
    if what.snapshot != "latest":
        snapshots = [s for s in snapshots if what.snapshot in (s.id, s.short_id)]
    if not snapshots:
        raise RestoreError(
            f"no snapshot {what.snapshot} of {what.target_kind}/{what.target_name} "
            f"host {what.hostname}"
        )
    return max(snapshots, key=lambda s: s.time)


def restore_paths(
    restic: Restic, what: RestoreSource, target_dir: str = "/", include: Sequence[str] = ()
) -> Snapshot:
    snapshot = pick_snapshot(restic, what)
    try:
        restic.restore(snapshot.id, target_dir, include=include)
    except ResticError as exc:
        raise RestoreError(f"restoring snapshot {snapshot.short_id}: {exc}") from None
    log.info(
        "restored snapshot %s (%s) into %s", snapshot.short_id, ",".join(snapshot.paths), target_dir
    )
    return snapshot


def restore_dump(restic: Restic, what: RestoreSource, filename: str, command: str) -> Snapshot:
    """Stream the dump ``filename`` of the snapshot into ``command`` (e.g. psql)."""
    snapshot = pick_snapshot(restic, what)
    stream_dump(restic, snapshot, filename, command)
    return snapshot


def stream_dump(restic: Restic, snapshot: Snapshot, filename: str, command: str) -> None:
    """Stream the file ``filename`` of ``snapshot`` into ``command``'s standard input."""
    argv = shlex.split(command)
    try:
        sink = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
    except OSError as exc:
        raise RestoreError(f"cannot run {argv[0]}: {exc.strerror}") from None
    errors: list[str] = []
    reader = threading.Thread(
        target=lambda: errors.extend(
            line.decode(errors="replace").rstrip() for line in sink.stderr or ()
        ),
        daemon=True,
    )
    reader.start()
    stopped_reading = False
    try:
        with restic.dump(snapshot.id, "/" + filename.lstrip("/")) as stream:
            assert sink.stdin is not None  # noqa: S101 - PIPE always gives a stream
            while chunk := stream.read(_CHUNK):
                sink.stdin.write(chunk)
    except BrokenPipeError:
        stopped_reading = True  # the command ended early: its exit and its words say why
    except ResticError as exc:
        sink.kill()
        raise RestoreError(f"reading {filename} from snapshot {snapshot.short_id}: {exc}") from None
    finally:
        if sink.stdin is not None and not sink.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                sink.stdin.close()
    code = sink.wait()
    reader.join()
    if code != 0:
        raise RestoreError(f"{argv[0]} exited with {code}: {tail(errors)}")
    if stopped_reading:
        raise RestoreError(f"{argv[0]} stopped reading {filename} before its end: {tail(errors)}")
