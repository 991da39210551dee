"""Auto-backup on the dev cluster: a BackupBlueprint (a cluster admin's) and an annotated PVC or
workload (a team's) give the Repository and BackupConfiguration Stash would generate, backed up
by real pods, kept in line with the blueprint, and removed with the annotation; what cannot be
generated is said on the target, and a tenant reaches nothing outside its namespace."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.blueprint import BLUEPRINT_ANNOTATION
from api.constants import BACKUP_LABEL, SIDECAR_CONTAINER
from api.naming import backup_job_name
from api.objects import JSON
from controller.operator import Operator
from devcluster.images import Images
from kube import Client, Forbidden, NotFound, ResourceType
from kube.sessions import create_session
from kube.types import (
    BACKUP_BLUEPRINTS,
    BACKUP_CONFIGURATIONS,
    BACKUP_SESSIONS,
    DEPLOYMENTS,
    JOBS,
    PODS,
    PVCS,
    REPOSITORIES,
)
from tests.integration.helpers import (
    WebhookProcess,
    events_of,
    eventually,
    exists,
    fresh_namespace,
    invoker_ready,
    job_steps,
    shared_dir,
    tenant,
)
from tests.integration.objects import (
    allow_host_path,
    pvc,
    restic_of,
    session_snapshot,
    storage_secret,
    workload,
)
from tests.integration.test_restic import make_data, tree

GENERATED = "persistentvolumeclaim-shared"


def _blueprint(kube: Client, name: str, backend: JSON, **spec: Any) -> JSON:
    return kube.create(
        {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupBlueprint",
            "metadata": {"name": name},
            "spec": {
                "backend": {**backend, "storageSecretName": "repo-secret"},
                "schedule": "*/5 * * * *",
                "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
                **spec,
            },
        }
    )


def _on_the_node(repo_dir: Path) -> JSON:
    """A local backend on the node keeping each target's repository in a directory named by
    the target (a cluster admin's choice)."""
    return {
        "local": {
            "mountPath": str(repo_dir),
            "hostPath": {"path": str(repo_dir)},
            "subPath": "${TARGET_NAMESPACE}/${TARGET_KIND}/${TARGET_NAME}",
        }
    }


@pytest.fixture
def blueprint_name(kube: Client) -> Iterator[str]:
    """A cluster-wide name for this test's blueprint, which is deleted when the test ends."""
    name = f"bp-{uuid.uuid4().hex[:8]}"
    yield name
    kube.delete(BACKUP_BLUEPRINTS, name, missing_ok=True)


def _annotate(kube: Client, rt: Any, namespace: str, name: str, annotations: JSON) -> None:
    kube.patch(rt, name, {"metadata": {"annotations": annotations}}, namespace=namespace)


def _gone(kube: Client, rt: ResourceType, namespace: str, name: str) -> bool:
    return not exists(kube, rt, namespace, name)


def _events(kube: Client, namespace: str, name: str, reason: str) -> list[str]:
    return [message for said, message in events_of(kube, namespace, name) if said == reason]


def _said(kube: Client, namespace: str, name: str, words: str) -> list[str] | None:
    failed = _events(kube, namespace, name, "AutoBackupResourcesCreationFailed")
    return [m for m in failed if words in m] or None


def _session_ended(kube: Client, namespace: str, name: str) -> JSON | None:
    status = kube.get(BACKUP_SESSIONS, name, namespace).get("status") or {}
    return status if status.get("phase") in ("Succeeded", "Failed", "Skipped") else None


def test_an_annotated_pvc_is_backed_up_by_what_its_blueprint_generates_until_the_annotation_goes(
    operator: Operator, kube: Client, namespace: str, blueprint_name: str, tmp_path: Path
) -> None:
    # The cluster admin: a blueprint keeping each target's repository on the node, under a
    # directory named by the target, and the namespace's allowance of a node repository.
    repo_dir = shared_dir(tmp_path / "repos")
    allow_host_path(kube, namespace)
    backend = _on_the_node(repo_dir)
    _blueprint(kube, blueprint_name, backend, task={"name": "pvc-backup"})
    _backs_up_and_lets_go(operator, kube, namespace, blueprint_name, repo_dir, tmp_path)


def _backs_up_and_lets_go(
    operator: Operator, kube: Client, namespace: str, blueprint: str, repo_dir: Path, tmp: Path
) -> None:
    # The team: its storage Secret and its PVC, annotated.
    storage_secret(kube, namespace)
    data = make_data(tmp / "pvc")
    pvc(kube, namespace, "shared", data)
    _annotate(kube, PVCS, namespace, "shared", {BLUEPRINT_ANNOTATION: blueprint})
    invoker_ready(kube, namespace, GENERATED, rt=BACKUP_CONFIGURATIONS)
    repository = kube.get(REPOSITORIES, GENERATED, namespace)
    assert repository["spec"]["backend"]["local"]["subPath"] == (
        f"{namespace}/persistentvolumeclaim/shared"
    )
    assert "ownerReferences" not in repository["metadata"]
    generated = kube.get(BACKUP_CONFIGURATIONS, GENERATED, namespace)
    assert generated["spec"]["task"] == {"name": "pvc-backup"}
    assert generated["metadata"]["ownerReferences"][0]["kind"] == "PersistentVolumeClaim"

    # Converged: looking again writes nothing.
    key = ("PersistentVolumeClaim", namespace, "shared")
    before = operator.auto_backup.writes.in_namespace(namespace)
    operator.auto_backup.reconcile(key)
    operator.auto_backup.reconcile(key)
    assert operator.auto_backup.writes.in_namespace(namespace) == before

    # A session of the generated BackupConfiguration backs the PVC up through a real Job.
    session = create_session(kube, "BackupConfiguration", GENERATED, namespace)["metadata"]["name"]
    job = backup_job_name(session, 0)
    eventually(lambda: exists(kube, JOBS, namespace, job), 60, f"Job {job}")
    runs = job_steps(kube, namespace, job)
    assert [r.returncode for r in runs] == [0, 0], [r.output for r in runs]
    ended = eventually(functools.partial(_session_ended, kube, namespace, session), 60, session)
    assert ended["phase"] == "Succeeded", ended
    target_repo = repo_dir / namespace / "persistentvolumeclaim" / "shared"
    with restic_of(target_repo) as restic:
        snapshot = session_snapshot(restic, session)
        assert f"invoker:BackupConfiguration/{GENERATED}" in snapshot.tags
        restored = tmp / "restored"
        restic.restore(snapshot.id, str(restored))
    assert tree(restored / "stash-data") == tree(data)

    # The blueprint changes: the generated BackupConfiguration follows.
    kube.patch(BACKUP_BLUEPRINTS, blueprint, {"spec": {"schedule": "0 3 * * *"}})
    eventually(
        lambda: (
            kube.get(BACKUP_CONFIGURATIONS, GENERATED, namespace)["spec"]["schedule"] == "0 3 * * *"
        ),
        30,
        "the generated BackupConfiguration to take the blueprint's new schedule",
    )
    # Someone edits what was generated: it is put back as the blueprint says.
    kube.patch(
        BACKUP_CONFIGURATIONS,
        GENERATED,
        {"spec": {"retentionPolicy": {"keepLast": 1}}},
        namespace=namespace,
    )
    eventually(
        lambda: (
            kube.get(BACKUP_CONFIGURATIONS, GENERATED, namespace)["spec"]["retentionPolicy"][
                "keepLast"
            ]
            == 5
        ),
        30,
        "the edited BackupConfiguration to be put back",
    )

    # The annotation goes: so do the BackupConfiguration and the Repository; the data stays
    # (the blueprint does not ask for wipeOut).
    _annotate(kube, PVCS, namespace, "shared", {BLUEPRINT_ANNOTATION: None})
    for rt in (BACKUP_CONFIGURATIONS, REPOSITORIES):
        eventually(
            functools.partial(_gone, kube, rt, namespace, GENERATED),
            60,
            f"{rt.kind} {GENERATED} removed",
        )
    with restic_of(target_repo) as restic:
        assert session_snapshot(restic, session).id == snapshot.id
    removed = _events(kube, namespace, "shared", "AutoBackupResourcesDeletionSucceeded")
    assert removed, "no Event said what was removed"


def _sidecar_ready(kube: Client, namespace: str, app: str) -> bool:
    """A running pod of ``app`` carries the sidecar, every container ready."""
    return any(
        not p["metadata"].get("deletionTimestamp")
        and SIDECAR_CONTAINER in {ct["name"] for ct in p["spec"]["containers"]}
        and all(s.get("ready") for s in (p.get("status") or {}).get("containerStatuses") or [{}])
        for p in kube.list(PODS, namespace, label_selector=f"app={app}")["items"]
    )


def test_a_deployment_annotated_as_stashs_docs_show_gets_its_sidecar_and_is_backed_up(
    operator: Operator,
    injecting_webhook: WebhookProcess,
    kube: Client,
    namespace: str,
    images: Images,
    blueprint_name: str,
    tmp_path: Path,
) -> None:
    repo_dir = shared_dir(tmp_path / "repos")
    data = shared_dir(make_data(tmp_path / "source-data"))
    allow_host_path(kube, namespace)
    storage_secret(kube, namespace)
    backend = _on_the_node(repo_dir)
    _blueprint(kube, blueprint_name, backend)
    app = workload("Deployment", "stash-demo", 1, data, images.app.name)
    del app["spec"]["template"]["metadata"]["labels"][BACKUP_LABEL]  # a Stash user's Deployment
    app["metadata"]["annotations"] = {
        BLUEPRINT_ANNOTATION: blueprint_name,
        "stash.appscode.com/target-paths": str(data),
        "stash.appscode.com/volume-mounts": f"data:{data}",
        "stash.appscode.com/schedule": "*/15 * * * *",
    }
    kube.create(app, namespace)
    generated = "deployment-stash-demo"
    invoker_ready(kube, namespace, generated, rt=BACKUP_CONFIGURATIONS)
    spec = kube.get(BACKUP_CONFIGURATIONS, generated, namespace)["spec"]
    assert spec["schedule"] == "*/15 * * * *"
    assert spec["target"]["volumeMounts"] == [{"name": "data", "mountPath": str(data)}]
    # The operator opts the Deployment in; its new pod gets the sidecar from the webhook.
    eventually(lambda: _sidecar_ready(kube, namespace, "stash-demo"), 180, "the sidecar")
    session = create_session(kube, "BackupConfiguration", generated, namespace)["metadata"]["name"]
    ended = eventually(functools.partial(_session_ended, kube, namespace, session), 180, session)
    assert ended["phase"] == "Succeeded", ended
    with restic_of(repo_dir / namespace / "deployment" / "stash-demo") as restic:
        snapshot = session_snapshot(restic, session)
        restored = tmp_path / "restored"
        restic.restore(snapshot.id, str(restored))
    assert tree(restored / str(data).lstrip("/")) == tree(data)


def _deployment(kube: Client, namespace: str, name: str, annotations: JSON) -> None:
    """A Deployment of no pods (what is generated, not what runs, is looked at here)."""
    kube.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "containers": [{"name": "app", "image": "stash-py:test"}],
                        "volumes": [{"name": "data", "emptyDir": {}}],
                    },
                },
            },
        },
        namespace,
    )


