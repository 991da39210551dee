"""Which restic locks of a repository are held by something that is gone, and their removal
before a backup, retention or check; never a live one.

restic itself calls a lock stale only when it was not refreshed for 30 minutes or when it was
taken on the same host by a process that is not running. In a cluster each pod is another host,
so a pod killed mid-backup would block retention and ``restic check`` of the whole repository
for 30 minutes. And in a pod on the node's network (``hostNetwork``) every pod has the node's
host name, so restic's same-host test would take another pod's live lock for a dead one (its
PID is not in this pod's PID namespace).

Here a lock is judged by who took it, as the API server knows it:

- not refreshed for 30 minutes: dead (restic agrees);
- this pod's own host name (a pod not on the host network): taken before this container
  started (an earlier container of the pod) or by a PID not running here: dead;
- the name of a pod of this namespace: dead when that pod has ended, or when its restic
  container (the ``stash`` sidecar; else any of a Job pod's) started after the lock was taken
  (it restarted since); alive while one that started before it runs;
- no such pod, but one of that name was here (its Events, kept an hour, say so): dead when the
  Repository is used from this namespace only, else unknown; never a pod here (restic run by
  hand from a workstation, say): dead once older than two of restic's lock refreshes (it
  refreshes a live lock every 5 minutes), else kept;
- anything else (the node's name on the host network, an API error): unknown, kept.

Dead locks are removed one by one where the backend allows it (a local repository), else with
``restic unlock --remove-all`` when every lock is dead (a live lock taken between the look and
the removal would be lost; restic notices a lost lock at its next refresh and stops). Outside a
pod (a workstation, the tests' own host) restic's rule holds and ``restic unlock`` is used.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from api.constants import SIDECAR_CONTAINER
from api.objects import JSON
from api.repository import Repository
from engine.restic import LockInfo, Restic
from kube import Client
from kube.errors import KubeError, NotFound
from kube.types import EVENTS, PODS

log = logging.getLogger(__name__)

STALE_AFTER = dt.timedelta(minutes=30)  # restic's StaleLockTimeout
UNREFRESHED = dt.timedelta(minutes=11)  # two of restic's 5-minute lock refreshes, and a margin
CLOCK_SKEW = dt.timedelta(seconds=5)
# A pod of this namespace by name; None: no such pod; KubeError: could not ask.
PodLookup = Callable[[str], JSON | None]


class Verdict(enum.Enum):
    DEAD = "dead"
    ALIVE = "alive"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Here:
    """Where this process runs: what restic writes as the host name of the locks it takes."""

    hostname: str
    pod_name: str = ""  # "" outside a pod
    namespace: str = ""
    started: dt.datetime | None = None  # this container's start
    repository_only_here: bool = False  # the Repository may be used from this namespace only

    @property
    def in_pod(self) -> bool:
        return bool(self.pod_name)

    @property
    def own_hostname(self) -> bool:
        """The host name is this pod's own (not the node's: no host network)."""
        return self.in_pod and self.hostname == self.pod_name


@dataclass(frozen=True)
class Holders:
    """How a lock's holder is found: where this process runs, and the pods of its namespace."""

    where: Here
    pod: PodLookup
    pods: Callable[[], list[JSON]]  # every pod of the namespace
    was_pod: Callable[[str], bool] = lambda name: False  # a pod of that name was here lately


