"""``kubectl stash restore --preview``: what a restore would add, overwrite and leave alone, from
restic's own dry run against the live data, written nowhere.

For a RestoreSession (asked for on the command line or given with ``-f``) or each member of a
RestoreBatch, ``hosts_of`` finds the hosts to restore and where their live data is: a PVC
target's claim, a Deployment's or StatefulSet's volumes that are claims (a StatefulSet's, per
ordinal). Each becomes a preview Job (``pods.preview``) made with the user's own rights; the
plugin waits for them and prints what each says. A target whose data cannot be reached outside
its pods (an emptyDir, a DaemonSet's node folders) is said, not guessed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from api.hosts import ordinal_host, single_host
from api.objects import JSON
from api.repository import Repository
from api.views import Obj, items, part, text
from controller.jobs.builtin_tasks import DEFAULT_MOUNT_PATH, PVC_RESTORE_FUNCTION
from controller.jobs.outcome import job_complete, job_failure, job_pods, last_words
from engine.preview import Group, Preview
from kube import AlreadyExists, Client, NotFound
from kube.types import FUNCTIONS, JOBS, REPOSITORIES, WORKLOAD_TYPES
from pods.preview import PREVIEW_CONTAINER, PreviewHost, preview_job, preview_job_name

TARGET_VOLUME = "target"


class PreviewError(ValueError):
    """What keeps a restore from being previewed, in words."""


@dataclass(frozen=True)
class Member:
    """One target of a restore, as the preview needs it."""

    index: int
    target: JSON  # spec.target (a RestoreSession's) or members[i].target
    settings: JSON  # runtimeSettings.pod


def members_of(restore: JSON) -> list[Member]:
    """The targets of a RestoreSession (one) or a RestoreBatch (each member)."""
    spec = part(restore, "spec")
    if restore.get("kind") == "RestoreBatch":
        return [
            Member(i, part(m, "target"), part(part(m, "runtimeSettings"), "pod"))
            for i, m in enumerate(items(spec, "members"))
        ]
    return [Member(0, part(spec, "target"), part(part(spec, "runtimeSettings"), "pod"))]


def _rule(target: JSON) -> tuple[str, str, tuple[str, ...]]:
    """(snapshot, source host, paths) of the target's first rule."""
    rules = items(target, "rules")
    rule = rules[0] if rules else {}
    snapshots = [str(s) for s in rule.get("snapshots") or [] if s]
    paths = tuple(str(p) for p in rule.get("paths") or [] if p)
    return (snapshots[0] if snapshots else "latest", text(rule, "sourceHost"), paths)


def _mounts(target: JSON, volume: str | None = None) -> list[JSON]:
    """Where the restore mounts the target's volumes (its ``volumeMounts``, else the built-in
    Tasks' ``/stash-data``)."""
    mounts = [dict(m) for m in items(target, "volumeMounts")]
    if not mounts:
        return [{"name": volume or TARGET_VOLUME, "mountPath": DEFAULT_MOUNT_PATH}]
    if volume is not None:  # one volume (a PVC target) mounted at each place
        return [{**m, "name": volume} for m in mounts]
    return mounts


def _claim_volume(name: str, claim: str) -> JSON:
    return {"name": name, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}


def _workload_volumes(workload: JSON, mounts: Sequence[JSON], ordinal: int | None) -> list[JSON]:
    """The workload's volumes the mounts name, as claims this pod can mount."""
    view = Obj(workload)
    template_volumes = {
        text(v, "name"): v
        for v in items(part(part(part(workload, "spec"), "template"), "spec"), "volumes")
    }
    claim_templates = {
        text(part(t, "metadata"), "name")
        for t in items(part(workload, "spec"), "volumeClaimTemplates")
    }
    found: list[JSON] = []
    for name in dict.fromkeys(text(m, "name") for m in mounts):
        volume = template_volumes.get(name)
        if volume is not None and "persistentVolumeClaim" in volume:
            claim = text(part(volume, "persistentVolumeClaim"), "claimName")
            found.append(_claim_volume(name, claim))
        elif volume is None and name in claim_templates and ordinal is not None:
            found.append(_claim_volume(name, f"{name}-{view.name}-{ordinal}"))
        elif volume is not None:
            kind = next((k for k in volume if k != "name"), "volume")
            raise PreviewError(
                f"{view.kind} {view.name}: volume {name} is a {kind}: only data on a "
                "PersistentVolumeClaim can be read outside the workload's pods"
            )
        else:
            raise PreviewError(f"{view.kind} {view.name} has no volume {name}")
    return found


