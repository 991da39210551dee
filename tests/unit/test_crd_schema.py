"""The CRDs are generated from the models, committed, and say what Stash's CRDs say."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from api.base import Resource
from api.crd import KINDS, KindInfo, all_crds, crd_for, kind_info, schema_for_model
from tests.manifests import ROOT, manifest_id, pruned_paths, stash_manifests, with_defaults

CRD_DIR = ROOT / "manifests" / "crds"


def _schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = crd_for(kind_info(kind))["spec"]["versions"][0]["schema"][
        "openAPIV3Schema"
    ]
    return schema


def _at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    node = schema
    for part in path.split("."):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


@pytest.mark.parametrize("crd", all_crds(), ids=lambda c: c["metadata"]["name"])
def test_the_committed_crd_is_the_one_generated_from_the_models(crd: dict[str, Any]) -> None:
    path = CRD_DIR / f"{crd['metadata']['name']}.yaml"
    assert path.is_file(), f"missing {path}: run `stash crds --output-dir manifests/crds`"
    assert yaml.safe_load(path.read_text()) == crd, (
        f"{path} is stale: run `stash crds --output-dir manifests/crds`"
    )


def test_no_stray_crd_files_are_committed() -> None:
    generated = {f"{c['metadata']['name']}.yaml" for c in all_crds()}
    assert {p.name for p in CRD_DIR.glob("*.yaml")} == {*generated, "kustomization.yaml"}
    kustomization = yaml.safe_load((CRD_DIR / "kustomization.yaml").read_text())
    assert kustomization["resources"] == sorted(generated)


def _walk(model: type[Any], schema: dict[str, Any], path: str) -> list[str]:
    """Every model field, by its JSON name, must be a property of the schema (and back)."""
    problems = []
    props = schema.get("properties", {})
    fields = {(info.alias or name): info for name, info in model.model_fields.items()}
    for key in fields:
        if key not in props:
            problems.append(f"{path}.{key} is in the model but not the schema")
    for key in props:
        if key not in fields:
            problems.append(f"{path}.{key} is in the schema but not the model")
    return problems


@pytest.mark.parametrize("info", KINDS, ids=lambda k: k.kind)
def test_every_model_field_is_in_the_schema_under_its_stash_name(info: KindInfo) -> None:
    model: type[Resource] = info.model
    schema = schema_for_model(model)
    assert _walk(model, schema, info.kind) == []


@pytest.mark.parametrize("doc", stash_manifests(), ids=manifest_id)
def test_the_schema_declares_every_field_of_a_stash_manifest(doc: dict[str, Any]) -> None:
    # A field missing from a structural schema is silently pruned by the API server
    # (metadata is the server's own and never pruned).
    body = {k: v for k, v in doc.items() if k != "metadata"}
    assert pruned_paths(_schema(doc["kind"]), body) == []


def _untyped_nodes(schema: dict[str, Any], path: str = "") -> list[str]:
    if schema.get("x-kubernetes-int-or-string"):
        return []
    bad = [] if "type" in schema or schema.get("x-kubernetes-preserve-unknown-fields") else [path]
    for key, sub in schema.get("properties", {}).items():
        bad += _untyped_nodes(sub, f"{path}.{key}")
    if isinstance(schema.get("items"), dict):
        bad += _untyped_nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        bad += _untyped_nodes(schema["additionalProperties"], f"{path}{{}}")
    return bad


@pytest.mark.parametrize("info", KINDS, ids=lambda k: k.kind)
def test_every_schema_is_structural(info: KindInfo) -> None:
    assert _untyped_nodes(_schema(info.kind)) == []


@pytest.mark.parametrize(
    ("kind", "path", "values"),
    [
        ("BackupBatch", "spec.executionOrder", ["Parallel", "Sequential"]),
        ("BackupBatch", "spec.driver", ["Restic", "VolumeSnapshotter"]),
        ("BackupBatch", "status.phase", ["Invalid", "Ready", "NotReady"]),
        (
            "BackupBatch",
            "spec.hooks.postBackup.executionPolicy",
            ["Always", "OnSuccess", "OnFailure", "OnFinalRetryFailure"],
        ),
        (
            "BackupSession",
            "status.phase",
            ["Pending", "Skipped", "Running", "Succeeded", "Failed", "Unknown"],
        ),
        ("BackupSession", "status.targets.[].phase", ["Pending", "Running", "Succeeded", "Failed"]),
        ("BackupSession", "status.targets.[].stats.[].phase", ["Succeeded", "Failed"]),
        ("BackupSession", "spec.invoker.kind", ["BackupConfiguration", "BackupBatch"]),
        (
            "RestoreSession",
            "status.phase",
            ["Pending", "Running", "Succeeded", "Failed", "Unknown", "Invalid"],
        ),
        ("RestoreBatch", "spec.executionOrder", ["Parallel", "Sequential"]),
        (
            "RestoreSession",
            "status.stats.[].phase",
            ["Running", "Succeeded", "Failed", "Unknown"],
        ),
        ("Repository", "spec.usagePolicy.allowedNamespaces.from", ["All", "Same", "Selector"]),
    ],
)
def test_enumerations_follow_stash(kind: str, path: str, values: list[str]) -> None:
    assert _at(_schema(kind), path)["enum"] == values


@pytest.mark.parametrize(
    ("kind", "path", "default"),
    [
        ("BackupBatch", "spec.driver", "Restic"),
        ("BackupBatch", "spec.executionOrder", "Parallel"),
        ("BackupConfiguration", "spec.driver", "Restic"),
        ("BackupConfiguration", "spec.hooks.postBackup.executionPolicy", "Always"),
        ("RestoreSession", "spec.driver", "Restic"),
        ("Repository", "spec.usagePolicy.allowedNamespaces.from", "Same"),
    ],
)
def test_defaults_are_those_stash_sets(kind: str, path: str, default: str) -> None:
    assert _at(_schema(kind), path)["default"] == default


def test_only_the_stash_defaults_are_in_the_schemas() -> None:
    def defaults(schema: dict[str, Any], path: str = "") -> list[str]:
        found = [path] if "default" in schema else []
        for key, sub in schema.get("properties", {}).items():
            found += defaults(sub, f"{path}.{key}")
        if isinstance(schema.get("items"), dict):
            found += defaults(schema["items"], f"{path}[]")
        return found

    assert defaults(_schema("BackupSession")) == []
    assert defaults(_schema("BackupBatch")) == [
        ".spec.members[].hooks.postBackup.executionPolicy",
        ".spec.driver",
        ".spec.hooks.postBackup.executionPolicy",
        ".spec.executionOrder",
    ]


@pytest.mark.parametrize(
    ("kind", "path", "required"),
    [
        ("Repository", "spec", ["backend"]),
        ("BackupBatch", "spec", ["retentionPolicy"]),
        ("BackupConfiguration", "spec", ["retentionPolicy"]),
        ("BackupBatch", "spec.retentionPolicy", ["name"]),
        ("BackupSession", "spec.invoker", ["kind", "name"]),
        ("Function", "spec", ["image"]),
    ],
)
def test_required_fields_are_declared(kind: str, path: str, required: list[str]) -> None:
    assert _at(_schema(kind), path)["required"] == required


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("BackupBatch", "spec.members.[].task"),  # Stash's auto-backup writes `task: {}`
        ("BackupConfiguration", "spec.task"),
        ("RestoreSession", "spec.task"),
        ("RestoreBatch", "spec.members.[].task"),
        ("BackupBatch", "spec.retryConfig"),  # maxRetry defaults to 1 in Stash
        ("Task", "spec.steps.[]"),
        ("Repository", "spec.backend.rest"),
    ],
)
def test_fields_optional_in_stash_are_optional_here(kind: str, path: str) -> None:
    assert "required" not in _at(_schema(kind), path)


def test_a_repository_must_name_exactly_one_backend() -> None:
    rules = _at(_schema("Repository"), "spec.backend")["x-kubernetes-validations"]
    assert len(rules) == 1
    assert "size() == 1" in rules[0]["rule"]
    for backend in ("local", "s3", "gcs", "azure", "swift", "b2", "rest"):
        assert f"has(self.{backend})" in rules[0]["rule"]


def test_durations_are_checked_as_go_durations() -> None:
    pattern = _at(_schema("BackupBatch"), "spec.timeOut")["pattern"]
    assert pattern == _at(_schema("BackupBatch"), "spec.retryConfig.delay")["pattern"]


@pytest.mark.parametrize(
    ("kind", "columns"),
    [
        ("BackupSession", ["Invoker-Type", "Invoker-Name", "Phase", "Duration", "Age"]),
        ("Repository", ["Integrity", "Size", "Snapshot-Count", "Last-Successful-Backup", "Age"]),
        ("BackupBatch", ["Schedule", "Paused", "Phase", "Age"]),
        ("BackupConfiguration", ["Task", "Schedule", "Paused", "Phase", "Age"]),
    ],
)
def test_printer_columns_match_stash(kind: str, columns: list[str]) -> None:
    version = crd_for(kind_info(kind))["spec"]["versions"][0]
    assert [c["name"] for c in version["additionalPrinterColumns"]] == columns


@pytest.mark.parametrize(
    ("kind", "short"),
    [
        ("Repository", ["repo"]),
        ("BackupConfiguration", ["bc"]),
        ("Task", ["task"]),
        ("Function", ["fn"]),
        ("RestoreSession", ["restore"]),
    ],
)
def test_short_names_match_stash(kind: str, short: list[str]) -> None:
    assert crd_for(kind_info(kind))["spec"]["names"]["shortNames"] == short


def test_tasks_functions_and_blueprints_are_cluster_scoped_and_the_rest_namespaced() -> None:
    scopes = {info.kind: crd_for(info)["spec"]["scope"] for info in KINDS}
    assert scopes.pop("Task") == "Cluster"
    assert scopes.pop("Function") == "Cluster"
    assert scopes.pop("BackupBlueprint") == "Cluster"
    assert scopes.pop("BackupTemplate") == "Cluster"
    assert set(scopes.values()) == {"Namespaced"}


def test_kinds_with_a_status_have_the_status_subresource() -> None:
    for info in KINDS:
        version = crd_for(info)["spec"]["versions"][0]
        assert ("subresources" in version) == ("status" in info.model.model_fields), info.kind


def test_with_defaults_fills_only_absent_fields() -> None:
    schema = _schema("BackupBatch")
    doc = {"spec": {"executionOrder": "Sequential", "retentionPolicy": {"name": "x"}}}
    assert with_defaults(schema, doc)["spec"] == {
        "executionOrder": "Sequential",
        "driver": "Restic",
        "retentionPolicy": {"name": "x"},
    }


def test_a_field_the_schema_does_not_declare_is_reported_as_pruned() -> None:
    doc = {"spec": {"retentionPolicy": {"name": "x", "keepForever": True}, "bogus": 1}}
    assert pruned_paths(_schema("BackupBatch"), doc) == [
        ".spec.retentionPolicy.keepForever",
        ".spec.bogus",
    ]
