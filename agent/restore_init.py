"""``stash-init``: the init container that puts a workload's data back before its application
starts (``stash restore-init``).

It finds the unfinished RestoreSessions and RestoreBatches of its namespace that restore its
workload (oldest first). For each it waits until the restore has started and reached this
member (``executionOrder: Sequential``), restores this pod's host (``host-0`` or the alias for a
Deployment, ``host-<ordinal>`` for a StatefulSet, the node for a DaemonSet) with the member's
rules, and records the host's stats. The pods of a Deployment take turns (a Lease): the first
restores, the others find the host done.

Its exit is the pod's fate: 0 lets the application start (everything restored, or nothing to
restore); 1 keeps it from starting on data that was not put back (the restore failed, or is
Invalid): the kubelet runs it again, and it passes once the restore is fixed or deleted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agent.host_backup import SetupError
from agent.host_restore import (
    HostRestore,
    RestoreOptions,
    report_restore,
    restore_files,
)
from api.conditions import parse_rfc3339
from api.constants import RESTORE_ENDED_PHASES, RESTORE_INIT_CONTAINER
from api.hosts import Identity
from api.naming import restore_turn_lease
from api.objects import JSON
from api.pod_members import member_documents
from engine.logfields import log_fields
from engine.reporting import member_entry, why_ended
from engine.restic import Cancel
from engine.results import HostResult
from kube import Client
from kube.errors import KubeError, NotFound
from kube.mutex import LeaseMutex, pod_gone, pod_holder
from kube.types import RESTORE_INVOKER_TYPES

log = logging.getLogger(__name__)
POLL_SECONDS = 2.0
DEFAULT_WAIT = 24 * 3600.0  # a restore without a deadline yet: at most this long
TURN_TTL = 900.0  # a Deployment pod restoring holds its turn this long without finishing


class InitFailed(RuntimeError):
    """This host's restore failed or cannot run; the message says why."""


@dataclass(frozen=True)
class Restore:
    """One restore invoker restoring this workload, and which member does."""

    kind: str
    name: str
    index: int
    created: str

    def describe(self) -> str:
        return f"{self.kind} {self.name}"


def _targets(member: JSON, kind: str, name: str) -> bool:
    ref = (member.get("target") or {}).get("ref") or {}
    task = (member.get("task") or {}).get("name")
    return bool(ref.get("kind") == kind and ref.get("name") == name and not task)


