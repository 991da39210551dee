"""``stash operator``: shared caches, the reconcilers, and leader election.

Caches start at once on every replica (a standby is warm); the reconcilers' workers run only
on the replica holding the Lease. A leader that loses its Lease stops reconciling and the
process exits, so it can never act beside a new leader.
"""

from __future__ import annotations

import functools
import logging
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from api import constants as c
from api.objects import JSON
from controller.invokers.auto_backup_reconciler import AutoBackupReconciler
from controller.invokers.optin import OptInReconciler
from controller.invokers.reconciler import InvokerReconciler
from controller.invokers.schedule_metrics import ScheduleCollector, StalenessCollector
from controller.jobs.builtin_tasks import builtin_objects
from controller.repository import RepositoryReconciler
from controller.runtime.caches import Caches
from controller.runtime.defaults import SIDECAR_GRACE, WORKERS
from controller.runtime.health import HealthServer
from controller.runtime.loop import Controller
from controller.runtime.metrics import RuntimeMetrics
from controller.runtime.owned import OPERATOR_FIELD_MANAGER
from controller.runtime.pushgateway_front import PushgatewayFront
from controller.sessions.backup import BackupSide
from controller.sessions.effects import Wiring
from controller.sessions.metrics_restore import CHECK_SECONDS, MetricsRestorer
from controller.sessions.reconciler import SessionReconciler
from controller.sessions.restore import INIT_GRACE, RestoreSide
from controller.sessions.target_use import TargetUse
from controller.sessions.targets import DefaultDeadline
from controller.sessions.verification import Verifier
from kube import Client, KubeError
from kube.leader import LeaderElector
from kube.types import CRONJOBS, INVOKER_TYPES, PODS

log = logging.getLogger(__name__)

LEASE_NAME = "stash-operator"


RECONCILE_LIMIT = 600.0  # seconds a reconcile may run before /healthz fails
CACHE_SYNC_TIMEOUT = 120.0  # seconds to wait for every cache's first list before reconciling


@dataclass(frozen=True)
class OperatorOptions:
    image: str
    namespace: str = "stash"
    leader_elect: bool = True
    identity: str = ""
    workers: int = WORKERS
    pushgateway_url: str = ""
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    health_port: int | None = None  # serve /healthz and /readyz (0: any free port)
    # serve the Pushgateway's reads on this port, refuse writes (runtime.pushgateway_front)
    pushgateway_read_port: int | None = None
    pod_name: str = ""  # label our pod while leading: the Pushgateway Service selects it
    # a sidecar target with no ready pod carrying the sidecar fails after this long
    sidecar_grace: float = SIDECAR_GRACE
    # how often the Pushgateway's groups are compared with the API's record (while leading)
    metrics_check: float = CHECK_SECONDS
    # a workload restore whose pods still carry no stash-init fails after this long
    init_grace: float = INIT_GRACE
    # a reconcile running longer than this makes /healthz fail (every API call has a timeout)
    reconcile_limit: float = RECONCILE_LIMIT
    # the deadline of a session without timeOut, which work still making progress outlives
    default_deadline: DefaultDeadline = field(default_factory=DefaultDeadline)
    # verify invokers' sessions unless their annotation says otherwise (and the other way)
    verify_backups: bool = True


LEADER_LABEL = f"{c.GROUP}/leader"