WORKLOAD_ANNOTATIONS = {
    "stash.appscode.com/target-paths": "/data",
    "stash.appscode.com/volume-mounts": "data:/data",
}


def test_what_a_blueprint_cannot_generate_is_said_on_the_target_and_nothing_is_touched(
    operator: Operator, kube: Client, namespace: str, blueprint_name: str
) -> None:
    _blueprint(kube, blueprint_name, {"s3": {"bucket": "b", "prefix": "${TARGET_NAME}"}})
    # an unknown blueprint
    _deployment(kube, namespace, "lost", {BLUEPRINT_ANNOTATION: "no-such-blueprint"})
    # a workload that does not say what to back up
    _deployment(kube, namespace, "pathless", {BLUEPRINT_ANNOTATION: blueprint_name})
    # a generated name already taken by the team's own Repository
    kube.create(
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": "deployment-taken"},
            "spec": {"backend": {"s3": {"bucket": "mine"}, "storageSecretName": "x"}},
        },
        namespace,
    )
    taken = {BLUEPRINT_ANNOTATION: blueprint_name, **WORKLOAD_ANNOTATIONS}
    _deployment(kube, namespace, "taken", taken)
    said = functools.partial(_said, kube, namespace)
    eventually(lambda: said("lost", "BackupBlueprint no-such-blueprint: not found"), 30, "lost")
    eventually(lambda: said("pathless", "stash.appscode.com/target-paths"), 30, "pathless")
    eventually(lambda: said("taken", "was not generated by auto-backup"), 30, "taken")
    mine = kube.get(REPOSITORIES, "deployment-taken", namespace)
    assert mine["spec"]["backend"]["s3"] == {"bucket": "mine"}
    assert not exists(kube, BACKUP_CONFIGURATIONS, namespace, "deployment-taken")
    for name in ("lost", "pathless"):
        assert not exists(kube, REPOSITORIES, namespace, f"deployment-{name}")
        assert not exists(kube, BACKUP_CONFIGURATIONS, namespace, f"deployment-{name}")


