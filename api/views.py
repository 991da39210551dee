"""Typed read views over raw Kubernetes objects: what a reconciler reads of an object, named and
typed, with a missing or null part read as empty (the API server leaves out what is unset).

A view wraps the dict as it came from the cache or the API server and copies nothing: building
one costs an attribute, so the sidecar and the webhook may use them too. Views only read; a
status is still written as the raw dict the status writer sends (``kube.status``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any, overload

from api.conditions import RawCondition, parse_rfc3339
from api.objects import JSON
from api.units import parse_duration


def part(obj: Mapping[str, Any] | None, key: str) -> JSON:
    """``obj[key]`` when it is an object, else an empty one (unset, null or mistyped)."""
    value = (obj or {}).get(key)
    return value if isinstance(value, dict) else {}


def items(obj: Mapping[str, Any] | None, key: str) -> list[Any]:
    """``obj[key]`` when it is a list, else an empty one."""
    value = (obj or {}).get(key)
    return value if isinstance(value, list) else []


def text(obj: Mapping[str, Any] | None, key: str, default: str = "") -> str:
    """``obj[key]`` as text; ``default`` when unset, null or empty."""
    value = (obj or {}).get(key)
    return str(value) if value not in (None, "") else default


class TextField:
    """A view's text field: ``hostname = TextField("hostname")`` reads ``raw["hostname"]`` as
    text (``default`` when unset, null or empty)."""

    __slots__ = ("default", "key")

    def __init__(self, key: str, default: str = "") -> None:
        self.key = key
        self.default = default

    @overload
    def __get__(self, view: None, owner: type) -> TextField: ...
    @overload
    def __get__(self, view: View, owner: type) -> str: ...
    def __get__(self, view: View | None, owner: type) -> TextField | str:
        if view is None:
            return self
        return text(view.raw, self.key, self.default)


class View:
    """A read view over one JSON object of the API (``raw``; anything but an object reads as
    an empty one)."""

    __slots__ = ("raw",)

    def __init__(self, raw: Mapping[str, Any] | None) -> None:
        self.raw: Mapping[str, Any] = raw if isinstance(raw, dict) else {}


class ConditionView(View):
    """One status condition (kmodules' Condition)."""

    __slots__ = ()

    type = TextField("type")
    status = TextField("status")

    @property
    def true(self) -> bool:
        return self.status == "True"

    reason = TextField("reason")
    message = TextField("message")
    changed_at = TextField("lastTransitionTime")


def conditions_of(raw: Iterable[RawCondition] | None) -> list[ConditionView]:
    return [ConditionView(cond) for cond in raw or []]


def message_of(
    raw: Iterable[RawCondition] | None, type_: str, *, status: str | None = None, default: str = ""
) -> str:
    """The message of the first condition ``type_`` (with ``status``, when given)."""
    for cond in conditions_of(raw):
        if cond.type == type_ and (status is None or cond.status == status):
            return cond.message or default
    return default


class Ref(View):
    """An object reference (``kind``, ``name``, maybe ``namespace`` and ``apiVersion``)."""

    __slots__ = ()

    kind = TextField("kind")
    name = TextField("name")

    def namespace_or(self, default: str) -> str:
        """Its namespace; ``default`` (the referrer's) when it names none."""
        return text(self.raw, "namespace", default)

    uid = TextField("uid")
    api_version = TextField("apiVersion")


class Meta(View):
    """An object's metadata."""

    __slots__ = ()

    name = TextField("name")
    namespace = TextField("namespace")
    uid = TextField("uid")

    @property
    def generation(self) -> int | None:
        value = self.raw.get("generation")
        return int(value) if value is not None else None

    @property
    def created(self) -> str:
        """creationTimestamp (RFC 3339), "" before the API server set it."""
        return text(self.raw, "creationTimestamp")

    @property
    def deleting(self) -> bool:
        return bool(self.raw.get("deletionTimestamp"))

    @property
    def labels(self) -> Mapping[str, str]:
        return part(self.raw, "labels")

    @property
    def annotations(self) -> Mapping[str, str]:
        return part(self.raw, "annotations")

    def label(self, key: str) -> str | None:
        value = self.labels.get(key)
        return None if value is None else str(value)

    def annotation(self, key: str) -> str | None:
        value = self.annotations.get(key)
        return None if value is None else str(value)

    resource_version = TextField("resourceVersion")

    @property
    def finalizers(self) -> list[str]:
        return [str(f) for f in items(self.raw, "finalizers")]

    @property
    def owners(self) -> list[Ref]:
        return [Ref(owner) for owner in items(self.raw, "ownerReferences")]

    def owner(self, kinds: Iterable[str]) -> Ref | None:
        """The first owner reference of one of ``kinds`` that names its owner."""
        wanted = set(kinds)
        return next((o for o in self.owners if o.kind in wanted and o.name), None)


class HostStat(View):
    """One host's entry in a target's ``stats``."""

    __slots__ = ()

    hostname = TextField("hostname")
    phase = TextField("phase")
    error = TextField("error")


class Entry(View):
    """A target's status entry: a BackupSession's ``status.targets[i]``, a RestoreBatch's
    ``status.members[i]`` (a RestoreSession's own status reads the same)."""

    __slots__ = ()

    @property
    def ref(self) -> Ref:
        return Ref(part(self.raw, "ref"))

    phase = TextField("phase")

    @property
    def hosts_said(self) -> int | None:
        """totalHosts as written (None: not yet)."""
        value = self.raw.get("totalHosts")
        return int(value) if value else None

    @property
    def total_hosts(self) -> int:
        """How many hosts the target has (1 when unsaid)."""
        return self.hosts_said or 1

    @property
    def stats(self) -> list[HostStat]:
        return [HostStat(s) for s in items(self.raw, "stats")]

    @property
    def conditions(self) -> list[RawCondition]:
        return items(self.raw, "conditions")

    @property
    def reported(self) -> int:
        """How many hosts have reported (either way)."""
        return len(items(self.raw, "stats"))

    @property
    def host_failed(self) -> bool:
        return any(s.phase == "Failed" for s in self.stats)


class ContainerStatus(View):
    """One entry of a pod's ``containerStatuses`` / ``initContainerStatuses``."""

    __slots__ = ()

    name = TextField("name")

    @property
    def waiting(self) -> JSON:
        """state.waiting (empty unless it waits): reason, message."""
        return part(part(self.raw, "state"), "waiting")

    @property
    def terminated(self) -> JSON:
        """state.terminated (empty unless it ended): exitCode, reason, message, finishedAt."""
        return part(part(self.raw, "state"), "terminated")

    @property
    def last_terminated(self) -> JSON:
        """lastState.terminated: how its previous run ended (empty if none)."""
        return part(part(self.raw, "lastState"), "terminated")

    @property
    def ready(self) -> bool:
        return bool(self.raw.get("ready"))


class Status(Entry):
    """An object's status: a session's phase, deadline, targets and conditions, an invoker's
    phase and conditions. Its own ``stats``/``totalHosts`` are a RestoreSession's target's."""

    __slots__ = ()

    @property
    def targets(self) -> list[Entry]:
        return [Entry(t) for t in items(self.raw, "targets")]

    @property
    def members(self) -> list[Entry]:
        return [Entry(m) for m in items(self.raw, "members")]

    deadline = TextField("sessionDeadline")
    duration = TextField("sessionDuration")
    next_retry = TextField("nextRetry")

    def count(self, key: str, default: int = 0) -> int:
        """A counter of the status (a Job's ``succeeded``, a DaemonSet's
        ``desiredNumberScheduled``), ``default`` when unset."""
        value = self.raw.get(key)
        return default if value is None else int(value)

    @property
    def containers(self) -> list[ContainerStatus]:
        """A pod's init containers' statuses, then its containers'."""
        found = items(self.raw, "initContainerStatuses") + items(self.raw, "containerStatuses")
        return [ContainerStatus(s) for s in found]

    @property
    def retried(self) -> bool | None:
        value = self.raw.get("retried")
        return None if value is None else bool(value)


class Spec(View):
    """An invoker's spec (BackupConfiguration, BackupBatch, RestoreSession, RestoreBatch): the
    fields the reconcilers decide by."""

    __slots__ = ()

    @property
    def repository(self) -> Ref:
        return Ref(part(self.raw, "repository"))

    schedule = TextField("schedule")

    @property
    def time_out(self) -> str | None:
        return text(self.raw, "timeOut") or None

    @property
    def sequential(self) -> bool:
        return self.raw.get("executionOrder") == "Sequential"

    @property
    def hooks(self) -> JSON:
        return part(self.raw, "hooks")

    @property
    def retry(self) -> JSON:
        """retryConfig (empty: no retries)."""
        return part(self.raw, "retryConfig")

    @property
    def history_limit(self) -> int:
        """backupHistoryLimit (Stash's default 1)."""
        value = self.raw.get("backupHistoryLimit")
        return 1 if value is None else int(value)

    driver = TextField("driver", "Restic")

    @property
    def paused(self) -> bool:
        return bool(self.raw.get("paused"))

    @property
    def suspended(self) -> bool:
        """A CronJob's ``suspend``."""
        return bool(self.raw.get("suspend"))

    @property
    def target(self) -> JSON:
        return part(self.raw, "target")

    @property
    def target_ref(self) -> Ref:
        return Ref(part(self.target, "ref"))

    @property
    def members(self) -> list[JSON]:
        return [m if isinstance(m, dict) else {} for m in items(self.raw, "members")]

    @property
    def retention(self) -> Retention:
        return Retention(part(self.raw, "retentionPolicy"))

    @property
    def steps(self) -> list[JSON]:
        """A Task's steps (each names its Function and params)."""
        return [s if isinstance(s, dict) else {} for s in items(self.raw, "steps")]

    @property
    def volumes(self) -> list[JSON]:
        """A Task's volumes."""
        return items(self.raw, "volumes")

    @property
    def replicas(self) -> int:
        """A workload's replicas (Kubernetes' default 1)."""
        value = self.raw.get("replicas")
        return 1 if value is None else int(value)

    @property
    def runtime_pod(self) -> JSON:
        """runtimeSettings.pod (the settings of the pods made for it)."""
        return part(part(self.raw, "runtimeSettings"), "pod")

    @property
    def invoker(self) -> Ref:
        """A BackupSession's ``spec.invoker``."""
        return Ref(part(self.raw, "invoker"))


class Retention(View):
    """A retention policy (restic ``forget``'s flags)."""

    __slots__ = ()

    name = TextField("name")

    @property
    def prune(self) -> bool:
        return bool(self.raw.get("prune"))

    @property
    def dry_run(self) -> bool:
        return bool(self.raw.get("dryRun"))

    @property
    def keep_tags(self) -> list[str]:
        return [str(t) for t in items(self.raw, "keepTags")]

    def keep(self, period: str) -> int:
        """``keep<period>`` (``Last``, ``Hourly``, …), 0 when unset."""
        return int(self.raw.get(f"keep{period}") or 0)

    @property
    def keeps(self) -> list[str]:
        """The ``keep…`` fields set (non-empty)."""
        return [k for k, v in self.raw.items() if k.startswith("keep") and v]


class PodTemplate(View):
    """A workload's pod template (``spec.template``)."""

    __slots__ = ()

    @property
    def meta(self) -> Meta:
        return Meta(part(self.raw, "metadata"))

    @property
    def pod_spec(self) -> JSON:
        return part(self.raw, "spec")

    @property
    def service_account(self) -> str:
        return text(self.pod_spec, "serviceAccountName", "default")


class Obj(View):
    """A whole object: kind, metadata, spec and status."""

    __slots__ = ()

    kind = TextField("kind")

    @property
    def meta(self) -> Meta:
        return Meta(part(self.raw, "metadata"))

    @property
    def namespace(self) -> str:
        return self.meta.namespace

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def key(self) -> tuple[str, str]:
        """(namespace, name)."""
        meta = self.meta
        return (meta.namespace, meta.name)

    @property
    def spec(self) -> Spec:
        return Spec(part(self.raw, "spec"))

    @property
    def status(self) -> Status:
        return Status(part(self.raw, "status"))

    @property
    def template(self) -> PodTemplate:
        """A workload's pod template."""
        return PodTemplate(part(part(self.raw, "spec"), "template"))


class EventView(View):
    """A core/v1 Event: what it is about, why, when it was last seen."""

    __slots__ = ()

    reason = TextField("reason")
    message = TextField("message")

    @property
    def involved(self) -> Ref:
        return Ref(part(self.raw, "involvedObject"))

    @property
    def last_seen(self) -> str:
        """lastTimestamp, or firstTimestamp for an Event seen once ("" when neither)."""
        return text(self.raw, "lastTimestamp") or text(self.raw, "firstTimestamp")


def session_ended(session: Obj) -> dt.datetime:
    """When a finished session ended: its creation plus its recorded duration (ValueError
    when it has no creation time)."""
    return parse_rfc3339(session.meta.created) + parse_duration(session.status.duration or "0s")


def newest_succeeded(
    sessions: Iterable[Mapping[str, Any]], kind: str = "", name: str = ""
) -> Obj | None:
    """The newest Succeeded one of ``sessions`` (BackupSessions; of the invoker ``kind``/``name``
    when given), by creation, then name."""
    found = [
        s
        for s in map(Obj, sessions)
        if s.status.phase == "Succeeded"
        and (not kind or (s.spec.invoker.kind, s.spec.invoker.name) == (kind, name))
    ]
    return max(found, key=lambda s: (s.meta.created, s.name), default=None)
