"""The API models read Stash manifests and write them back unchanged."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from api.backup import BackupBatch, BackupSession
from api.crd import KINDS, model_for
from api.repository import Repository
from tests.manifests import manifest_id, stash_manifests

MANIFESTS = stash_manifests()


def test_the_fixtures_cover_every_kind() -> None:
    # BackupTemplate is served only to be refused (tests/integration/test_crds.py)
    served = {info.kind for info in KINDS} - {"BackupTemplate"}
    assert {doc["kind"] for doc in MANIFESTS} == served


@pytest.mark.parametrize("doc", MANIFESTS, ids=manifest_id)
def test_a_stash_manifest_round_trips_without_losing_or_renaming_fields(
    doc: dict[str, Any],
) -> None:
    model = model_for(doc["apiVersion"], doc["kind"])
    assert model.from_dict(doc).to_dict() == doc


@pytest.mark.parametrize("doc", MANIFESTS, ids=manifest_id)
def test_fields_the_models_do_not_know_survive_a_round_trip(doc: dict[str, Any]) -> None:
    changed = copy.deepcopy(doc)
    changed["spec"]["someFutureField"] = {"nested": [1, "two"]}
    changed["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    model = model_for(doc["apiVersion"], doc["kind"])
    assert model.from_dict(changed).to_dict() == changed


def test_typed_access_uses_python_names_over_stash_json() -> None:
    batch = BackupBatch.from_dict(
        next(d for d in MANIFESTS if d["metadata"]["name"] == "deployments-and-pvc")
    )
    members = batch.spec.members or []
    assert [m.target.ref.kind for m in members if m.target and m.target.ref] == [
        "Deployment",
        "StatefulSet",
        "PersistentVolumeClaim",
    ]
    assert batch.spec.execution_order == "Sequential"
    assert batch.spec.retention_policy.keep_last == 10
    assert members[0].target is not None
    assert members[0].target.volume_mounts is not None
    assert members[0].target.volume_mounts[0].read_only is True


def test_defaults_are_readable_but_not_written_back() -> None:
    doc = {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupBatch",
        "metadata": {"name": "b", "namespace": "demo"},
        "spec": {"retentionPolicy": {"name": "keep-last-1", "keepLast": 1}},
    }
    batch = BackupBatch.from_dict(doc)
    assert batch.spec.driver == "Restic"
    assert batch.spec.execution_order == "Parallel"
    assert batch.to_dict() == doc


def test_an_object_built_in_code_is_a_complete_manifest() -> None:
    session = BackupSession(metadata={"name": "nightly-1700000000", "namespace": "demo"})
    assert session.to_dict() == {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupSession",
        "metadata": {"name": "nightly-1700000000", "namespace": "demo"},
    }


def test_a_repository_knows_which_backend_it_uses() -> None:
    repo = Repository.from_dict(next(d for d in MANIFESTS if d["metadata"]["name"] == "minio-repo"))
    assert repo.spec.backend.kind() == "s3"
    assert repo.spec.backend.s3 is not None
    assert repo.spec.backend.s3.insecure_tls is False


def test_an_unknown_enum_value_is_rejected_with_the_field_name() -> None:
    doc = {
        "spec": {"executionOrder": "Random", "retentionPolicy": {"name": "r"}},
    }
    with pytest.raises(ValidationError, match=r"execution_order|executionOrder"):
        BackupBatch.from_dict(doc)


def test_model_for_rejects_a_kind_at_the_wrong_version() -> None:
    with pytest.raises(KeyError, match="v1alpha1"):
        model_for("stash.appscode.com/v1beta1", "Repository")
    with pytest.raises(KeyError, match="unknown kind"):
        model_for("stash.appscode.com/v1beta1", "Recovery")
