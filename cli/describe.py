"""Backup and restore objects in plain words, for a person (``kubectl stash describe``).

Pure functions from the objects as the API server returns them to text: a session's targets and
hosts (result or error, durations, the snapshots made, what is still running), an invoker with
its recent sessions, a restore with its members, every invoker's last good backup
(``status_rows``). Nothing here reads the cluster.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError

from api import constants as c
from api.backup import BackupSession, HostBackupStats, SnapshotStats
from api.base import first_error
from api.blueprint import GENERATED_BY_LABEL
from api.common import Condition, TargetRef
from api.conditions import get_condition, now_rfc3339
from api.objects import JSON
from api.pod_members import member_documents
from api.restore import HostRestoreStats, RestoreBatch, RestoreSession
from api.views import ConditionView, Obj
from controller.invokers.staleness import LastSuccess, last_success
from engine.verification import verified_session

RECENT_SESSIONS = 5


def _age(stamp: str | dt.datetime | None, now: dt.datetime) -> str:
    """``2026-12-02 00:01:02 UTC (3m ago)``; empty without a time."""
    if not stamp:
        return ""
    when = stamp if isinstance(stamp, dt.datetime) else _parse(stamp)
    if when is None:
        return str(stamp)
    seconds = int((now - when).total_seconds())
    return f"{when.strftime('%Y-%m-%d %H:%M:%S UTC')} ({_span(seconds)} ago)"


def _parse(stamp: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None


def _span(seconds: int) -> str:
    seconds = max(0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _field(label: str, value: object) -> str:
    return f"{label + ':':<14}{value}"


def _ref(kind: str | None, name: str | None) -> str:
    return f"{kind or '?'}/{name or '?'}"


def _label(ref: TargetRef | None) -> str:
    """``Kind/name`` of a target, as the hosts' progress names it."""
    return _ref(ref.kind, ref.name) if ref else _ref(None, None)


def _conditions(conditions: Sequence[Condition] | None, indent: str = "  ") -> list[str]:
    if not conditions:
        return []
    width = max(len(c.type) for c in conditions)
    lines = [f"{indent[:-2]}Conditions:"]
    for cond in conditions:
        words = cond.message or cond.reason or ""
        lines.append(f"{indent}{cond.type:<{width}}  {cond.status:<7} {words}".rstrip())
    return lines


def _files(snapshot: SnapshotStats) -> str:
    stats = snapshot.file_stats
    if stats is None:
        return ""
    parts = [
        f"{n} {what}"
        for n, what in (
            (stats.new_files, "new"),
            (stats.modified_files, "modified"),
            (stats.unmodified_files, "unmodified"),
        )
        if n
    ]
    total = f"{stats.total_files or 0} files"
    return f"{total} ({', '.join(parts)})" if parts else total


def _snapshot_line(snapshot: SnapshotStats) -> str:
    # restic's short id, as `restic snapshots` shows it (-o json has the whole one)
    parts = [f"snapshot {(snapshot.name or '?')[:8]}"]
    if snapshot.path:
        parts.append(snapshot.path)
    files = _files(snapshot)
    if files:
        parts.append(files)
    if snapshot.total_size:
        parts.append(f"{snapshot.total_size} in total")
    if snapshot.uploaded:
        parts.append(f"{snapshot.uploaded} uploaded")
    return ", ".join(parts)


def _host_lines(
    hosts: Iterable[HostBackupStats | HostRestoreStats],
    total: int | None,
    running: bool,
    progress: dict[str, str] | None = None,
) -> list[str]:
    lines = []
    reported = list(hosts)
    for host in reported:
        took = f" in {host.duration}" if host.duration else ""
        lines.append(f"    host {host.hostname or '?'}: {host.phase or 'Unknown'}{took}")
        if host.error:
            lines.extend(f"      error: {line}" for line in host.error.splitlines() or [""])
        for snapshot in getattr(host, "snapshots", None) or []:
            lines.append(f"      {_snapshot_line(snapshot)}")
    done = {host.hostname for host in reported}
    moving = {h: p for h, p in (progress or {}).items() if h not in done} if running else {}
    lines.extend(f"    host {host}: running, {where}" for host, where in sorted(moving.items()))
    missing = (total or 0) - len(reported) - len(moving)
    if missing > 0:
        state = "still running" if running else "never reported"
        lines.append(f"    {missing} more host(s): {state}")
    return lines


