"""The Job that does a session's repository work when its last host died first:
``stash-finish-<session>``.

The last host of a session to report claims the repository work (retention, the integrity
check, the Repository's figures) in the same write as its stats, and does it. If its pod is gone
before the work is recorded, the operator has it done by this Job: a short-lived pod in the
invoker's namespace, under the invoker's backup service account (what the member Jobs run as),
running ``stash finish-session`` (``agent.job_steps.finish_step``) as the invoker's
``runtimeSettings.pod`` says (as its hook Jobs do), with the repository's local volume where it
has one. Nothing of a tenant's backend is reached from the operator.
"""

from __future__ import annotations

from api.naming import backup_service_account, finish_job_name, label_value
from api.objects import JSON
from api.repository import Repository
from api.views import Obj
from controller.invokers.trigger import invoker_labels
from controller.jobs.member_job import CACHE_DIR, SESSION_LABEL
from controller.jobs.small_job import SmallJob, repository_volumes, small_job
from pods.hardening import field_env

FINISH_CONTAINER = "finish"
FINISH_DEADLINE = 6 * 3600  # seconds: a check of a large repository takes a while
FINISH_ATTEMPTS = 2


def finish_job(session: JSON, invoker: JSON, repository: Repository | None, image: str) -> JSON:
    """The Job that does ``session``'s repository work its last host left undone."""
    meta, who = Obj(session).meta, Obj(invoker)
    labels = {**invoker_labels(invoker), SESSION_LABEL: label_value(meta.name)}
    volumes, mounts = repository_volumes(repository)
    container: JSON = {
        "name": FINISH_CONTAINER,
        "image": image,
        "args": [
            "finish-session",
            f"--backupsession={meta.name}",
            f"--invoker-kind={who.kind}",
            f"--invoker-name={who.name}",
            f"--cache-dir={CACHE_DIR}",
        ],
        "env": [
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
        ],
        "volumeMounts": mounts,
    }
    return small_job(
        SmallJob(
            name=finish_job_name(meta.name),
            owner=session,
            labels=labels,
            account=backup_service_account(who.name),
            container=container,
            volumes=tuple(volumes),
            settings=who.spec.runtime_pod,
            attempts=FINISH_ATTEMPTS,
            deadline=FINISH_DEADLINE,
        )
    )
