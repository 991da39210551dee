"""BackupConfiguration, BackupBatch and BackupSession (``stash.appscode.com/v1beta1``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from api.base import CrdDefault, Model, Resource
from api.common import (
    BackupHooks,
    Condition,
    Duration,
    EmptyDirSettings,
    ExecutionOrder,
    ObjectReference,
    RawObject,
    RetentionPolicy,
    RetryConfig,
    RuntimeSettings,
    Snapshotter,
    TargetRef,
    TaskRef,
    Time,
    VolumeMount,
)
from api.constants import V1BETA1

InvokerPhase = Literal["Invalid", "Ready", "NotReady"]
SessionPhase = Literal["Pending", "Skipped", "Running", "Succeeded", "Failed", "Unknown"]
TargetPhase = Literal["Pending", "Running", "Succeeded", "Failed"]
HostPhase = Literal["Succeeded", "Failed"]


class BackupTarget(Model):
    """What one member backs up, and how its data is reached."""

    alias: str | None = None
    ref: TargetRef | None = None
    paths: list[str] | None = None
    exclude: list[str] | None = None
    volume_mounts: list[VolumeMount] | None = None
    replicas: int | None = None
    snapshot_class_name: str | None = None
    args: list[str] | None = None


class BackupMember(Model):
    """A backup target with its task and settings (Stash's BackupConfigurationTemplateSpec)."""

    task: TaskRef | None = None
    target: BackupTarget | None = None
    runtime_settings: RuntimeSettings | None = None
    temp_dir: EmptyDirSettings | None = None
    interim_volume_template: RawObject | None = None
    hooks: BackupHooks | None = None


class BackupConfigurationSpec(BackupMember):
    schedule: str | None = None
    driver: Annotated[Snapshotter, CrdDefault()] = "Restic"
    repository: ObjectReference | None = None
    retention_policy: RetentionPolicy
    paused: bool | None = None
    backup_history_limit: Annotated[int, Field(ge=0)] | None = None
    time_out: Duration | None = None
    retry_config: RetryConfig | None = None


class InvokerStatus(Model):
    observed_generation: int | None = None
    conditions: list[Condition] | None = None
    phase: InvokerPhase | None = None


class BackupConfiguration(Resource):
    API_VERSION = V1BETA1
    KIND = "BackupConfiguration"

    spec: BackupConfigurationSpec
    status: InvokerStatus | None = None


class BackupBatchSpec(Model):
    members: list[BackupMember] | None = None
    schedule: str | None = None
    runtime_settings: RuntimeSettings | None = None
    driver: Annotated[Snapshotter, CrdDefault()] = "Restic"
    repository: ObjectReference | None = None
    retention_policy: RetentionPolicy
    paused: bool | None = None
    backup_history_limit: Annotated[int, Field(ge=0)] | None = None
    hooks: BackupHooks | None = None
    execution_order: Annotated[ExecutionOrder, CrdDefault()] = "Parallel"
    time_out: Duration | None = None
    retry_config: RetryConfig | None = None


class MemberConditions(Model):
    target: TargetRef
    conditions: list[Condition] | None = None


class BackupBatchStatus(InvokerStatus):
    member_conditions: list[MemberConditions] | None = None


class BackupBatch(Resource):
    API_VERSION = V1BETA1
    KIND = "BackupBatch"

    spec: BackupBatchSpec
    status: BackupBatchStatus | None = None


class BackupInvokerRef(Model):
    api_group: str | None = None
    kind: Literal["BackupConfiguration", "BackupBatch"]
    name: str


class BackupSessionSpec(Model):
    invoker: BackupInvokerRef | None = None
    retry_left: Annotated[int, Field(ge=0)] | None = None


class FileStats(Model):
    total_files: int | None = None
    new_files: int | None = None
    modified_files: int | None = None
    unmodified_files: int | None = None


class SnapshotStats(Model):
    name: str | None = None
    path: str | None = None
    total_size: str | None = None
    uploaded: str | None = None
    processing_time: str | None = None
    file_stats: FileStats | None = None


class HostBackupStats(Model):
    hostname: str | None = None
    phase: HostPhase | None = None
    snapshots: list[SnapshotStats] | None = None
    duration: str | None = None
    error: str | None = None


class BackupTargetStatus(Model):
    ref: TargetRef | None = None
    total_hosts: int | None = None
    phase: TargetPhase | None = None
    stats: list[HostBackupStats] | None = None
    pre_backup_actions: list[str] | None = None
    post_backup_actions: list[str] | None = None
    conditions: list[Condition] | None = None


class BackupSessionStatus(Model):
    phase: SessionPhase | None = None
    session_duration: str | None = None
    targets: list[BackupTargetStatus] | None = None
    conditions: list[Condition] | None = None
    session_deadline: Time | None = None
    retried: bool | None = None
    next_retry: Time | None = None


class BackupSession(Resource):
    API_VERSION = V1BETA1
    KIND = "BackupSession"

    spec: BackupSessionSpec = Field(default_factory=BackupSessionSpec)
    status: BackupSessionStatus | None = None