def hosts_of(client: Client, restore: JSON, namespace: str) -> list[PreviewHost]:
    """Every host the restore would restore, with its live data."""
    name = Obj(restore).name or "restore"
    found: list[PreviewHost] = []
    for member in members_of(restore):
        ref = part(member.target, "ref")
        kind, target_name = text(ref, "kind"), text(ref, "name")
        alias = text(member.target, "alias") or None
        snapshot, source_host, paths = _rule(member.target)
        base = {
            "restore": name,
            "namespace": namespace,
            "target_kind": kind,
            "target_name": target_name,
            "snapshot": snapshot,
            "paths": paths,
            "settings": member.settings,
        }
        if kind == "PersistentVolumeClaim":
            found.append(
                PreviewHost(
                    name=preview_job_name(name, member.index),
                    host=source_host or single_host(alias),
                    volumes=(_claim_volume(TARGET_VOLUME, target_name),),
                    mounts=tuple(_mounts(member.target, TARGET_VOLUME)),
                    **base,  # type: ignore[arg-type]
                )
            )
            continue
        if kind not in ("Deployment", "StatefulSet"):
            raise PreviewError(
                f"{kind or 'a target without a ref'} {target_name}: a preview reads PVCs, "
                "Deployments' and StatefulSets' claims; this target's data is not reachable"
            )
        try:
            workload = client.get(WORKLOAD_TYPES[kind], target_name, namespace)
        except NotFound:
            raise PreviewError(f"{kind} {namespace}/{target_name} not found") from None
        mounts = _mounts(member.target)
        ordinals: list[int | None] = [None]
        if kind == "StatefulSet":
            ordinals = list(range(int(part(workload, "spec").get("replicas") or 1)))
        for ordinal in ordinals:
            host = single_host(alias) if ordinal is None else ordinal_host(alias, ordinal)
            found.append(
                PreviewHost(
                    name=preview_job_name(name, member.index, ordinal),
                    host=source_host or host,
                    volumes=tuple(_workload_volumes(workload, mounts, ordinal)),
                    mounts=tuple(mounts),
                    **base,  # type: ignore[arg-type]
                )
            )
    return found


def repository_of(client: Client, restore: JSON, namespace: str) -> Repository:
    """The restore's Repository, which must be in its own namespace (the preview mounts its
    Secret, which only a pod of that namespace can)."""
    ref = part(part(restore, "spec"), "repository")
    repo_ns = text(ref, "namespace") or namespace
    if repo_ns != namespace:
        raise PreviewError(
            f"Repository {repo_ns}/{text(ref, 'name')} is in another namespace: a preview "
            f"mounts its storage Secret, which only a pod of {repo_ns} can"
        )
    try:
        return Repository.model_validate(client.get(REPOSITORIES, text(ref, "name"), namespace))
    except NotFound:
        raise PreviewError(f"Repository {namespace}/{text(ref, 'name')} not found") from None


def default_image(client: Client) -> str:
    """The operator's image, as its built-in pvc-restore Function names it."""
    try:
        return text(part(client.get(FUNCTIONS, PVC_RESTORE_FUNCTION), "spec"), "image")
    except NotFound:
        raise PreviewError(
            f"Function {PVC_RESTORE_FUNCTION} not found (is the operator installed?): give --image"
        ) from None


def run_previews(
    client: Client,
    hosts: Sequence[PreviewHost],
    repository: Repository,
    image: str,
    *,
    timeout: float,
    poll: float = 1.0,
) -> list[Preview]:
    """Make each host's preview Job (replacing one of the same name), wait for all, and read
    what each said."""
    for host in hosts:
        client.delete(JOBS, host.name, host.namespace, missing_ok=True, propagation="Foreground")
    deadline = time.monotonic() + timeout
    for host in hosts:
        while True:
            try:
                client.create(preview_job(host, repository, image))
                break
            except AlreadyExists:  # an earlier preview's Job, still being deleted
                if time.monotonic() > deadline:
                    raise PreviewError(
                        f"Job {host.name} of an earlier preview is still there"
                    ) from None
                time.sleep(poll)
    results: list[Preview] = []
    for host in hosts:
        results.append(_wait(client, host, deadline, poll))
    return results


def _wait(client: Client, host: PreviewHost, deadline: float, poll: float) -> Preview:
    said = Preview(f"{host.target_kind}/{host.target_name}", host.host)
    while True:
        job = client.get(JOBS, host.name, host.namespace)
        failure = job_failure(job)
        if job_complete(job) or failure is not None:
            words = last_words(job_pods(client, host.namespace, host.name), PREVIEW_CONTAINER)
            read = Preview.from_termination(words) if words else None
            if read is not None:
                return read
            said.error = failure or "the preview Job ended without saying anything"
            return said
        if time.monotonic() > deadline:
            said.error = f"the preview Job {host.name} did not end in time"
            return said
        time.sleep(poll)


def _group(label: str, group: Group) -> str:
    listed = ", ".join(group.paths)
    more = f" and {group.count - len(group.paths)} more" if group.count > len(group.paths) else ""
    head = f"  {label:17} {group.count} file(s), {group.bytes} bytes"
    return f"{head}: {listed}{more}" if listed else head


def render(previews: Sequence[Preview], hosts: Sequence[PreviewHost]) -> str:
    """What the previews say, a block per host."""
    lines: list[str] = []
    for preview, host in zip(previews, hosts, strict=True):
        head = f"{preview.target} host {preview.host}"
        if preview.error:
            lines.append(f"{head}: cannot preview: {preview.error}")
            continue
        lines.append(f"{head}, snapshot {preview.snapshot} ({preview.snapshot_time}):")
        lines.append(_group("would add", preview.add))
        lines.append(_group("would overwrite", preview.overwrite))
        lines.append(_group("would leave alone", preview.leave))
        lines.append(f"  every file: kubectl logs -n {host.namespace} job/{host.name}")
    return "\n".join(lines)
