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

from api import constants as c
from api.naming import backup_service_account, finish_job_name, label_value
from api.objects import JSON
from api.repository import Repository
from controller.invokers.trigger import owner_reference
from controller.jobs.member_job import CACHE_DIR, POD_SETTING_KEYS, SESSION_LABEL
from pods.sidecar import with_image_group
from pods.volumes import local_volume

FINISH_CONTAINER = "finish"
FINISH_DEADLINE = 6 * 3600  # seconds: a check of a large repository takes a while
FINISH_ATTEMPTS = 2


def finish_job(session: JSON, invoker: JSON, repository: Repository | None, image: str) -> JSON:
    meta, invoker_name = session["metadata"], invoker["metadata"]["name"]
    labels = {
        "app.kubernetes.io/managed-by": "stash",
        c.INVOKER_TYPE_LABEL: invoker["kind"],
        c.INVOKER_NAME_LABEL: label_value(invoker_name),
        SESSION_LABEL: label_value(meta["name"]),
    }
    mounts: list[JSON] = [{"name": c.TMP_DIR_VOLUME, "mountPath": c.TMP_DIR_MOUNT_PATH}]
    volumes: list[JSON] = [{"name": c.TMP_DIR_VOLUME, "emptyDir": {}}]
    local = local_volume(repository) if repository is not None else None
    if local is not None:  # the repository's own volume, as the member Jobs mount it
        volumes.append(local[0])
        mounts.append(local[1])
    settings = ((invoker.get("spec") or {}).get("runtimeSettings") or {}).get("pod") or {}
    container: JSON = {
        "name": FINISH_CONTAINER,
        "image": image,
        "args": [
            "finish-session",
            f"--backupsession={meta['name']}",
            f"--invoker-kind={invoker['kind']}",
            f"--invoker-name={invoker_name}",
            f"--cache-dir={CACHE_DIR}",
        ],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
        ],
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    pod_spec: JSON = {
        "restartPolicy": "Never",
        "serviceAccountName": backup_service_account(invoker_name),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": c.IMAGE_USER,
            "runAsGroup": c.IMAGE_GROUP,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        **{k: v for k, v in settings.items() if k in POD_SETTING_KEYS},
        **(
            {"securityContext": with_image_group(settings["securityContext"])}
            if isinstance(settings.get("securityContext"), dict)
            else {}
        ),
        "containers": [container],
        "volumes": volumes,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": finish_job_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [owner_reference(session)],
        },
        "spec": {
            "backoffLimit": FINISH_ATTEMPTS - 1,
            "activeDeadlineSeconds": FINISH_DEADLINE,
            "ttlSecondsAfterFinished": 3600,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