class Operator:
    def __init__(self, client: Client, options: OperatorOptions) -> None:
        self.client = client
        self.options = options
        self.identity = options.identity or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
        self.caches = Caches(client)
        self.invokers = InvokerReconciler(
            client,
            self.caches,
            options.image,
            options.namespace,
            verification=functools.partial(
                Verifier,
                client,
                self.caches,
                image=options.image,
                by_default=options.verify_backups,
            ),
        )
        self.optin = OptInReconciler(client, self.caches)
        self.auto_backup = AutoBackupReconciler(client, self.caches, options.namespace)
        # one judge of who works on a target: backups and restores never overlap on one
        self.target_use = TargetUse(self.caches)
        wiring = Wiring(
            client,
            self.caches,
            options.image,
            pushgateway_url=options.pushgateway_url,
            operator_namespace=options.namespace,
            target_use=self.target_use,
            default_deadline=options.default_deadline,
        )
        self.sessions = SessionReconciler(BackupSide(wiring, sidecar_grace=options.sidecar_grace))
        self.repositories = RepositoryReconciler(
            client, self.caches, options.namespace, options.image
        )
        self.restores = SessionReconciler(RestoreSide(wiring, init_grace=options.init_grace))
        self.metrics_restorer = (
            MetricsRestorer(self.caches, options.pushgateway_url, options.metrics_check)
            if options.pushgateway_url
            else None
        )
        self.metrics = RuntimeMetrics()
        cronjobs = self.caches.informer(CRONJOBS)
        self.metrics.registry.register(ScheduleCollector(cronjobs.items))
        self.metrics.registry.register(StalenessCollector(self._backup_invokers))
        self.metrics.leader.labels(name=LEASE_NAME).set(0)
        self.controllers = self._controllers(options.workers)
        self.elector = (
            LeaderElector(
                client,
                options.namespace,
                LEASE_NAME,
                self.identity,
                lease_duration=options.lease_duration,
                renew_deadline=options.renew_deadline,
                retry_period=options.retry_period,
            )
            if options.leader_elect
            else None
        )
        self.leading = threading.Event()
        self.stopped = threading.Event()
        self.health: HealthServer | None = None
        self.front: PushgatewayFront | None = None

    def _backup_invokers(self) -> list[JSON]:
        """Every cached BackupBatch and BackupConfiguration, with its kind."""
        return [
            {"kind": kind, **obj}
            for kind, rt in INVOKER_TYPES.items()
            for obj in self.caches.informer(rt).items()
        ]

    def _controllers(self, workers: int) -> list[Controller[Any]]:
        """One controller per reconciler, each registered on the caches it watches."""
        m = self.metrics
        controllers: list[Controller[Any]] = [
            Controller("invokers", self.invokers, workers, _invoker_fields, m),
            Controller("optin", self.optin, workers, _workload_fields, m),
            Controller("sessions", self.sessions, workers, _session_fields, m),
            Controller("repositories", self.repositories, 1, _repository_fields, m),
            Controller("restores", self.restores, workers, _invoker_fields, m),
            Controller("auto-backup", self.auto_backup, workers, _target_fields, m),
        ]
        self.invokers.register(controllers[0])
        self.optin.register(controllers[1])
        self.sessions.register(controllers[2])
        self.repositories.register(controllers[3])
        self.restores.register(controllers[4])
        self.auto_backup.register(controllers[5])
        return controllers

    def writes_in(self, namespace: str) -> int:
        """How many API writes the reconcilers have made in ``namespace``."""
        return sum(
            r.writes.in_namespace(namespace)
            for r in (
                self.invokers,
                self.optin,
                self.sessions,
                self.repositories,
                self.restores,
                self.auto_backup,
            )
        )

    def install_builtins(self) -> None:
        """The built-in Tasks and Functions (pvc-backup, pvc-restore), applied idempotently."""
        for obj in builtin_objects(self.options.image):
            try:
                self.client.apply(obj, field_manager=OPERATOR_FIELD_MANAGER)
            except KubeError as exc:
                log.error("could not install %s %s: %s", obj["kind"], obj["metadata"]["name"], exc)

    def _label_pod(self, leading: bool) -> None:
        """Mark (or unmark) our pod as the leader's: only the leader's Pushgateway is served,
        so every metric lands in, and is scraped from, one place."""
        if not self.options.pod_name:
            return
        patch = {"metadata": {"labels": {LEADER_LABEL: "true" if leading else None}}}
        try:
            self.client.patch(PODS, self.options.pod_name, patch, namespace=self.options.namespace)
        except KubeError as exc:
            log.warning("could not label pod %s: %s", self.options.pod_name, exc)

    def _start_controllers(self) -> None:
        # Reconcile from full caches only (controller-runtime's WaitForCacheSync): a reconciler
        # that judged an invoker from a half-listed cache ("Task pvc-backup not found") is not
        # told again by the list that completes it.
        deadline = time.monotonic() + CACHE_SYNC_TIMEOUT
        for informer in self.caches.informers():
            if not informer.wait_synced(max(0.0, deadline - time.monotonic())):
                log.warning("caches not listed in %.0f s; reconciling anyway", CACHE_SYNC_TIMEOUT)
                break
        log.info("%s: reconciling", self.identity)
        self._label_pod(leading=True)
        self.install_builtins()
        for controller in self.controllers:
            controller.start()
        if self.metrics_restorer is not None:
            self.metrics_restorer.start()
        self.leading.set()
        self.metrics.leader.labels(name=LEASE_NAME).set(1)

    def _stop_controllers(self) -> None:
        self.leading.clear()
        self.metrics.leader.labels(name=LEASE_NAME).set(0)
        if self.metrics_restorer is not None:
            self.metrics_restorer.stop()
        for controller in self.controllers:
            controller.stop()
        self._label_pod(leading=False)
        self.stopped.set()

    def ready(self) -> bool:
        """Caches in sync while leading; a standby replica is ready to take over."""
        return not self.leading.is_set() or self.caches.synced()

    def wedged(self) -> str | None:
        """Why this replica no longer works, for ``/healthz`` (the kubelet then restarts it):
        an informer that stopped or hears nothing, a worker that ended, a reconcile that does
        not return. None while it works."""
        for informer in self.caches.informers():
            why = informer.wedged()
            if why:
                return why
        if not self.leading.is_set():
            return None
        for controller in self.controllers:
            why = controller.wedged(self.options.reconcile_limit)
            if why:
                return why
        return None

    def run(self, stop: threading.Event) -> None:
        """Block until ``stop`` is set (or the Lease is lost)."""
        if self.options.health_port is not None:
            self.health = HealthServer(
                self.options.health_port,
                ready=self.ready,
                wedged=self.wedged,
                registry=self.metrics.registry,
            ).start()
        if self.options.pushgateway_read_port is not None and self.options.pushgateway_url:
            self.front = PushgatewayFront(
                self.options.pushgateway_url, self.options.pushgateway_read_port
            ).start()
        try:
            self._run(stop)
        finally:
            if self.health is not None:
                self.health.stop()
            if self.front is not None:
                self.front.stop()

    def _run(self, stop: threading.Event) -> None:
        self._label_pod(leading=False)  # a restarted container may have led before
        self.caches.start()
        if self.elector is None:
            self._start_controllers()
            stop.wait()
            self._stop_controllers()
        else:
            elector = self.elector

            def stop_campaign() -> None:
                stop.wait()
                elector.stop()

            threading.Thread(target=stop_campaign, daemon=True).start()
            elector.run(self._start_controllers, self._stop_controllers)
        self.caches.stop()
        self.stopped.set()


# What each reconciler's log lines are about, from its key.
def _invoker_fields(key: tuple[str, str, str]) -> dict[str, str]:
    kind, namespace, name = key
    return {"namespace": namespace, "invoker": f"{kind}/{name}"}


def _target_fields(key: tuple[str, str, str]) -> dict[str, str]:
    kind, namespace, name = key
    return {"namespace": namespace, "target": f"{kind}/{name}"}


def _workload_fields(key: tuple[str, str, str]) -> dict[str, str]:
    namespace, kind, name = key
    return {"namespace": namespace, "target": f"{kind}/{name}"}


def _session_fields(key: tuple[str, str]) -> dict[str, str]:
    return {"namespace": key[0], "session": key[1]}


def _repository_fields(key: tuple[str, str]) -> dict[str, str]:
    return {"namespace": key[0], "repository": key[1]}
