"""Deterministic names of the objects the operator creates (DESIGN.md section 4).

Kubernetes limits some names more than others: a CronJob's to 52 characters (its Jobs get an
11-character suffix), a Job's to 63 (it becomes a pod label value). A name that would be too
long keeps its readable start and ends with a hash of the whole, so it stays unique and stable.
"""

from __future__ import annotations

import hashlib

CRONJOB_NAME_MAX = 52
JOB_NAME_MAX = 63
LABEL_VALUE_MAX = 63
OBJECT_NAME_MAX = 253  # a DNS subdomain: custom resources, Leases, service accounts


def fit(name: str, limit: int) -> str:
    """``name`` with dots as dashes, shortened to ``limit`` with a stable hash when needed."""
    name = name.replace(".", "-")
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-')}-{digest}"


def label_value(value: str) -> str:
    """``value`` as a label value: kept when it fits 63 characters, else its start and a hash
    (objects are matched to their invoker and session by owner reference, not by this)."""
    if len(value) <= LABEL_VALUE_MAX:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    return f"{value[: LABEL_VALUE_MAX - 9].rstrip('-.')}-{digest}"


def auto_backup_name(prefix: str, name: str, blueprint: str | None = None) -> str:
    """The Repository and BackupConfiguration auto-backup generates for a target:
    ``<prefix>-<name>`` as Stash names them (``deployment-web``, ``app-orders-db``), and, for
    a target that names several blueprints, ``<prefix>-<name>-<blueprint>`` for each; at most
    63 characters."""
    base = f"{prefix}-{name}"
    return fit(f"{base}-{blueprint}" if blueprint else base, JOB_NAME_MAX)


def cronjob_name(invoker: str) -> str:
    return fit(f"stash-trigger-{invoker}", CRONJOB_NAME_MAX)


def session_name(invoker: str, unix_seconds: int) -> str:
    """``<invoker>-<unix-seconds>``; a long invoker name is cut (with a hash) so that the
    whole stays a valid name and keeps its time."""
    suffix = f"-{unix_seconds}"
    if len(invoker) + len(suffix) <= OBJECT_NAME_MAX:
        return invoker + suffix
    return fit(invoker, OBJECT_NAME_MAX - len(suffix)) + suffix


def backup_job_name(session: str, member_index: int) -> str:
    return fit(f"stash-backup-{session}-{member_index}", JOB_NAME_MAX)


def finish_job_name(session: str) -> str:
    """The Job that does a session's repository work when its last host died first."""
    return fit(f"stash-finish-{session}", JOB_NAME_MAX)


def restore_job_name(invoker: str, member_index: int, ordinal: int | None = None) -> str:
    """The restore Job of a RestoreSession (member 0) or of a RestoreBatch's member; restoring
    into new PVCs, one per ordinal (``-<ordinal>`` after the index, as in Stash)."""
    suffix = "" if ordinal is None else f"-{ordinal}"
    return fit(f"stash-restore-{invoker}-{member_index}{suffix}", JOB_NAME_MAX)


def hook_job_name(session: str, kind: str) -> str:
    """The Job that runs a BackupBatch's own ``preBackup`` / ``postBackup`` hook (a
    RestoreBatch's ``preRestore`` / ``postRestore``: ``session`` is the RestoreBatch)."""
    return fit(f"stash-hook-{session}-{'pre' if kind.startswith('pre') else 'post'}", JOB_NAME_MAX)


def verify_job_name(session: str, again_at: int | None = None) -> str:
    """The Job that verifies a session's snapshots: the first time ``stash-verify-<session>``,
    each time again ``stash-verify-<session>-<unix-seconds it was due>``."""
    suffix = "" if again_at is None else f"-{again_at}"
    return fit(f"stash-verify-{session}{suffix}", JOB_NAME_MAX)


def wipe_job_name(repository: str) -> str:
    """The Job that deletes a ``wipeOut`` Repository's data, in the Repository's namespace;
    also its service account, Role and RoleBinding."""
    return fit(f"stash-wipe-{repository}", JOB_NAME_MAX)


def invoker_service_account(invoker: str) -> str:
    """The service account the trigger CronJob runs as (may only create BackupSessions)."""
    return fit(f"stash-trigger-{invoker}", JOB_NAME_MAX)


def backup_service_account(invoker: str) -> str:
    """The service account backup Jobs run as (bound to ClusterRole ``stash-backup-job``)."""
    return fit(f"stash-backup-{invoker}", JOB_NAME_MAX)


def restore_service_account(invoker: str) -> str:
    """The service account restore Jobs run as (bound to ClusterRole ``stash-restore-job``)."""
    return fit(f"stash-restore-{invoker}", JOB_NAME_MAX)


def sidecar_role_binding(invoker: str) -> str:
    """The RoleBinding that grants the invoker's workloads' service accounts ClusterRole
    ``stash-sidecar`` in the invoker's namespace."""
    return fit(f"stash-sidecar-{invoker}", JOB_NAME_MAX)


BACKUP_JOB_CLUSTER_ROLE = "stash-backup-job"
RESTORE_JOB_CLUSTER_ROLE = "stash-restore-job"
SIDECAR_CLUSTER_ROLE = "stash-sidecar"
# Bound to the service accounts of workloads being restored, for their stash-init.
RESTORE_INIT_CLUSTER_ROLE = "stash-restore-init"
# Bound in a Repository's namespace for the backups of other namespaces it allows: its init Lease.
REPOSITORY_INIT_CLUSTER_ROLE = "stash-repository-init"
LEASE_NAME_MAX = 253  # a DNS subdomain


def named_access(kind: str, invoker: str) -> str:
    """The Role and RoleBinding that let an invoker's workloads' service accounts reach, by
    name, its Repository, storage Secret, Leases and workloads in the invoker's namespace."""
    return fit(f"stash-{kind.lower()}-{invoker}-access", JOB_NAME_MAX)


def restore_init_binding(kind: str, invoker: str) -> str:
    """The RoleBinding of ClusterRole ``stash-restore-init`` to the accounts of the workloads a
    restore restores (their stash-init)."""
    return fit(f"stash-{kind.lower()}-{invoker}-init", JOB_NAME_MAX)


def restore_turn_lease(target_kind: str, target_name: str) -> str:
    """The Lease the pods of one Deployment take turns restoring its host by (stash-init)."""
    return fit(f"stash-restore-{target_kind.lower()}-{target_name}", LEASE_NAME_MAX)


def sidecar_lease(target_kind: str, target_name: str) -> str:
    """The Lease whose holder is the one pod of a Deployment (ReplicaSet…) that backs up."""
    return fit(f"stash-sidecar-{target_kind.lower()}-{target_name}", LEASE_NAME_MAX)


def repository_init_lease(repository: str) -> str:
    """The Lease that serialises initialising a new restic repository."""
    return fit(f"stash-init-{repository}", LEASE_NAME_MAX)


def pushgateway_job(invoker_kind: str, namespace: str, invoker: str) -> str:
    return f"{invoker_kind.lower()}-{namespace}-{invoker}"
