"""A cluster-wide mutex over a ``coordination.k8s.io`` Lease, for short critical sections
between pods that share nothing else (e.g. hosts initialising one restic repository: restic's
own ``init`` is not safe against a concurrent ``init``).

Holding it means having created the Lease; leaving deletes it. A holder that died leaves a
Lease nobody renews: once ``ttl`` has passed since its creation it is taken over (deleted with a
resourceVersion precondition, so two waiters cannot both take it). A pod holds it in its own
name (``pod_holder``): a waiter that may read that pod's namespace and finds the pod gone, or
ended, takes it over at once (``pod_gone``) instead of waiting out the ``ttl``.

A waiter waits by watching that one Lease (by name: a role may grant ``watch`` of it alone),
not by trying to create it over and over: it learns of the release as it happens, and looks at
the holder again every ``JUDGE_EVERY`` seconds (a pod that died sends the Lease no event).
Without ``watch`` it falls back to trying again with a backoff.
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
JUDGE_EVERY = 5  # seconds between looks at a live holder, while watching its Lease


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
                held = self._take_over_if_abandoned()
            if held is not None:
                held = self._wait_while_held(held, deadline)
            if time.monotonic() > deadline:
                raise TimeoutError(f"Lease {self.namespace}/{self.name} stayed held")
            if held is None:  # released or taken over: try to take it at once
                delay = 0.1
                continue
            time.sleep(delay)  # no watch to be had: try again after a backoff
            delay = min(delay * 2, 2.0)

    def _wait_while_held(self, version: str, deadline: float) -> str | None:
        """Watch the held Lease until it goes (None) or is abandoned and taken over (None),
        judging its holder every ``JUDGE_EVERY`` s: one create attempt per release, not one
        per backoff step. Its resourceVersion when no watch is to be had, or time ran out."""
        while time.monotonic() < deadline:
            left = deadline - time.monotonic()
            released = self._watch_for_release(version, min(left, JUDGE_EVERY))
            if released is None:
                return version
            if released:
                return None
            held = self._take_over_if_abandoned()
            if held is None:
                return None
            version = held
        return version

    def _watch_for_release(self, version: str, seconds: float) -> bool | None:
        """Wait up to ``seconds`` for the Lease at ``version`` to go: True when it went, False
        when it is still there; None when a watch is not to be had (not allowed, or the API
        server is away): the caller backs off."""
        try:
            for event in self.client.watch(
                LEASES,
                self.namespace,
                resource_version=version,
                field_selector=f"metadata.name={self.name}",
                timeout_seconds=max(1, int(seconds)),
            ):
                if event.get("type") == "DELETED":
                    return True
        except KubeError as exc:  # Forbidden (a role without watch), Gone, Unavailable
            log.debug("cannot watch Lease %s/%s: %s", self.namespace, self.name, exc)
            return None
        return False

    def _take_over_if_abandoned(self) -> str | None:
        """Delete the Lease if its holder abandoned it; else its resourceVersion (None: it
        is gone already, or was taken over)."""
        try:
            lease = self.client.get(LEASES, self.name, self.namespace)
        except NotFound:
            return None
        created = lease["metadata"].get("creationTimestamp", "")
        try:
            born = dt.datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        except ValueError:  # its age cannot be judged: held, waited for like a live one
            return str(lease["metadata"]["resourceVersion"])
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
            return str(lease["metadata"]["resourceVersion"])
        log.warning(
            "taking over abandoned Lease %s/%s (held by %s)", self.namespace, self.name, holder
        )
        self._delete(lease["metadata"]["resourceVersion"])
        return None

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
