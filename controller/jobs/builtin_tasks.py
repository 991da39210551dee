"""The Tasks and Functions the operator installs: ``pvc-backup`` and ``pvc-restore``.

Each Task is two steps, as in Stash: the backup (or restore) itself, then ``update-status``,
which writes the host's stats into the session and pushes metrics. The target PVC is mounted at
``${TARGET_MOUNT_PATH}`` (``/stash-data`` unless the member says otherwise).
"""

from __future__ import annotations

from api import constants as c
from api.objects import JSON

DEFAULT_MOUNT_PATH = "/stash-data"
PVC_RESTORE_FUNCTION = "pvc-restore"
UPDATE_STATUS_FUNCTION = "update-status"

_COMMON_ARGS = [
    "--namespace=${NAMESPACE}",
    "--invoker-kind=${INVOKER_KIND}",
    "--invoker-name=${INVOKER_NAME}",
    "--target-kind=${TARGET_KIND}",
    "--target-name=${TARGET_NAME}",
    "--hostname=${HOSTNAME:=host-0}",
    "--repository=${REPOSITORY_NAME}",
    "--repository-namespace=${REPOSITORY_NAMESPACE}",
    "--output-dir=${outputDir:=/tmp/output}",
    "--cache-dir=${CACHE_DIR:=}",
]


def _function(name: str, args: list[str], mounts: list[JSON], image: str) -> JSON:
    return {
        "apiVersion": c.V1BETA1,
        "kind": "Function",
        "metadata": {"name": name, "labels": dict(c.MANAGED_BY)},
        "spec": {"image": image, "args": args, "volumeMounts": mounts},
    }


def _task(name: str, steps: list[JSON], volumes: list[JSON]) -> JSON:
    return {
        "apiVersion": c.V1BETA1,
        "kind": "Task",
        "metadata": {"name": name, "labels": dict(c.MANAGED_BY)},
        "spec": {"steps": steps, "volumes": volumes},
    }


def builtin_objects(image: str) -> list[JSON]:
    """The built-in Functions and Tasks (pvc-backup, pvc-restore, update-status)."""
    return _functions(image) + _tasks()


def _functions(image: str) -> list[JSON]:
    target_mount = {"name": "${targetVolume}", "mountPath": "${TARGET_MOUNT_PATH}"}
    return [
        _function(
            "pvc-backup",
            [
                "backup-pvc",
                *_COMMON_ARGS,
                "--backupsession=${BACKUP_SESSION}",
                "--paths=${TARGET_PATHS:=" + DEFAULT_MOUNT_PATH + "}",
                "--exclude=${EXCLUDE_PATTERNS:=}",
            ],
            [target_mount],
            image,
        ),
        _function(
            PVC_RESTORE_FUNCTION,
            [
                "restore",
                *_COMMON_ARGS,
                "--restoresession=${RESTORE_SESSION:=}",
                "--paths=${TARGET_PATHS:=" + DEFAULT_MOUNT_PATH + "}",
            ],
            [target_mount],
            image,
        ),
        _function(
            UPDATE_STATUS_FUNCTION,
            [
                "update-status",
                *_COMMON_ARGS,
                "--backupsession=${BACKUP_SESSION:=}",
                "--restoresession=${RESTORE_SESSION:=}",
            ],
            [],
            image,
        ),
    ]


def _tasks() -> list[JSON]:
    target_volume = {
        "name": "target-volume",
        "persistentVolumeClaim": {"claimName": "${TARGET_NAME}"},
    }
    output = [{"name": "outputDir", "value": "/tmp/output"}]  # noqa: S108 - the pod's own emptyDir
    return [
        _task(
            "pvc-backup",
            [
                {
                    "name": "pvc-backup",
                    "params": [*output, {"name": "targetVolume", "value": "target-volume"}],
                },
                {"name": "update-status", "params": output},
            ],
            [target_volume],
        ),
        _task(
            "pvc-restore",
            [
                {
                    "name": "pvc-restore",
                    "params": [*output, {"name": "targetVolume", "value": "target-volume"}],
                },
                {"name": "update-status", "params": output},
            ],
            [target_volume],
        ),
    ]
