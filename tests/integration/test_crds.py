"""The CRDs on a real API server: established, accepting Stash manifests unchanged, rejecting
invalid ones with a message that names the field, and printing Stash's columns."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agent.run_backup import UNFINISHED_SESSIONS
from api.crd import KINDS, crd_for, kind_info
from kube import Client, Invalid
from kube.crds import CRD_TYPE, established
from kube.informer import Informer
from kube.types import BACKUP_SESSIONS
from tests.integration.helpers import eventually
from tests.manifests import ROOT, load_all, manifest_id, stash_manifests, with_defaults

MANIFESTS = stash_manifests()
SAMPLES = [
    doc
    for path in sorted((ROOT / "manifests" / "samples").glob("*.yaml"))
    for doc in load_all(path)
]


def _schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = crd_for(kind_info(kind))["spec"]["versions"][0]["schema"][
        "openAPIV3Schema"
    ]
    return schema


def _create(
    kube: Client, doc: dict[str, Any], namespace: str, *, with_status: bool = False
) -> dict[str, Any]:
    """Create ``doc`` in ``namespace``; its status, if wanted, through the status subresource."""
    body = copy.deepcopy(doc)
    status = body.pop("status", None)
    rt = kube.type_of(doc)
    if rt.namespaced:
        body["metadata"]["namespace"] = namespace
    else:
        body["metadata"]["name"] = f"{namespace}-{body['metadata']['name']}"
    created = kube.create(body)
    if with_status and status is not None:
        name = created["metadata"]["name"]
        created = kube.patch(
            rt, name, {"status": status}, namespace=namespace, subresource="status"
        )
    return created


def test_every_crd_is_established_with_its_names(kube: Client) -> None:
    for info in KINDS:
        crd = kube.get(CRD_TYPE, info.crd_name)
        assert established(crd), info.crd_name
        names = crd["status"]["acceptedNames"]
        assert names["kind"] == info.kind
        assert names.get("shortNames", []) == list(info.short_names)


def test_discovery_serves_each_kind_at_its_stash_version(kube: Client) -> None:
    for info in KINDS:
        rt = kube.resource_type(info.model.API_VERSION, info.kind)
        assert rt.plural == info.plural
        assert rt.namespaced == info.namespaced


@pytest.mark.parametrize("doc", MANIFESTS, ids=manifest_id)
def test_a_stash_manifest_is_accepted_and_stored_unchanged(
    kube: Client, namespace: str, doc: dict[str, Any]
) -> None:
    stored = _create(kube, doc, namespace)
    # Nothing pruned, nothing renamed: only Stash's own defaults are added.
    assert stored["spec"] == with_defaults(_schema(doc["kind"]), doc)["spec"]


@pytest.mark.parametrize("doc", [d for d in MANIFESTS if "status" in d], ids=manifest_id)
def test_a_status_is_written_through_the_status_subresource_unchanged(
    kube: Client, namespace: str, doc: dict[str, Any]
) -> None:
    created = _create(kube, doc, namespace, with_status=True)
    rt = kube.type_of(doc)
    assert kube.get(rt, created["metadata"]["name"], namespace)["status"] == doc["status"]


def test_a_backup_template_of_stashs_design_proposal_is_refused_saying_what_to_write(
    kube: Client,
) -> None:
    template = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupTemplate",
        "metadata": {"name": "workload-data-backup-template"},
        "spec": {
            "backend": {
                "gcs": {"bucket": "stash-backup-repo", "prefix": "${target.namespace}"},
                "storageSecretName": "gcs-secret",
            },
            "schedule": "@every 1h",
            "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
        },
    }
    with pytest.raises(Invalid) as refused:
        kube.create(template)
    assert "write a BackupBlueprint" in str(refused.value)
    assert "stash.appscode.com/backup-blueprint" in str(refused.value)


@pytest.mark.parametrize("doc", SAMPLES, ids=manifest_id)
def test_every_sample_is_accepted(kube: Client, namespace: str, doc: dict[str, Any]) -> None:
    assert _create(kube, doc, namespace)["metadata"]["uid"]


def _batch(namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupBatch",
        "metadata": {"name": "invalid", "namespace": namespace},
        "spec": {"retentionPolicy": {"name": "keep-last-1", "keepLast": 1}, **spec},
    }


@pytest.mark.parametrize(
    ("spec", "field", "why"),
    [
        ({"executionOrder": "Random"}, "spec.executionOrder", 'Unsupported value: "Random"'),
        ({"driver": "Velero"}, "spec.driver", 'supported values: "Restic", "VolumeSnapshotter"'),
        ({"timeOut": "forever"}, "spec.timeOut", "should match"),
        (
            {"retryConfig": {"maxRetry": -1}},
            "spec.retryConfig.maxRetry",
            "greater than or equal to 0",
        ),
        (
            {"retentionPolicy": {"name": "r", "keepLast": -5}},
            "spec.retentionPolicy.keepLast",
            "greater than or equal to 0",
        ),
        ({"retentionPolicy": None}, "spec.retentionPolicy", "Required value"),
        (
            {"hooks": {"postBackup": {"executionPolicy": "Sometimes"}}},
            "spec.hooks.postBackup.executionPolicy",
            'Unsupported value: "Sometimes"',
        ),
        (
            {"members": [{"task": {"params": [{"name": "x"}]}}]},
            "spec.members[0].task.params[0].value",
            "Required value",
        ),
    ],
)
def test_an_invalid_backup_batch_is_rejected_naming_the_field(
    kube: Client, namespace: str, spec: dict[str, Any], field: str, why: str
) -> None:
    doc = _batch(namespace, **spec)
    if spec.get("retentionPolicy", "") is None:
        del doc["spec"]["retentionPolicy"]
    with pytest.raises(Invalid) as caught:
        kube.create(doc)
    assert f"{field}:" in str(caught.value)
    assert why in str(caught.value)
    assert field in [c.field for c in caught.value.causes]


def test_a_repository_with_two_backends_is_rejected_naming_the_field(
    kube: Client, namespace: str
) -> None:
    repo = {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": "two", "namespace": namespace},
        "spec": {
            "backend": {
                "storageSecretName": "s",
                "s3": {"bucket": "b", "endpoint": "https://s3.example"},
                "gcs": {"bucket": "b"},
            }
        },
    }
    with pytest.raises(Invalid) as caught:
        kube.create(repo)
    assert "spec.backend:" in str(caught.value)
    assert "exactly one backend must be set" in str(caught.value)


def test_a_repository_with_no_backend_is_rejected(kube: Client, namespace: str) -> None:
    repo = {
        "apiVersion": "stash.appscode.com/v1alpha1",
        "kind": "Repository",
        "metadata": {"name": "none", "namespace": namespace},
        "spec": {"backend": {"storageSecretName": "s"}},
    }
    with pytest.raises(Invalid, match=r"spec\.backend: .*exactly one backend"):
        kube.create(repo)


def _table(kube: Client, kind: str, namespace: str) -> tuple[list[str], dict[str, list[Any]]]:
    info = kind_info(kind)
    table = kube.table(kube.resource_type(info.model.API_VERSION, kind), namespace)
    columns = [c["name"] for c in table["columnDefinitions"]]
    rows = {r["cells"][0]: r["cells"][1:] for r in table["rows"]}
    return columns, rows


@pytest.mark.parametrize(
    ("name", "columns", "cells"),
    [
        (
            "deployments-and-pvc-1714643400",
            ["Name", "Invoker-Type", "Invoker-Name", "Phase", "Duration", "Age"],
            ["BackupBatch", "deployments-and-pvc", "Succeeded", "41.2s"],
        ),
        (
            "gcs-repo",
            ["Name", "Integrity", "Size", "Snapshot-Count", "Last-Successful-Backup", "Age"],
            [True, "3.412 MiB", 5],
        ),
        (
            "deployments-and-pvc",
            ["Name", "Schedule", "Paused", "Phase", "Age"],
            ["*/30 * * * *", None, "Ready"],
        ),
    ],
)
def test_a_table_listing_shows_stash_printer_columns(
    kube: Client, namespace: str, name: str, columns: list[str], cells: list[Any]
) -> None:
    doc = next(d for d in MANIFESTS if d["metadata"]["name"] == name)
    _create(kube, doc, namespace, with_status=True)
    got_columns, rows = _table(kube, doc["kind"], namespace)
    assert got_columns == columns
    assert rows[name][: len(cells)] == cells


def test_a_sidecars_informer_holds_only_unfinished_sessions_as_the_api_server_selects_them(
    kube: Client, namespace: str
) -> None:
    def session(name: str, phase: str | None) -> None:
        body = {
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupSession",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"invoker": {"kind": "BackupBatch", "name": "nightly"}},
        }
        kube.create(body)
        if phase:
            kube.patch(
                BACKUP_SESSIONS, name, {"status": {"phase": phase}},
                namespace=namespace, subresource="status",
            )  # fmt: skip

    for i, phase in enumerate(["Succeeded", "Failed", "Skipped", "Running", None]):
        session(f"nightly-{i}", phase)
    informer = Informer(
        kube, BACKUP_SESSIONS, namespace=namespace, field_selector=UNFINISHED_SESSIONS
    )
    dropped: list[str] = []
    informer.subscribe(on_delete=lambda o: dropped.append(o["metadata"]["name"]))
    informer.start()
    try:
        assert informer.wait_synced(30)
        assert sorted(o["metadata"]["name"] for o in informer.items()) == [
            "nightly-3",
            "nightly-4",
        ]
        kube.patch(
            BACKUP_SESSIONS, "nightly-3", {"status": {"phase": "Succeeded"}},
            namespace=namespace, subresource="status",
        )  # fmt: skip
        eventually(lambda: dropped == ["nightly-3"] or None, 30, "the finished session to leave")
        assert [o["metadata"]["name"] for o in informer.items()] == ["nightly-4"]
    finally:
        informer.stop()