def test_a_tenant_cannot_write_a_blueprint_nor_reach_another_namespace_through_one(
    operator: Operator, kube: Client, namespace: str, blueprint_name: str
) -> None:
    with fresh_namespace(kube, "other") as other, tenant(kube, namespace) as team:
        with pytest.raises(Forbidden):
            _blueprint(team, "mine", {"s3": {"bucket": "b"}})
        # An admin's blueprint that would put the Repository in another namespace is refused.
        _blueprint(kube, blueprint_name, {"s3": {"bucket": "b"}}, repoNamespace=other)
        annotations = {BLUEPRINT_ANNOTATION: blueprint_name, **WORKLOAD_ANNOTATIONS}
        _deployment(team, namespace, "web", annotations)
        eventually(
            lambda: _said(kube, namespace, "web", f"spec.repoNamespace: {other}"),
            30,
            "the refusal on the Deployment",
        )
        for ns in (namespace, other):
            assert kube.list(REPOSITORIES, ns)["items"] == []
            assert kube.list(BACKUP_CONFIGURATIONS, ns)["items"] == []
        # A blueprint keeping repositories on the node generates objects the boundary
        # judges as the team's own: without the admin's allowance they never run.
        kube.patch(
            BACKUP_BLUEPRINTS,
            blueprint_name,
            {
                "spec": {
                    "repoNamespace": None,
                    "backend": {
                        "s3": None,
                        "local": {"mountPath": "/repo", "hostPath": {"path": "/var/lib"}},
                    },
                }
            },
        )
        invoker = "deployment-web"

        def judged() -> JSON | None:
            try:
                status = kube.get(BACKUP_CONFIGURATIONS, invoker, namespace).get("status")
            except NotFound:
                return None
            return status if status and status.get("phase") else None

        status = eventually(judged, 60, "the generated BackupConfiguration judged")
        assert status["phase"] != "Ready", status
        words = " ".join(c.get("message", "") for c in status.get("conditions") or [])
        assert "hostPath" in words or "node" in words, status
        assert kube.list(BACKUP_CONFIGURATIONS, other)["items"] == []
        assert not exists(kube, DEPLOYMENTS, other, "web")
