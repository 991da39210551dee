"""Leader election over a ``coordination.k8s.io`` Lease, as client-go does it.

A candidate takes the Lease when it is free or its holder has not renewed it within the lease
duration *as observed locally* (no trust in other machines' clocks); the leader renews it every
retry period and steps down (``on_stopped``) if it cannot renew within the renew deadline. A
graceful stop releases the Lease so another replica takes over at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable

from api.objects import JSON
from kube import AlreadyExists, Client, Conflict, KubeError, NotFound
from kube.types import LEASES

log = logging.getLogger(__name__)


def micro_time(when: dt.datetime | None = None) -> str:
    """A Lease's MicroTime (acquireTime, renewTime)."""
    return (when or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        client: Client,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.is_leader = threading.Event()
        self._stop = threading.Event()
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0

    def _lease_body(self, transitions: int, acquire: str) -> JSON:
        now = micro_time()
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_duration),
            "acquireTime": acquire or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def try_acquire_or_renew(self) -> bool:
        try:
            lease = self.client.get(LEASES, self.name, self.namespace)
        except NotFound:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._lease_body(0, ""),
            }
            try:
                self.client.create(body)
            except AlreadyExists:
                return False
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, str(spec.get("renewTime", "")))
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        expired = time.monotonic() > self._observed_at + duration
        if holder and holder != self.identity and not expired:
            return False
        ours = holder == self.identity
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if ours else 1)
        lease["spec"] = self._lease_body(transitions, spec.get("acquireTime", "") if ours else "")
        try:
            self.client.request("PUT", LEASES.path(self.namespace, self.name), body=lease)
        except Conflict:
            return False
        return True

    def run(self, on_started: Callable[[], None], on_stopped: Callable[[], None]) -> None:
        """Block: campaign, lead (calling ``on_started``), and on losing the Lease call
        ``on_stopped`` and return."""
        while not self._stop.is_set():
            try:
                if self.try_acquire_or_renew():
                    break
            except KubeError as exc:
                log.warning("leader election: %s", exc)
            self._stop.wait(self.retry_period)
        if self._stop.is_set():
            return
        log.info("%s became the leader (%s/%s)", self.identity, self.namespace, self.name)
        self.is_leader.set()
        on_started()
        last_renewed = time.monotonic()
        while not self._stop.wait(self.retry_period):
            try:
                if self.try_acquire_or_renew():
                    last_renewed = time.monotonic()
                    continue
            except KubeError as exc:
                log.warning("leader election: renewing failed: %s", exc)
            if time.monotonic() - last_renewed > self.renew_deadline:
                log.error("%s lost the lease %s/%s", self.identity, self.namespace, self.name)
                break
        self.is_leader.clear()
        on_stopped()

    def stop(self, release: bool = True) -> None:
        self._stop.set()
        if release and self.is_leader.is_set():
            try:
                lease = self.client.get(LEASES, self.name, self.namespace)
                if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                    lease["spec"]["holderIdentity"] = ""
                    lease["spec"]["leaseDurationSeconds"] = 1
                    self.client.request("PUT", LEASES.path(self.namespace, self.name), body=lease)
            except KubeError as exc:
                log.warning("could not release the lease: %s", exc)
