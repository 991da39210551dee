"""A cluster-wide mutex over a ``coordination.k8s.io`` Lease, for short critical sections
between pods that share nothing else (e.g. hosts initialising one restic repository: restic's
own ``init`` is not safe against a concurrent ``init``).

Holding it means having created the Lease; leaving deletes it. A holder that died leaves a
Lease nobody renews: once ``ttl`` has passed since its creation it is taken over (deleted with a
resourceVersion precondition, so two waiters cannot both take it). A pod holds it in its own
name (``pod_holder``): a waiter that may read that pod's namespace and finds the pod gone, or
ended, takes it over at once (``pod_gone``) instead of waiting out the ``ttl``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable
from types import TracebackType

from kube.client import Client
from kube.errors import AlreadyExists, Conflict, KubeError, NotFound
from kube.leader import micro_time
from kube.types import LEASES, PODS

log = logging.getLogger(__name__)
POD_HOLDER = "pod:"


def pod_holder(namespace: str, name: str) -> str:
    """The holder identity of a pod: ``pod:<namespace>/<name>``."""
    return f"{POD_HOLDER}{namespace}/{name}"


def pod_gone(client: Client, namespace: str) -> Callable[[str], bool]:
    """Judges a holder identity: True when it names a pod of ``namespace`` (whose pods the
    caller may read) that no longer exists, is being deleted, or has ended; False when it is
    alive, or cannot be judged (another namespace, not a pod's identity, the API refused)."""

    def gone(holder: str) -> bool:
        where, _, name = holder.removeprefix(POD_HOLDER).partition("/")
        if not holder.startswith(POD_HOLDER) or where != namespace or not name:
            return False
        try:
            pod = client.get(PODS, name, namespace)
        except NotFound:
            return True
        except KubeError:
            return False
        ended = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
        return ended or bool(pod["metadata"].get("deletionTimestamp"))

    return gone


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LeaseMutex:
    def __init__(
        self,
        client: Client,
        namespace: str,
        name: str,
        holder: str,
        *,
        ttl: float = 120.0,
        timeout: float = 300.0,
        holder_gone: Callable[[str], bool] | None = None,
    ) -> None:
        self.client, self.namespace, self.name, self.holder = client, namespace, name, holder
        self.ttl, self.timeout = ttl, timeout
        self.holder_gone = holder_gone
        self._version = ""

    def __enter__(self) -> LeaseMutex:
        deadline = time.monotonic() + self.timeout
        delay = 0.1
        while True:
            stamp = micro_time()
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {
                    "holderIdentity": self.holder,
                    "leaseDurationSeconds": int(self.ttl),
                    "acquireTime": stamp,
                    "renewTime": stamp,
                },
            }
            try:
                created = self.client.create(body, self.namespace)
                self._version = created["metadata"]["resourceVersion"]
                return self
            except AlreadyExists:
                self._take_over_if_abandoned()
            if time.monotonic() > deadline:
                raise TimeoutError(f"Lease {self.namespace}/{self.name} stayed held")
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _take_over_if_abandoned(self) -> None:
        try:
            lease = self.client.get(LEASES, self.name, self.namespace)
        except NotFound:
            return
        created = lease["metadata"].get("creationTimestamp", "")
        try:
            born = dt.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        except ValueError:
            return
        holder = str((lease.get("spec") or {}).get("holderIdentity") or "")
        # In our own name, yet we are still taking it: an earlier container of this pod took
        # it and died (a restarted sidecar); the programs that take these Leases use them one
        # at a time, never two at once in one pod.
        earlier_me = holder == self.holder and holder.startswith(POD_HOLDER)
        if (
            (_now() - born).total_seconds() < self.ttl
            and not earlier_me
            and not (self.holder_gone is not None and self.holder_gone(holder))
        ):
            return
        log.warning(
            "taking over abandoned Lease %s/%s (held by %s)", self.namespace, self.name, holder
        )
        self._delete(lease["metadata"]["resourceVersion"])

    def _delete(self, version: str) -> None:
        body = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "preconditions": {"resourceVersion": version},
        }
        with contextlib.suppress(NotFound, Conflict):
            self.client.request("DELETE", LEASES.path(self.namespace, self.name), body=body)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._delete(self._version)