def _of_target(progress: dict[tuple[str, str], str], target: str) -> dict[str, str]:
    return {host: where for (t, host), where in progress.items() if t == target}


def _invalid(what: str, error: ValidationError) -> str:
    where, words = first_error(error)
    return f"{what}: its status cannot be read ({where}: {words})"


def describe_backup_session(
    obj: JSON, now: dt.datetime, progress: dict[tuple[str, str], str] | None = None
) -> str:
    """A BackupSession: its invoker, phase and duration, each target and host (a running one
    with its ``progress``, from ``progress_of``)."""
    meta = obj.get("metadata") or {}
    title = f"BackupSession {meta.get('namespace')}/{meta.get('name')}"
    try:
        session = BackupSession.from_dict(obj)
    except ValidationError as exc:
        return _invalid(title, exc)
    status = session.status
    invoker = session.spec.invoker
    phase = (status.phase if status else None) or "Pending"
    lines = [title]
    if invoker is not None:
        lines.append(_field("Invoker", f"{invoker.kind}/{invoker.name}"))
    took = f" (took {status.session_duration})" if status and status.session_duration else ""
    lines.append(_field("Phase", f"{phase}{took}"))
    lines.append(_field("Created", _age(meta.get("creationTimestamp"), now)))
    if status and status.session_deadline and phase in ("Pending", "Running"):
        lines.append(_field("Deadline", _age(status.session_deadline, now).replace(" ago", "")))
    if status and status.next_retry:
        lines.append(_field("Next retry", status.next_retry))
    running = phase in ("Pending", "Running")
    targets = (status.targets if status else None) or []
    if targets:
        lines.append("Targets:")
    for target in targets:
        done = len(target.stats or [])
        total = target.total_hosts or done
        label = _label(target.ref)
        lines.append(f"  {label}: {target.phase or 'Pending'}, {done}/{total} host(s) reported")
        moving = _of_target(progress or {}, label)
        lines.extend(_host_lines(target.stats or [], target.total_hosts, running, moving))
        lines.extend(_conditions(target.conditions, indent="      "))
    if not targets and running:
        lines.append("Targets:      none started yet")
    lines.extend(_conditions(status.conditions if status else None))
    return "\n".join(lines)


def _restore_members(model: RestoreBatch | RestoreSession) -> list[tuple[str, Any]]:
    """(target, status entry) per member of a RestoreBatch, or the RestoreSession's one."""
    if isinstance(model, RestoreSession):
        target = model.spec.target
        return [(_label(target.ref if target else None), model.status)]
    entries = list((model.status.members if model.status else None) or [])
    return [
        (_label(m.target.ref if m.target else None), entries[i] if i < len(entries) else None)
        for i, m in enumerate(model.spec.members or [])
    ]


