"""The Job that runs a BackupBatch's own hook: ``stash-hook-<session>-<pre|post>`` (a
RestoreBatch's: ``stash-hook-<restorebatch>-<pre|post>``).

A short-lived pod in the invoker's namespace, under the invoker's backup (restore) service
account (ClusterRole ``stash-backup-job`` / ``stash-restore-job``, bound in that namespace
only), running ``stash run-hook`` (``agent.run_hook``). A hook's HTTP call or TCP connection
leaves from that namespace's pod, with its network identity and policies, and an ``exec`` hook
runs its command in that pod: nothing of a tenant's hook runs inside the operator.
``create_hook_job`` creates it for either reconciler (AlreadyExists is success: a restart).
"""

from __future__ import annotations

from api import constants as c
from api.hooks import BATCH_HOOK_TIMEOUT, HOOK_CONTAINER
from api.naming import (
    backup_service_account,
    hook_job_name,
    label_value,
    restore_service_account,
)
from api.objects import JSON
from api.views import Obj, conditions_of
from controller.invokers.trigger import invoker_labels
from controller.jobs.member_job import SESSION_LABEL
from controller.jobs.small_job import SmallJob, small_job
from controller.runtime.loop import Writes
from kube import AlreadyExists, Client
from kube.events import EventRecorder
from pods.hardening import SMALL_RESOURCES, field_env

HOOK_LABEL = f"{c.GROUP}/hook"
# The pod's own start (image already on the node) and the hook's timeout, then it is stopped.
STARTUP_ALLOWANCE = 60


def hook_job(session: JSON, invoker: JSON, kind: str, image: str) -> JSON:
    """The Job that runs the batch's own hook ``kind`` for ``session``."""
    meta, who = Obj(session).meta, Obj(invoker)
    restoring = who.kind == "RestoreBatch"  # then the session is the RestoreBatch
    labels = {**invoker_labels(invoker), HOOK_LABEL: kind}
    if not restoring:
        labels[SESSION_LABEL] = label_value(meta.name)
    account = (restore_service_account if restoring else backup_service_account)(who.name)
    which = f"--restorebatch={meta.name}" if restoring else f"--backupsession={meta.name}"
    container = {
        "name": HOOK_CONTAINER,
        "image": image,
        "args": ["run-hook", which, f"--hook={kind}"],
        "env": [field_env("POD_NAMESPACE", "metadata.namespace")],
        "resources": SMALL_RESOURCES,
    }
    return small_job(
        SmallJob(
            name=hook_job_name(meta.name, kind),
            owner=session,
            labels=labels,
            account=account,
            container=container,
            settings=who.spec.runtime_pod,
            deadline=int(BATCH_HOOK_TIMEOUT) + STARTUP_ALLOWANCE,
        )
    )


def hook_job_failure(job: JSON | None) -> str | None:
    """Why the hook Job ended without its pod recording the hook, or None while it may still."""
    for condition in conditions_of(Obj(job).status.conditions):
        if condition.type == "Failed" and condition.true:
            reason = condition.reason or "Failed"
            message = condition.message or "the hook pod failed"
            return f"the hook's pod did not finish: {reason}: {message}"
    return None


def create_hook_job(
    client: Client,
    writes: Writes,
    events: EventRecorder,
    session: JSON,
    invoker: JSON,
    *,
    kind: str,
    image: str,
) -> None:
    """Create the hook Job for ``kind`` and say so on ``session``; one made before a restart is
    the same Job, by name (its events bring the session back)."""
    meta = session["metadata"]
    try:
        client.create(hook_job(session, invoker, kind, image))
    except AlreadyExists:
        return
    writes.record(meta["namespace"])
    events.record(
        session,
        "Normal",
        "GlobalHookJobCreated",
        f"created Job {hook_job_name(meta['name'], kind)} to run the {kind} hook",
    )