def container_started(proc: Path = Path("/proc")) -> dt.datetime | None:
    """When this container's first process (PID 1 of its PID namespace) started."""
    try:
        fields = (proc / "1" / "stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of stat: starttime, in clock ticks after boot
        boot = next(
            int(line.split()[1])
            for line in (proc / "stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, IndexError, ValueError, StopIteration):
        return None
    return dt.datetime.fromtimestamp(boot + ticks / os.sysconf("SC_CLK_TCK"), dt.UTC)


def here(pod_name: str, namespace: str, repository_only_here: bool) -> Here:
    return Here(
        hostname=socket.gethostname(),
        pod_name=pod_name,
        namespace=namespace,
        started=container_started() if pod_name else None,
        repository_only_here=repository_only_here,
    )


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _started(status: JSON) -> dt.datetime | None:
    running = (status.get("state") or {}).get("running") or {}
    text = running.get("startedAt")
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _pod_verdict(lock: LockInfo, pod: JSON) -> tuple[Verdict, str]:
    name = pod["metadata"]["name"]
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        return Verdict.DEAD, f"pod {name} has ended ({phase})"
    if _runs_since(pod, lock.time):
        return Verdict.ALIVE, f"pod {name} runs restic's container since before the lock"
    return Verdict.DEAD, f"pod {name} has no container running since the lock was taken"


def _runs_since(pod: JSON, when: dt.datetime) -> bool:
    """Whether ``pod``'s restic container (its ``stash`` sidecar; else any of a Job pod's) has
    been running since before ``when``."""
    status = pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed") or pod["metadata"].get("deletionTimestamp"):
        return False
    statuses = [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]
    sidecar = [s for s in statuses if s.get("name") == SIDECAR_CONTAINER]
    return any(
        (started := _started(s)) is not None and started <= when + CLOCK_SKEW
        for s in sidecar or statuses
    )


def _by_process(
    lock: LockInfo, mine: bool, pid_running: Callable[[int], bool], not_mine: str
) -> tuple[Verdict, str]:
    if not mine:
        return Verdict.DEAD, not_mine
    if not pid_running(lock.pid):
        return Verdict.DEAD, f"its process {lock.pid} is not running here"
    return Verdict.ALIVE, f"its process {lock.pid} runs here"


def _sharing(lock: LockInfo, where: Here, holders: Holders) -> str | None:
    """Why another pod may hold a lock under the node's host name (None: none can)."""
    if not where.repository_only_here:
        return f"host {lock.hostname} is shared and so is the repository"
    try:
        pods = holders.pods()
    except KubeError as exc:
        return f"cannot list the pods of {where.namespace}: {exc}"
    others = [
        p["metadata"]["name"]
        for p in pods
        if (p.get("spec") or {}).get("hostNetwork")
        and p["metadata"].get("name") != where.pod_name
        and _runs_since(p, lock.time)
    ]
    return f"host {lock.hostname} is shared with {', '.join(others[:3])}" if others else None


def _same_host(
    lock: LockInfo, where: Here, holders: Holders, pid_running: Callable[[int], bool]
) -> tuple[Verdict, str]:
    mine = where.started is None or where.started - CLOCK_SKEW <= lock.time
    if where.own_hostname:  # the host name is this pod's: only this pod can hold it
        restarted = "taken before this container started (it restarted since)"
        return _by_process(lock, mine, pid_running, restarted)
    # The node's host name, shared by every pod on its network: look at who could hold it.
    shared = _sharing(lock, where, holders)
    if shared:
        return Verdict.UNKNOWN, shared
    restarted = (
        "taken before this container started, and no other pod on the host network has run since"
    )
    return _by_process(lock, mine, pid_running, restarted)


def _other_host(
    lock: LockInfo, where: Here, holders: Holders, now: dt.datetime
) -> tuple[Verdict, str]:
    try:
        found = holders.pod(lock.hostname)
        was_pod = found is None and holders.was_pod(lock.hostname)
    except KubeError as exc:
        return Verdict.UNKNOWN, f"cannot look pod {lock.hostname} up: {exc}"
    if found is not None:
        return _pod_verdict(lock, found)
    if not was_pod:
        if now - lock.time > UNREFRESHED:
            return Verdict.DEAD, f"{lock.hostname} is no pod and has not refreshed it"
        return Verdict.UNKNOWN, f"{lock.hostname} is no pod of {where.namespace}"
    if where.repository_only_here:
        return Verdict.DEAD, f"pod {lock.hostname} is gone"
    return Verdict.UNKNOWN, f"pod {lock.hostname} is gone here; maybe elsewhere"


def judge(
    lock: LockInfo,
    where: Here,
    holders: Holders,
    now: dt.datetime,
    pid_running: Callable[[int], bool] = _pid_running,
) -> tuple[Verdict, str]:
    """Whether ``lock``'s holder is gone, and why (see the module's rules)."""
    if now - lock.time > STALE_AFTER:
        return Verdict.DEAD, f"not refreshed since {lock.time:%Y-%m-%dT%H:%M:%SZ}"
    if lock.hostname == where.hostname:
        return _same_host(lock, where, holders, pid_running)
    return _other_host(lock, where, holders, now)


def holders_of(client: Client, namespace: str, repository: Repository) -> Holders | None:
    """This pod's (``POD_NAME`` from the downward API); None outside a pod."""
    pod_name = os.environ.get("POD_NAME", "")
    if not pod_name:
        return None
    usage = repository.spec.usage_policy
    policy = usage.allowed_namespaces if usage else None
    # allowedNamespaces.from: Same (the default) - no other namespace's pods can hold a lock.
    only_here = (policy.from_ if policy else "Same") == "Same" and (
        repository.metadata.namespace or namespace
    ) == namespace

    def pod(name: str) -> JSON | None:
        try:
            found: JSON = client.get(PODS, name, namespace)
        except NotFound:
            return None
        return found

    def pods() -> list[JSON]:
        return list(client.list(PODS, namespace).get("items") or [])

    def was_pod(name: str) -> bool:
        selector = f"involvedObject.kind=Pod,involvedObject.name={name}"
        return bool(client.list(EVENTS, namespace, field_selector=selector).get("items"))

    return Holders(here(pod_name, namespace, only_here), pod, pods, was_pod)


def clear_stale_locks(restic: Restic, holders: Holders | None) -> int | None:
    """Remove the locks whose holder is gone; how many (None: unknown). Free when a local
    repository has no locks."""
    if holders is None:
        return restic.unlock_stale()  # outside a pod restic's own rule holds
    where = holders.where
    if restic.local_lock_count() == 0:
        return 0
    now = dt.datetime.now(dt.UTC)
    dead: list[tuple[LockInfo, str]] = []
    kept = 0
    for lock_id in restic.locks():
        lock = restic.lock(lock_id)
        if lock is None:
            continue
        verdict, why = judge(lock, where, holders, now)
        if verdict is Verdict.DEAD:
            dead.append((lock, why))
        else:
            kept += 1
            log.debug("lock %s of %s kept: %s", lock.id[:8], lock.hostname, why)
    if not dead:
        return 0
    removed: list[tuple[LockInfo, str]] = []
    if kept == 0 and not restic.config.repository.startswith("/"):
        # Every lock is dead: one command removes them (no command removes one remotely).
        if set(restic.locks()) <= {lock.id for lock, _ in dead}:
            restic.remove_all_locks()
            removed = dead
    else:
        removed = [(lock, why) for lock, why in dead if restic.remove_lock(lock.id)]
    for lock, why in removed:
        log.info("removed the lock %s of %s: %s", lock.id[:8], lock.hostname, why)
    if len(removed) < len(dead):
        log.warning(
            "%d dead lock(s) kept: a live lock shares the repository and this backend cannot "
            "remove one lock alone; restic ignores them after 30 minutes",
            len(dead) - len(removed),
        )
    return len(removed)
