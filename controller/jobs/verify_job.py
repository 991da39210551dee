"""The Job that verifies a backup session: ``stash-verify-<session>[-<unix-seconds>]``.

A short-lived pod in the invoker's namespace, under the invoker's backup service account (what
its member Jobs run as: it reads the invoker, the session, the Repository and its Secret, and
nothing more), running ``stash verify-backup`` (``agent.verify_backup``) as the invoker's
``runtimeSettings.pod`` says, with an emptyDir as scratch space (limited to the byte budget and
a margin) and the repository's local volume where it has one. The operator never reaches a
tenant's backend itself; it reads the verdict from the pod's termination log. Owned by the
invoker (a session's history limit does not take its verification with it); the reconciler
keeps the newest one as the record of when the last verification ran.
"""

from __future__ import annotations

from api import constants as c
from api.naming import backup_service_account, label_value, verify_job_name
from api.objects import JSON
from api.repository import Repository
from api.views import Obj
from controller.invokers.trigger import invoker_labels
from controller.jobs.member_job import CACHE_DIR, SESSION_LABEL
from controller.jobs.small_job import SmallJob, repository_volumes, small_job
from pods.hardening import field_env

VERIFY_CONTAINER = "verify"
VERIFY_LABEL = f"{c.GROUP}/verification"  # the invoker's name, on its verification Jobs
SCRATCH_VOLUME = "scratch"
SCRATCH_MOUNT = "/scratch"
SCRATCH_MARGIN = 64 << 20  # bytes beyond the budget: folders, restic's include list
VERIFY_DEADLINE = 3600  # seconds: a verification is bounded in time as in bytes


def verify_job(
    invoker: JSON,
    session: str,
    again_at: int | None,
    repository: Repository | None,
    *,
    image: str,
    max_bytes: int,
) -> JSON:
    """The Job that verifies ``session`` of ``invoker`` (again, when ``again_at`` is set)."""
    who = Obj(invoker)
    labels = {
        **invoker_labels(invoker),
        VERIFY_LABEL: label_value(who.name),
        SESSION_LABEL: label_value(session),
    }
    volumes, mounts = repository_volumes(repository)
    volumes.insert(
        1, {"name": SCRATCH_VOLUME, "emptyDir": {"sizeLimit": str(max_bytes + SCRATCH_MARGIN)}}
    )
    mounts.insert(1, {"name": SCRATCH_VOLUME, "mountPath": SCRATCH_MOUNT})
    container: JSON = {
        "name": VERIFY_CONTAINER,
        "image": image,
        "args": [
            "verify-backup",
            f"--backupsession={session}",
            f"--invoker-kind={who.kind}",
            f"--invoker-name={who.name}",
            f"--max-bytes={max_bytes}",
            f"--scratch-dir={SCRATCH_MOUNT}/restored",
            f"--cache-dir={CACHE_DIR}",
        ],
        "env": [field_env("POD_NAMESPACE", "metadata.namespace")],
        "volumeMounts": mounts,
    }
    return small_job(
        SmallJob(
            name=verify_job_name(session, again_at),
            owner=invoker,
            labels=labels,
            account=backup_service_account(who.name),
            container=container,
            volumes=tuple(volumes),
            settings=who.spec.runtime_pod,
            attempts=1,
            deadline=VERIFY_DEADLINE,
            ttl=None,  # the reconciler removes all but the newest: its record
        )
    )