def describe_restore(
    obj: JSON, now: dt.datetime, progress: dict[tuple[str, str], str] | None = None
) -> str:
    """A RestoreSession or RestoreBatch: phase, each member and host (a running one with its
    ``progress``), conditions."""
    meta = obj.get("metadata") or {}
    title = f"{obj.get('kind')} {meta.get('namespace')}/{meta.get('name')}"
    try:
        model = (RestoreBatch if obj.get("kind") == "RestoreBatch" else RestoreSession).from_dict(
            obj
        )
    except ValidationError as exc:
        return _invalid(title, exc)
    members = _restore_members(model)
    status = model.status
    phase = (status.phase if status else None) or "Pending"
    repo = model.spec.repository
    lines = [title]
    if repo is not None:
        lines.append(_field("Repository", repo.name))
    took = f" (took {status.session_duration})" if status and status.session_duration else ""
    lines.append(_field("Phase", f"{phase}{took}"))
    lines.append(_field("Created", _age(meta.get("creationTimestamp"), now)))
    running = phase in ("Pending", "Running")
    lines.append("Targets:")
    for label, entry in members:
        stats = (entry.stats if entry else None) or []
        total = entry.total_hosts if entry else None
        member_phase = getattr(entry, "phase", None) if obj.get("kind") == "RestoreBatch" else None
        shown = member_phase or ("Running" if running else phase)
        lines.append(f"  {label}: {shown}, {len(stats)}/{total or len(stats)} host(s) reported")
        lines.extend(_host_lines(stats, total, running, _of_target(progress or {}, label)))
        if obj.get("kind") == "RestoreBatch":
            lines.extend(_conditions(getattr(entry, "conditions", None), indent="      "))
    lines.extend(_conditions(status.conditions if status else None))
    return "\n".join(lines)


def newest(sessions: Sequence[JSON]) -> list[JSON]:
    return sorted(
        sessions, key=lambda s: str(s["metadata"].get("creationTimestamp", "")), reverse=True
    )


def describe_blueprint(blueprint: JSON, generated: Sequence[JSON]) -> str:
    """A BackupBlueprint: where it keeps backups, when and how it backs up, and what it
    generated (each BackupConfiguration, its target and whether it is Ready)."""
    spec = Obj(blueprint).spec
    backend = dict(spec.raw.get("backend") or {})
    secret = backend.pop("storageSecretName", None)
    where = ", ".join(f"{kind} {_backend_place(value)}" for kind, value in backend.items())
    task = spec.raw.get("task") or {}
    lines = [f"BackupBlueprint {Obj(blueprint).name}"]
    lines.append(_field("Backend", where or "?"))
    lines.append(_field("Secret", f"{secret} (in each target's namespace)" if secret else "?"))
    lines.append(_field("Schedule", spec.raw.get("schedule") or "(none)"))
    lines.append(_field("Task", task.get("name") or "(sidecar for workloads)"))
    if not generated:
        lines.append(
            "Generated:    nothing yet (annotate a workload or PVC with "
            "stash.appscode.com/backup-blueprint)"
        )
        return "\n".join(lines)
    lines.append("Generated:")
    for invoker in sorted(generated, key=lambda o: Obj(o).key):
        view = Obj(invoker)
        ref = view.spec.target_ref
        phase = view.status.phase or "not judged yet"
        lines.append(f"  {view.namespace}/{view.name} for {_ref(ref.kind, ref.name)}: {phase}")
    return "\n".join(lines)


def _backend_place(value: object) -> str:
    """Where a backend keeps data, in a few words (bucket and prefix, path, URL)."""
    if not isinstance(value, dict):
        return ""
    parts = [str(value[k]) for k in ("bucket", "container", "url", "mountPath") if value.get(k)]
    for key in ("prefix", "subPath"):
        if value.get(key):
            parts.append(str(value[key]))
    return "/".join(parts)