def unfinished_restores_of(invokers: list[JSON], kind: str, name: str) -> list[Restore]:
    """The unfinished restores of workload ``kind/name`` among ``invokers``, oldest first."""
    found = []
    for invoker in invokers:
        if (invoker.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        meta = invoker["metadata"]
        for index, member in enumerate(member_documents(invoker)):
            if _targets(member, kind, name):
                found.append(
                    Restore(invoker["kind"], meta["name"], index, meta.get("creationTimestamp", ""))
                )
                break
    return sorted(found, key=lambda r: (r.created, r.name))


def _invalid_reason(status: JSON) -> str:
    return next(
        (
            c.get("message", "")
            for c in status.get("conditions") or []
            if c.get("type") == "ValidationPassed" and c.get("status") == "False"
        ),
        "",
    )


def host_step(invoker: JSON, index: int, hostname: str) -> str:
    """What this host does for the restore now: ``restore``, ``wait``, ``done`` or
    ``fail:<why>``."""
    status = invoker.get("status") or {}
    phase = status.get("phase")
    what = f"{invoker['kind']} {invoker['metadata']['name']}"
    entry = member_entry(invoker, index) or {}
    mine = next((s for s in entry.get("stats") or [] if s.get("hostname") == hostname), None)
    if mine is not None:
        if mine.get("phase") == "Succeeded":
            return "done"
        return f"fail:{what}: host {hostname}: {mine.get('error') or 'failed'}"
    verdicts = {
        "Invalid": f"fail:{what} is Invalid: {_invalid_reason(status)}",
        # It restored the hosts it counted; a pod added since has nothing to do.
        "Succeeded": "done",
        "Failed": f"fail:{what} failed before host {hostname} was restored",
    }
    if phase in verdicts:
        return verdicts[str(phase)]
    return "restore" if phase == "Running" and entry.get("phase") == "Running" else "wait"


def ended(invoker: JSON | None, restore: Restore) -> str | None:
    """Why a host's restore under way for ``restore`` (``invoker`` as it is now; None: gone)
    is stopped, or None while it still runs."""
    if invoker is None:
        return f"{restore.describe()} was deleted"
    status = invoker.get("status") or {}
    if status.get("phase") not in RESTORE_ENDED_PHASES:
        return None
    return why_ended(restore.describe(), status)


@dataclass(frozen=True)
class InitOptions:
    cache_dir: Path | None = None
    poll: float = POLL_SECONDS


class RestoreInit:
    def __init__(self, client: Client, me: Identity, options: InitOptions) -> None:
        self.client, self.me, self.options = client, me, options

    def _invokers(self) -> list[JSON]:
        found = []
        for kind, rt in RESTORE_INVOKER_TYPES.items():
            for item in self.client.list(rt, self.me.namespace).get("items") or []:
                item.setdefault("kind", kind)
                found.append(item)
        return found

    def run(self, stop: threading.Event) -> int:
        try:
            restores = unfinished_restores_of(
                self._invokers(), self.me.target_kind, self.me.target_name
            )
            if not restores:
                log.info("nothing to restore for %s", self._workload())
                return 0
            for restore in restores:
                self._one(restore, stop)
        except InitFailed as exc:
            log.error("%s", exc)
            return 1
        except SetupError as exc:  # the result could not be recorded: the kubelet runs us again
            log.error("restoring %s: %s", self._workload(), exc)
            return 1
        except KubeError as exc:  # the API server is away: the kubelet runs us again
            log.error("restoring %s: %s", self._workload(), exc)
            return 1
        return 0

    def _workload(self) -> str:
        return f"{self.me.target_kind} {self.me.namespace}/{self.me.target_name}"

    def _get(self, restore: Restore) -> JSON | None:
        try:
            obj = self.client.get(
                RESTORE_INVOKER_TYPES[restore.kind], restore.name, self.me.namespace
            )
        except NotFound:
            return None
        obj.setdefault("kind", restore.kind)
        return obj

    def _one(self, restore: Restore, stop: threading.Event) -> None:
        started = time.monotonic()
        while not stop.is_set():
            invoker = self._get(restore)
            if invoker is None:
                log.info("%s is gone: nothing to restore", restore.describe())
                return
            hostname = self._hostname(invoker, restore.index)
            step = host_step(invoker, restore.index, hostname)
            if step == "done":
                log.info("%s: host %s is restored", restore.describe(), hostname)
                return
            if step.startswith("fail:"):
                raise InitFailed(step.removeprefix("fail:"))
            if step == "restore":
                self._restore(restore, hostname)
                continue  # the next look finds the stats just written
            if _overdue(invoker, time.monotonic() - started):
                raise InitFailed(f"{restore.describe()} did not start restoring host {hostname}")
            stop.wait(self.options.poll)
        raise InitFailed("stopped before the restore ended")

    def _hostname(self, invoker: JSON, index: int) -> str:
        member = member_documents(invoker)[index]
        alias = (member.get("target") or {}).get("alias")
        try:
            return self.me.hostname(alias)
        except ValueError as exc:
            raise InitFailed(str(exc)) from None

    def _restore(self, restore: Restore, hostname: str) -> None:
        job = HostRestore(
            namespace=self.me.namespace,
            invoker_kind=restore.kind,
            invoker_name=restore.name,
            target_kind=self.me.target_kind,
            target_name=self.me.target_name,
            hostname=hostname,
        )
        with (
            log_fields(
                namespace=job.namespace,
                invoker=f"{job.invoker_kind}/{job.invoker_name}",
                target=f"{job.target_kind}/{job.target_name}",
                host=job.hostname,
            ),
            self._turn(job),
        ):
            invoker = self._get(restore)
            if invoker is None or host_step(invoker, restore.index, hostname) != "restore":
                return  # another pod of the workload restored the host meanwhile
            log.info("%s: restoring %s", restore.describe(), job.describe())
            with self._lookout(restore) as cancel:
                options = RestoreOptions(
                    self.options.cache_dir, own_container=RESTORE_INIT_CONTAINER, cancel=cancel
                )
                result = restore_files(self.client, job, "/", options)
            if cancel.reason is None:
                report_restore(self.client, job, result)
            # else: the restore's verdict is given (the next look fails this container)
        _log_result(restore, result)

    @contextlib.contextmanager
    def _lookout(self, restore: Restore) -> Iterator[Cancel]:
        """While this host restores: a look at the restore every ``poll`` seconds, and the
        restic work stopped once the restore has ended (at its deadline, say) or is gone."""
        cancel, done = Cancel(), threading.Event()

        def look() -> None:
            while not done.wait(self.options.poll):
                try:
                    reason = ended(self._get(restore), restore)
                except KubeError:  # the API server is away: looked at again next time
                    continue
                if reason is not None:
                    log.warning("%s: stopping this host's restore: %s", restore.describe(), reason)
                    cancel.stop(reason)
                    return

        watcher = threading.Thread(target=look, daemon=True)
        watcher.start()
        try:
            yield cancel
        finally:
            done.set()
            watcher.join()

    def _turn(self, job: HostRestore) -> LeaseMutex:
        """The pods of one Deployment (one host) restore one at a time."""
        return LeaseMutex(
            self.client,
            job.namespace,
            restore_turn_lease(job.target_kind, job.target_name),
            pod_holder(self.me.namespace, self.me.pod_name),
            ttl=TURN_TTL,
            timeout=DEFAULT_WAIT,
            holder_gone=pod_gone(self.client, self.me.namespace),
        )


def _overdue(invoker: JSON, waited: float) -> bool:
    """Past the restore's deadline (plus a minute for the operator to say so), or waited the
    longest a restore without one may take."""
    deadline = (invoker.get("status") or {}).get("sessionDeadline")
    if not deadline:
        return waited > DEFAULT_WAIT
    when = parse_rfc3339(deadline)
    return dt.datetime.now(dt.UTC) > when + dt.timedelta(minutes=1)


def _log_result(restore: Restore, result: HostResult) -> None:
    if result.succeeded:
        log.info(
            "%s: host %s restored in %.1fs", restore.describe(), result.hostname, result.duration
        )
    else:
        log.error("%s: host %s: %s", restore.describe(), result.hostname, result.error)
