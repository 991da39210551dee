"""One host's restore for a RestoreSession or a RestoreBatch member, run by the restore Job's
steps: read the invoker and the member that names this target, choose the host's rule, open the
Repository with its Secret, restore (files into place, or a dump into a restore command), and
record the host's stats in the invoker's status (the operator derives the metrics from it).

A failed restore is a result, not a crash: the step leaves a Failed ``HostResult`` with the
reason (restic's or the restore command's own words) for ``update-status`` to record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from agent.hooks import around
from agent.host_backup import SetupError, load_repository, open_repository
from api.objects import JSON
from api.pod_members import member_documents
from api.restore import RestoreMember, Rule
from api.tags import SnapshotOwner
from engine.progress import ProgressReport
from engine.reporting import with_restore_host
from engine.restic import Cancel, Progress, Restic, ResticError, Snapshot
from engine.restore import (
    HostRule,
    RestoreError,
    choose_snapshots,
    restore_rule,
    rule_for_host,
    stream_dump,
)
from engine.results import HostResult
from kube import Client
from kube.errors import KubeError, NotFound
from kube.events import EventRecorder
from kube.status import StatusError, update_status
from kube.types import RESTORE_INVOKER_TYPES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostRestore:
    """Who restores what, for which restore invoker."""

    namespace: str
    invoker_kind: str  # RestoreSession or RestoreBatch
    invoker_name: str
    target_kind: str
    target_name: str
    hostname: str

    def describe(self) -> str:
        return f"{self.target_kind}/{self.target_name} host {self.hostname}"


@dataclass(frozen=True)
class RestoreSetup:
    invoker: JSON
    member: RestoreMember
    rules_field: str  # where the member's rules are, for messages
    repository_name: str
    repository_namespace: str

    @property
    def rules(self) -> list[Rule] | None:
        target = self.member.target
        if target is not None and target.rules:
            return target.rules
        spec_rules = (self.invoker.get("spec") or {}).get("rules")
        if spec_rules:  # RestoreSession's deprecated spec.rules
            return [Rule.model_validate(r) for r in spec_rules]
        return None


def _same_ref(member: JSON, kind: str, name: str) -> bool:
    """Does the member name that target (restoring into new PVCs: its first claim template)?"""
    try:
        target = RestoreMember.model_validate(member).target
    except ValidationError:
        return False
    ref = target.identity() if target else None
    return bool(ref and ref.kind == kind and ref.name == name)


def load_restore(client: Client, job: HostRestore) -> RestoreSetup:
    rt = RESTORE_INVOKER_TYPES.get(job.invoker_kind)
    if rt is None:
        raise SetupError(f"{job.invoker_kind} is not a restore invoker")
    try:
        invoker = client.get(rt, job.invoker_name, job.namespace)
    except NotFound:
        raise SetupError(
            f"{job.invoker_kind} {job.namespace}/{job.invoker_name} not found"
        ) from None
    invoker.setdefault("kind", job.invoker_kind)
    documents = member_documents(invoker)
    index = next(
        (i for i, m in enumerate(documents) if _same_ref(m, job.target_kind, job.target_name)),
        None,
    )
    if index is None:
        raise SetupError(
            f"{job.invoker_kind} {job.invoker_name} has no member "
            f"{job.target_kind}/{job.target_name}"
        )
    try:
        member = RestoreMember.model_validate(documents[index])
    except ValidationError as exc:
        raise SetupError(f"member {index}: {exc.errors()[0].get('msg')}") from None
    where = (
        "spec.target.rules"
        if job.invoker_kind == "RestoreSession"
        else (f"spec.members[{index}].target.rules")
    )
    ref = (invoker.get("spec") or {}).get("repository") or {}
    return RestoreSetup(
        invoker,
        member,
        where,
        str(ref.get("name", "")),
        str(ref.get("namespace") or job.namespace),
    )


@dataclass(frozen=True)
class RestoreOptions:
    cache_dir: Path | None = None
    own_container: str = ""  # where the member's hooks run (exec): this step's container
    snapshot: str = "latest"  # a Task's param naming the snapshot, when there are no rules
    cancel: Cancel | None = None  # how the restore is stopped midway (its invoker ended)


def _restoring(
    client: Client,
    job: HostRestore,
    options: RestoreOptions,
    work: Callable[[Restic, HostRule, Progress, SnapshotOwner], list[Snapshot]],
) -> HostResult:
    started = time.monotonic()
    try:
        setup = load_restore(client, job)
    except (SetupError, KubeError) as exc:
        log.error("restore of %s failed: %s", job.describe(), exc)
        return HostResult(job.hostname, "Failed", time.monotonic() - started, error=str(exc))

    def restore() -> HostResult:
        try:
            rule = rule_for_host(job.hostname, setup.rules, setup.rules_field)
            if not setup.rules and options.snapshot != "latest":
                rule = HostRule(rule.source_host, snapshots=(options.snapshot,))
            repository, secret = load_repository(
                client, setup.repository_name, setup.repository_namespace
            )
            progress = ProgressReport(
                EventRecorder(client, "stash-restore"),
                lambda: setup.invoker,
                operation="restore",
                what=job.describe(),
            )
            # The restore's namespace's snapshots only (any of its invokers'): never another
            # tenant's in a shared repository.
            owner = SnapshotOwner(job.namespace, setup.repository_namespace)
            with open_repository(
                repository, secret, options.cache_dir, cancel=options.cancel
            ) as restic:
                restored = work(restic, rule, progress, owner)
        except (SetupError, RestoreError, ResticError, KubeError) as exc:
            log.error("restore of %s failed: %s", job.describe(), exc)
            return HostResult(job.hostname, "Failed", time.monotonic() - started, error=str(exc))
        log.info(
            "restored %s from snapshot(s) %s",
            job.describe(),
            ", ".join(s.short_id for s in restored),
        )
        return HostResult(job.hostname, "Succeeded", time.monotonic() - started)

    hooks = setup.member.hooks
    return around(
        job.hostname,
        ("preRestore", hooks.pre_restore if hooks else None),
        ("postRestore", hooks.post_restore if hooks else None),
        restore,
        own_container=options.own_container,
    )


def restore_files(
    client: Client, job: HostRestore, target_dir: str, options: RestoreOptions
) -> HostResult:
    """Restore the host's files (its rule's snapshots) under ``target_dir``, between the
    member's ``preRestore`` and ``postRestore`` hooks."""
    return _restoring(
        client,
        job,
        options,
        lambda restic, rule, progress, owner: restore_rule(
            restic,
            job.target_kind,
            job.target_name,
            rule,
            target_dir,
            progress=progress,
            owner=owner,
        ),
    )


