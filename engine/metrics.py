"""Prometheus metrics of backups, as the operator pushes them to the Pushgateway (DESIGN.md
section 4; which groups, from which record: ``controller.sessions.metric_groups``).

Every push is a fresh registry PUT into its own group of job ``<invoker-kind>-<ns>-<invoker>``,
so nothing stale survives:

- one group per host (``kind``, ``name``, ``hostname``): the host's backup or restore metrics;
- one per repository (``repository``): integrity, size, snapshot count, snapshots cleaned;
- the session group (job only): session and target success/duration, with the last-success
  times derived from the invoker's history.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.error import URLError

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from api.naming import pushgateway_job
from engine.results import HostResult, RepositoryFigures

log = logging.getLogger(__name__)
PUSH_TIMEOUT = 10.0


class MetricsError(RuntimeError):
    """The Pushgateway refused or could not be reached."""


@dataclass(frozen=True)
class Invoker:
    kind: str
    name: str
    namespace: str
    repository: str

    @property
    def job(self) -> str:
        return pushgateway_job(self.kind, self.namespace, self.name)

    @property
    def labels(self) -> dict[str, str]:
        return {
            "invoker_kind": self.kind,
            "invoker_name": self.name,
            "namespace": self.namespace,
            "repository": self.repository,
        }


def _gauge(registry: CollectorRegistry, name: str, doc: str, labels: dict[str, str]) -> Gauge:
    return Gauge(name, doc, list(labels), registry=registry)


def host_registry(invoker: Invoker, kind: str, name: str, result: HostResult) -> CollectorRegistry:
    registry = CollectorRegistry()
    labels = {**invoker.labels, "kind": kind, "name": name, "hostname": result.hostname}
    totals = result.totals()
    values = {
        "stash_backup_host_backup_success": (
            "1 if the host's last backup succeeded, 0 if it failed",
            1.0 if result.succeeded else 0.0,
        ),
        "stash_backup_host_backup_duration_seconds": (
            "Wall time of the host's last backup",
            result.duration,
        ),
        "stash_backup_host_data_size_bytes": (
            "Size of the data the host backed up",
            float(totals.total_bytes),
        ),
        "stash_backup_host_data_uploaded_bytes": (
            "Bytes the host's last backup added to the repository",
            float(totals.uploaded_bytes),
        ),
        "stash_backup_host_files_total": ("Files in the backup", float(totals.files_total)),
        "stash_backup_host_files_new": ("New files", float(totals.files_new)),
        "stash_backup_host_files_modified": ("Modified files", float(totals.files_modified)),
        "stash_backup_host_files_unmodified": (
            "Unmodified files",
            float(totals.files_unmodified),
        ),
    }
    for metric, (doc, value) in values.items():
        _gauge(registry, metric, doc, labels).labels(**labels).set(value)
    return registry


def repository_registry(invoker: Invoker, figures: RepositoryFigures) -> CollectorRegistry:
    registry = CollectorRegistry()
    labels = invoker.labels
    values = {
        "stash_repository_integrity": (
            "1 if restic check found no errors",
            1.0 if figures.integrity else 0.0,
        ),
        "stash_repository_size_bytes": ("Size of the repository", float(figures.size_bytes)),
        "stash_repository_snapshot_count": (
            "Snapshots in the repository",
            float(figures.snapshot_count),
        ),
        "stash_repository_snapshot_cleaned": (
            "Snapshots removed by the last retention run",
            float(figures.snapshots_removed),
        ),
    }
    for metric, (doc, value) in values.items():
        _gauge(registry, metric, doc, labels).labels(**labels).set(value)
    return registry


@dataclass(frozen=True)
class TargetOutcome:
    kind: str
    name: str
    succeeded: bool
    last_success: float | None  # unix seconds of the target's last successful backup


@dataclass(frozen=True)
class SessionOutcome:
    succeeded: bool
    duration: float
    last_success: float | None
    targets: tuple[TargetOutcome, ...]


def session_registry(invoker: Invoker, outcome: SessionOutcome) -> CollectorRegistry:
    registry = CollectorRegistry()
    labels = invoker.labels
    _gauge(
        registry,
        "stash_backup_session_success",
        "1 if the last backup session succeeded",
        labels,
    ).labels(**labels).set(1.0 if outcome.succeeded else 0.0)
    _gauge(
        registry,
        "stash_backup_session_duration_seconds",
        "Duration of the last backup session",
        labels,
    ).labels(**labels).set(outcome.duration)
    if outcome.last_success is not None:
        _gauge(
            registry,
            "stash_backup_last_success_time_seconds",
            "Unix time of the invoker's last successful session",
            labels,
        ).labels(**labels).set(outcome.last_success)
    target_labels = {**labels, "kind": "", "name": ""}
    success = _gauge(
        registry,
        "stash_backup_target_success",
        "1 if the target's last backup succeeded",
        target_labels,
    )
    last = _gauge(
        registry,
        "stash_backup_target_last_success_time_seconds",
        "Unix time of the target's last successful backup",
        target_labels,
    )
    for target in outcome.targets:
        values = {**labels, "kind": target.kind, "name": target.name}
        success.labels(**values).set(1.0 if target.succeeded else 0.0)
        if target.last_success is not None:
            last.labels(**values).set(target.last_success)
    return registry


def push(url: str, job: str, grouping: dict[str, str], registry: CollectorRegistry) -> None:
    """PUT ``registry`` as the group ``grouping`` of ``job``; replaces what the group held."""
    try:
        push_to_gateway(
            url, job=job, registry=registry, grouping_key=grouping, timeout=PUSH_TIMEOUT
        )
    except (URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MetricsError(f"pushing metrics to {url} failed: {reason}") from None
    log.debug("pushed %s %s to %s", job, grouping, url)


@dataclass(frozen=True)
class RestoreTargetOutcome:
    kind: str
    name: str
    succeeded: bool
    hosts: int


def restore_host_registry(
    invoker: Invoker, kind: str, name: str, result: HostResult
) -> CollectorRegistry:
    """A host's restore metrics (Stash's ``stash_restore_host_*``)."""
    registry = CollectorRegistry()
    labels = {**invoker.labels, "kind": kind, "name": name, "hostname": result.hostname}
    _gauge(
        registry,
        "stash_restore_host_restore_success",
        "1 if the host's restore succeeded, 0 if it failed",
        labels,
    ).labels(**labels).set(1.0 if result.succeeded else 0.0)
    _gauge(
        registry,
        "stash_restore_host_restore_duration_seconds",
        "Wall time of the host's restore",
        labels,
    ).labels(**labels).set(result.duration)
    return registry


def restore_session_registry(
    invoker: Invoker, succeeded: bool, duration: float, targets: tuple[RestoreTargetOutcome, ...]
) -> CollectorRegistry:
    """A finished RestoreSession's or RestoreBatch's metrics (Stash's ``stash_restore_*``)."""
    registry = CollectorRegistry()
    labels = invoker.labels
    for name, doc, value in (
        ("stash_restore_session_success", "1 if the restore succeeded", float(succeeded)),
        ("stash_restore_session_duration_seconds", "Duration of the restore", duration),
        ("stash_restore_target_count_total", "Targets of the restore", float(len(targets))),
    ):
        _gauge(registry, name, doc, labels).labels(**labels).set(value)
    target_labels = {**labels, "kind": "", "name": ""}
    success = _gauge(
        registry, "stash_restore_target_success", "1 if the target was restored", target_labels
    )
    hosts = _gauge(
        registry,
        "stash_restore_target_host_count_total",
        "Hosts of the target that were restored",
        target_labels,
    )
    for target in targets:
        values = {**labels, "kind": target.kind, "name": target.name}
        success.labels(**values).set(1.0 if target.succeeded else 0.0)
        hosts.labels(**values).set(float(target.hosts))
    return registry
