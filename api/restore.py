"""RestoreSession and RestoreBatch (``stash.appscode.com/v1beta1``)."""

from __future__ import annotations

from typing import Annotated, Literal

from api.base import CrdDefault, Model, Resource
from api.common import (
    Condition,
    Duration,
    EmptyDirSettings,
    ExecutionOrder,
    ObjectReference,
    RawObject,
    RestoreHooks,
    RuntimeSettings,
    Snapshotter,
    TargetRef,
    TaskRef,
    Time,
    VolumeMount,
)
from api.constants import V1BETA1

RestorePhase = Literal["Pending", "Running", "Succeeded", "Failed", "Unknown", "Invalid"]
RestoreTargetPhase = Literal["Pending", "Running", "Succeeded", "Failed"]
HostRestorePhase = Literal["Running", "Succeeded", "Failed", "Unknown"]


class Rule(Model):
    """Which snapshots (or which host's latest) to restore into which hosts, and which paths."""

    target_hosts: list[str] | None = None
    source_host: str | None = None
    snapshots: list[str] | None = None
    paths: list[str] | None = None
    exclude: list[str] | None = None
    include: list[str] | None = None


class RestoreTarget(Model):
    alias: str | None = None
    ref: TargetRef | None = None
    volume_mounts: list[VolumeMount] | None = None
    replicas: int | None = None
    volume_claim_templates: list[RawObject] | None = None
    rules: list[Rule] | None = None
    args: list[str] | None = None

    def claim_template_names(self) -> list[str]:
        """The names of ``volumeClaimTemplates`` as written (``${POD_ORDINAL}`` unresolved)."""
        return [
            str((t.get("metadata") or {}).get("name") or "")
            for t in self.volume_claim_templates or []
        ]

    def identity(self) -> TargetRef | None:
        """What the restore names as its target in status, metrics and snapshot choice:
        ``ref``, else, restoring into new PVCs, the first claim template as a PVC (Stash's
        ``TARGET_NAME``)."""
        if self.ref is not None and self.ref.kind and self.ref.name:
            return self.ref
        names = self.claim_template_names()
        if names and names[0]:
            return TargetRef(api_version="v1", kind="PersistentVolumeClaim", name=names[0])
        return self.ref


class RestoreMember(Model):
    """One restore target with its task and settings (Stash's RestoreTargetSpec)."""

    task: TaskRef | None = None
    target: RestoreTarget | None = None
    runtime_settings: RuntimeSettings | None = None
    temp_dir: EmptyDirSettings | None = None
    interim_volume_template: RawObject | None = None
    hooks: RestoreHooks | None = None


class RestoreSessionSpec(RestoreMember):
    driver: Annotated[Snapshotter, CrdDefault()] = "Restic"
    repository: ObjectReference | None = None
    rules: list[Rule] | None = None  # deprecated in Stash: use target.rules
    time_out: Duration | None = None


class HostRestoreStats(Model):
    hostname: str | None = None
    phase: HostRestorePhase | None = None
    duration: str | None = None
    error: str | None = None


class RestoreSessionStatus(Model):
    phase: RestorePhase | None = None
    total_hosts: int | None = None
    session_duration: str | None = None
    stats: list[HostRestoreStats] | None = None
    conditions: list[Condition] | None = None
    session_deadline: Time | None = None


class RestoreSession(Resource):
    API_VERSION = V1BETA1
    KIND = "RestoreSession"

    spec: RestoreSessionSpec
    status: RestoreSessionStatus | None = None


class RestoreBatchSpec(Model):
    driver: Annotated[Snapshotter, CrdDefault()] = "Restic"
    repository: ObjectReference | None = None
    members: list[RestoreMember] | None = None
    hooks: RestoreHooks | None = None
    execution_order: Annotated[ExecutionOrder, CrdDefault()] = "Parallel"
    time_out: Duration | None = None


class RestoreMemberStatus(Model):
    ref: TargetRef
    conditions: list[Condition] | None = None
    phase: RestoreTargetPhase | None = None
    total_hosts: int | None = None
    stats: list[HostRestoreStats] | None = None


class RestoreBatchStatus(Model):
    phase: RestorePhase | None = None
    session_duration: str | None = None
    conditions: list[Condition] | None = None
    members: list[RestoreMemberStatus] | None = None
    session_deadline: Time | None = None


class RestoreBatch(Resource):
    API_VERSION = V1BETA1
    KIND = "RestoreBatch"

    spec: RestoreBatchSpec
    status: RestoreBatchStatus | None = None
