"""Types shared by several kinds: references, conditions, hooks, runtime settings, retention."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from api.base import CrdDefault, Format, IntOrString, Model, Opaque

# Kubernetes time (RFC 3339) and duration ("1h30m") strings stay strings so they round-trip.
Time = Annotated[str, Format("date-time")]
GO_DURATION = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"
Duration = Annotated[str, Field(pattern=GO_DURATION)]
Quantity = Annotated[int | str, IntOrString()]
Port = Annotated[int | str, IntOrString()]
RawObject = Annotated[dict[str, Any], Opaque()]

ConditionStatus = Literal["True", "False", "Unknown"]
ExecutionOrder = Literal["Parallel", "Sequential"]
Snapshotter = Literal["Restic", "VolumeSnapshotter"]
HookExecutionPolicy = Literal["Always", "OnSuccess", "OnFailure", "OnFinalRetryFailure"]


class Condition(Model):
    """A status condition (kmodules' Condition: Kubernetes conditions plus ``severity``)."""

    type: str
    status: ConditionStatus
    observed_generation: int | None = None
    last_transition_time: Time
    reason: str | None = None
    message: str | None = None
    severity: str | None = None


class ObjectReference(Model):
    """A namespaced reference (``spec.repository``); the namespace defaults to the invoker's."""

    name: str
    namespace: str | None = None


class TypedObjectReference(Model):
    api_group: str | None = None
    kind: str | None = None
    namespace: str | None = None
    name: str


class TargetRef(Model):
    """What a member backs up: a workload, a PVC, an AppBinding…"""

    api_version: str | None = None
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None


class Param(Model):
    name: str
    value: str


class TaskRef(Model):
    """A Task by name; empty (``task: {}``, as Stash's auto-backup writes) means the default."""

    name: str | None = None
    params: list[Param] | None = None


class VolumeMount(Model):
    """core/v1 VolumeMount (kept open for fields of newer Kubernetes versions)."""

    crd_preserve_unknown = True

    name: str
    mount_path: str
    sub_path: str | None = None
    sub_path_expr: str | None = None
    read_only: bool | None = None
    mount_propagation: str | None = None


class RuntimeSettings(Model):
    """kmodules' RuntimeSettings: ``pod`` and ``container`` settings as core/v1 JSON."""

    pod: RawObject | None = None
    container: RawObject | None = None


class EmptyDirSettings(Model):
    """The ``tmp-dir`` emptyDir at /tmp of the sidecar or Job."""

    medium: str | None = None
    size_limit: Quantity | None = None
    disable_caching: bool | None = None


class HTTPHeader(Model):
    name: str
    value: str


class ExecAction(Model):
    command: list[str] | None = None


class HTTPGetAction(Model):
    path: str | None = None
    port: Port
    host: str | None = None
    scheme: str | None = None
    http_headers: list[HTTPHeader] | None = None


class FormEntry(Model):
    key: str | None = None
    values: list[str] | None = None


class HTTPPostAction(HTTPGetAction):
    body: str | None = None
    form: list[FormEntry] | None = None


class TCPSocketAction(Model):
    port: Port
    host: str | None = None


class Handler(Model):
    """kmodules' prober Handler: what a hook does, and in which container it runs."""

    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    http_post: HTTPPostAction | None = None
    tcp_socket: TCPSocketAction | None = None
    container_name: str | None = None


class PostHook(Handler):
    """A post-backup/post-restore hook; ``executionPolicy`` says after which outcomes it runs."""

    execution_policy: Annotated[HookExecutionPolicy, CrdDefault()] = "Always"


class BackupHooks(Model):
    pre_backup: Handler | None = None
    post_backup: PostHook | None = None


class RestoreHooks(Model):
    pre_restore: Handler | None = None
    post_restore: PostHook | None = None


class RetentionPolicy(Model):
    """restic ``forget`` flags (v1alpha1 RetentionPolicy)."""

    name: str
    keep_last: Annotated[int, Field(ge=0)] | None = None
    keep_hourly: Annotated[int, Field(ge=0)] | None = None
    keep_daily: Annotated[int, Field(ge=0)] | None = None
    keep_weekly: Annotated[int, Field(ge=0)] | None = None
    keep_monthly: Annotated[int, Field(ge=0)] | None = None
    keep_yearly: Annotated[int, Field(ge=0)] | None = None
    keep_tags: list[str] | None = None
    prune: bool | None = None
    dry_run: bool | None = None


class RetryConfig(Model):
    """Retry a failed session: at most ``maxRetry`` times, ``delay`` after the failure."""

    max_retry: Annotated[int, Field(ge=0)] | None = None  # Stash: 1 when unset
    delay: Duration | None = None