def describe_invoker(
    obj: JSON,
    sessions: Sequence[JSON],
    now: dt.datetime,
    progress: dict[tuple[str, str], str] | None = None,
) -> str:
    """A BackupBatch or BackupConfiguration: schedule, repository, members, its recent
    sessions (newest first) and, in full, the latest one (with its hosts' ``progress``)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    lines = [f"{obj.get('kind')} {meta.get('namespace')}/{meta.get('name')}"]
    lines.append(_field("Schedule", spec.get("schedule") or "(none: trigger by hand)"))
    lines.append(_field("Paused", "yes" if spec.get("paused") else "no"))
    lines.append(_field("Repository", (spec.get("repository") or {}).get("name", "?")))
    blueprint = Obj(obj).meta.label(GENERATED_BY_LABEL)
    if blueprint:
        lines.append(_field("Generated by", f"BackupBlueprint {blueprint} (auto-backup)"))
    stale = ConditionView(get_condition(Obj(obj).status.conditions, c.BACKUP_STALE))
    if stale.status:
        lines.append(_field("Stale", f"{'yes' if stale.true else 'no'}: {stale.message}"))
    verified = ConditionView(get_condition(Obj(obj).status.conditions, c.BACKUP_VERIFIED))
    if verified.status:
        said = "yes" if verified.true else f"no ({verified.reason})"
        lines.append(_field("Verified", f"{said}: {verified.message}"))
    lines.append("Members:")
    for member in member_documents(obj):
        target = (member or {}).get("target") or {}
        ref = target.get("ref") or {}
        how = f"task {member['task']['name']}" if (member.get("task") or {}).get("name") else ""
        paths = ", ".join(target.get("paths") or [])
        detail = "; ".join(p for p in (how or "sidecar", paths) if p)
        lines.append(f"  {_ref(ref.get('kind'), ref.get('name'))} ({detail})")
    ordered = newest(sessions)
    if not ordered:
        lines.append("Sessions:     none yet")
        return "\n".join(lines)
    lines.append("Sessions:")
    for session in ordered[:RECENT_SESSIONS]:
        status = session.get("status") or {}
        took = f" in {status['sessionDuration']}" if status.get("sessionDuration") else ""
        created = _age(session["metadata"].get("creationTimestamp"), now)
        name = session["metadata"]["name"]
        lines.append(f"  {name}: {status.get('phase') or 'Pending'}{took}, created {created}")
    lines.append("")
    lines.append("Latest session:")
    latest = describe_backup_session(ordered[0], now, progress)
    lines.extend("  " + line for line in latest.splitlines())
    return "\n".join(lines)


def _verified(condition: ConditionView, last: LastSuccess | None) -> str:
    """``yes`` / ``failed``: the last good backup's verification; ``pending``: a newer one
    succeeded since an older one verified; ``never``."""
    if not condition.status:
        return "never"
    if not condition.true:
        return "failed"
    if last is not None and verified_session(condition.message) != last.session:
        return "pending"
    return "yes"


def status_rows(invokers: Sequence[JSON], sessions: Sequence[JSON], now: dt.datetime) -> list[JSON]:
    """One row per backup invoker (``kubectl stash status``): its schedule, its last good
    backup (its newest Succeeded session) and how old it is, whether the operator names it
    stale (its ``BackupStale`` condition) and whether a restore of it was verified."""
    by_invoker: dict[tuple[str, str, str], list[JSON]] = {}
    for raw in sessions:
        session, ref = Obj(raw), Obj(raw).spec.invoker
        by_invoker.setdefault((session.namespace, ref.kind, ref.name), []).append(raw)
    rows = []
    for invoker in map(Obj, invokers):
        last = last_success(by_invoker.get((invoker.namespace, invoker.kind, invoker.name), []))
        stale = ConditionView(get_condition(invoker.status.conditions, c.BACKUP_STALE))
        verified = ConditionView(get_condition(invoker.status.conditions, c.BACKUP_VERIFIED))
        rows.append(
            {
                "namespace": invoker.namespace,
                "invoker": f"{invoker.kind.lower()}/{invoker.name}",
                "schedule": invoker.spec.schedule or "-",
                "lastGoodBackup": last.session if last else "never",
                "ended": now_rfc3339(last.ended) if last else "-",
                "age": _span(int((now - last.ended).total_seconds())) if last else "-",
                "stale": (
                    "paused"
                    if invoker.spec.paused
                    else {"True": "yes", "False": "no"}.get(stale.status, "-")
                ),
                "verified": _verified(verified, last),
            }
        )
    return sorted(rows, key=lambda r: (r["namespace"], r["invoker"]))