def restore_host_dump(
    client: Client, job: HostRestore, filename: str, command: str, options: RestoreOptions
) -> HostResult:
    """Stream the dump ``filename`` of the host's snapshot into ``command`` (e.g. psql)."""

    def work(restic: Restic, rule: HostRule, _: Progress, owner: SnapshotOwner) -> list[Snapshot]:
        picks = choose_snapshots(restic.snapshots(), job.target_kind, job.target_name, rule, owner)
        for pick in picks:
            stream_dump(restic, pick.snapshot, filename, command)
        return [pick.snapshot for pick in picks]

    return _restoring(client, job, options, work)


def report_restore(client: Client, job: HostRestore, result: HostResult) -> None:
    """Record ``result`` in the invoker's status (the operator pushes the host's restore
    metrics from it, ``controller.sessions.metric_groups``)."""
    rt = RESTORE_INVOKER_TYPES[job.invoker_kind]
    try:
        update_status(
            client,
            rt,
            job.namespace,
            job.invoker_name,
            lambda s: with_restore_host(
                job.invoker_kind, s, job.target_kind, job.target_name, result
            ),
        )
    except NotFound:
        raise SetupError(
            f"{job.invoker_kind} {job.namespace}/{job.invoker_name} not found"
        ) from None
    except StatusError as exc:
        raise SetupError(str(exc)) from None
