"""The preview Job: the user's own, reading the live data read-only, writing nowhere."""

from __future__ import annotations

import json

from api.repository import Repository
from pods.preview import (
    REPOSITORY_ENV,
    SECRET_DIR,
    PreviewHost,
    preview_job,
    preview_job_name,
)

REPO = Repository.model_validate(
    {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": "repo", "namespace": "demo"},
        "spec": {
            "backend": {
                "storageSecretName": "repo-secret",
                "local": {"mountPath": "/repo", "hostPath": {"path": "/srv/repo"}},
            }
        },
    }
)


def host(**extra: object) -> PreviewHost:
    fields: dict[str, object] = {
        "name": preview_job_name("back", 0),
        "restore": "back",
        "namespace": "demo",
        "target_kind": "PersistentVolumeClaim",
        "target_name": "data",
        "host": "host-0",
        "volumes": ({"name": "target", "persistentVolumeClaim": {"claimName": "data"}},),
        "mounts": ({"name": "target", "mountPath": "/data"},),
        **extra,
    }
    return PreviewHost(**fields)  # type: ignore[arg-type]


def test_the_preview_job_mounts_everything_read_only_and_carries_no_token() -> None:
    job = preview_job(host(paths=("/data/a",), snapshot="abcd1234"), REPO, "stash:dev")
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert job["metadata"]["name"] == "stash-preview-back-0"
    assert job["metadata"]["namespace"] == "demo"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/data"]["readOnly"] is True
    assert mounts["/repo"]["readOnly"] is True
    assert mounts[SECRET_DIR]["readOnly"] is True
    assert mounts["/tmp"].get("readOnly") is not True  # restic's own temporary files
    secret = next(v for v in pod["volumes"] if "secret" in v)
    assert secret["secret"]["secretName"] == "repo-secret"
    assert "--snapshot=abcd1234" in container["args"]
    assert "--paths=/data/a" in container["args"]
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["ttlSecondsAfterFinished"] > 0


def test_the_program_gets_the_repository_without_any_secret_value() -> None:
    job = preview_job(host(), REPO, "stash:dev")
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    repository = json.loads(env[REPOSITORY_ENV])
    assert repository["metadata"] == {"name": "repo", "namespace": "demo"}
    assert repository["spec"]["backend"]["storageSecretName"] == "repo-secret"
    assert set(repository) == {"apiVersion", "kind", "metadata", "spec"}


def test_the_restores_pod_settings_are_kept() -> None:
    settings = {"securityContext": {"runAsUser": 1000}, "nodeSelector": {"disk": "ssd"}}
    pod = preview_job(host(settings=settings), REPO, "i")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"disk": "ssd"}
    assert pod["securityContext"]["runAsUser"] == 1000


def test_each_ordinal_gets_its_own_job() -> None:
    assert preview_job_name("back", 1, 2) == "stash-preview-back-1-2"
    assert len(preview_job_name("x" * 80, 0)) <= 63
