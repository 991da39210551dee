"""Auto-backup's plan: what an annotated target generates from its BackupBlueprints, as Stash
names and fills it, and why a blueprint generates nothing."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.backup import BackupConfiguration
from api.blueprint import GENERATED_BY_LABEL, GENERATED_DIGEST_ANNOTATION
from api.objects import JSON
from api.repository import Repository
from controller.invokers.auto_backup import (
    GENERATED_FOR_ANNOTATION,
    blueprint_names,
    plan,
    volume_mounts,
)

FORBIDDEN = frozenset({"stash", "kube-system"})


def blueprint(name: str = "workload-backup-blueprint", **spec: Any) -> JSON:
    return {
        "apiVersion": "stash.appscode.com/v1beta1",
        "kind": "BackupBlueprint",
        "metadata": {"name": name},
        "spec": {
            "backend": {
                "gcs": {
                    "bucket": "appscode-qa",
                    "prefix": "stash-backup/${TARGET_NAMESPACE}/${TARGET_KIND}/${TARGET_NAME}",
                },
                "storageSecretName": "gcs-secret",
            },
            "schedule": "*/5 * * * *",
            "retentionPolicy": {"name": "keep-last-5", "keepLast": 5, "prune": True},
            **spec,
        },
    }


def deployment(annotations: dict[str, str], namespace: str = "demo") -> JSON:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "stash-demo",
            "namespace": namespace,
            "uid": "uid-1",
            "annotations": annotations,
        },
    }


STASH_DOCS_ANNOTATIONS = {
    "stash.appscode.com/backup-blueprint": "workload-backup-blueprint",
    "stash.appscode.com/target-paths": "/source/data-1,/source/data-2",
    "stash.appscode.com/volume-mounts": "source-data-1:/source/data-1,source-data-2:/source/data-2",
    "stash.appscode.com/schedule": "*/15 * * * *",
}


def test_a_deployment_gets_the_repository_and_backup_configuration_stash_generates() -> None:
    result = plan(
        deployment(STASH_DOCS_ANNOTATIONS),
        {"workload-backup-blueprint": blueprint()},
        forbidden_namespaces=FORBIDDEN,
    )
    assert result.problems == ()
    (generated,) = result.wanted
    repo, bc = generated.repository, generated.invoker
    assert repo["metadata"]["name"] == bc["metadata"]["name"] == "deployment-stash-demo"
    assert repo["metadata"]["namespace"] == bc["metadata"]["namespace"] == "demo"
    assert repo["spec"]["backend"]["gcs"]["prefix"] == "stash-backup/demo/deployment/stash-demo"
    assert repo["spec"]["backend"]["storageSecretName"] == "gcs-secret"
    assert bc["spec"]["repository"] == {"name": "deployment-stash-demo"}
    assert bc["spec"]["schedule"] == "*/15 * * * *"  # the target's annotation wins
    assert bc["spec"]["retentionPolicy"] == {"name": "keep-last-5", "keepLast": 5, "prune": True}
    assert bc["spec"]["target"] == {
        "ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "stash-demo"},
        "paths": ["/source/data-1", "/source/data-2"],
        "volumeMounts": [
            {"name": "source-data-1", "mountPath": "/source/data-1"},
            {"name": "source-data-2", "mountPath": "/source/data-2"},
        ],
    }
    (owner,) = bc["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Deployment", "stash-demo", "uid-1")
    assert "ownerReferences" not in repo["metadata"]  # it outlives the target, to restore from
    for obj in (repo, bc):
        assert obj["metadata"]["labels"][GENERATED_BY_LABEL] == "workload-backup-blueprint"
        assert obj["metadata"]["annotations"][GENERATED_FOR_ANNOTATION] == "Deployment/stash-demo"
    # what is generated is what the models (so the CRDs) accept
    Repository.model_validate(repo)
    BackupConfiguration.model_validate(bc)


def test_a_pvc_needs_no_paths_and_gets_the_blueprints_task() -> None:
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": "nfs-pvc",
            "namespace": "demo",
            "uid": "u",
            "annotations": {"stash.appscode.com/backup-blueprint": "pvc-backup-blueprint"},
        },
    }
    result = plan(
        pvc,
        {"pvc-backup-blueprint": blueprint("pvc-backup-blueprint", task={"name": "pvc-backup"})},
        forbidden_namespaces=FORBIDDEN,
    )
    (generated,) = result.wanted
    bc = generated.invoker
    assert bc["metadata"]["name"] == "persistentvolumeclaim-nfs-pvc"
    assert bc["spec"]["task"] == {"name": "pvc-backup"}
    assert bc["spec"]["schedule"] == "*/5 * * * *"
    assert bc["spec"]["target"] == {
        "ref": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "nfs-pvc"}
    }
    prefix = generated.repository["spec"]["backend"]["gcs"]["prefix"]
    assert prefix == "stash-backup/demo/persistentvolumeclaim/nfs-pvc"


def test_several_blueprints_generate_one_pair_each_named_by_the_blueprint() -> None:
    annotations = dict(STASH_DOCS_ANNOTATIONS)
    annotations["stash.appscode.com/backup-blueprint"] = "daily-gcs, weekly-s3 ,daily-gcs"
    result = plan(
        deployment(annotations),
        {"daily-gcs": blueprint("daily-gcs"), "weekly-s3": blueprint("weekly-s3")},
        forbidden_namespaces=FORBIDDEN,
    )
    names = [g.invoker["metadata"]["name"] for g in result.wanted]
    assert names == ["deployment-stash-demo-daily-gcs", "deployment-stash-demo-weekly-s3"]
    assert [g.invoker["spec"]["repository"]["name"] for g in result.wanted] == names


def test_an_unknown_blueprint_is_named_and_held_while_the_others_generate() -> None:
    annotations = dict(STASH_DOCS_ANNOTATIONS)
    annotations["stash.appscode.com/backup-blueprint"] = "daily,missing"
    result = plan(
        deployment(annotations), {"daily": blueprint("daily")}, forbidden_namespaces=FORBIDDEN
    )
    assert [g.blueprint for g in result.wanted] == ["daily"]
    assert result.held == ("missing",)
    assert result.problems == (
        "BackupBlueprint missing: not found "
        "(BackupBlueprints are cluster-scoped: kubectl get backupblueprints)",
    )


def test_a_variable_without_a_value_says_which_and_what_is_known() -> None:
    bad = blueprint()
    bad["spec"]["backend"]["gcs"]["prefix"] = "x/${TARGET_NAMESPACE}/${CLUSTER_NAME}"
    result = plan(
        deployment(STASH_DOCS_ANNOTATIONS),
        {"workload-backup-blueprint": bad},
        forbidden_namespaces=FORBIDDEN,
    )
    assert result.wanted == ()
    (problem,) = result.problems
    assert "spec.backend: no value for ${CLUSTER_NAME}" in problem
    assert "TARGET_NAMESPACE" in problem


def test_a_default_in_a_variable_is_used_when_it_has_no_value() -> None:
    bp = blueprint()
    bp["spec"]["backend"]["gcs"]["prefix"] = "${CLUSTER:=dev}/${TARGET_NAME}"
    result = plan(
        deployment(STASH_DOCS_ANNOTATIONS),
        {"workload-backup-blueprint": bp},
        forbidden_namespaces=FORBIDDEN,
    )
    assert result.wanted[0].repository["spec"]["backend"]["gcs"]["prefix"] == "dev/stash-demo"


def test_a_workload_without_paths_or_mounts_is_told_which_annotation_it_lacks() -> None:
    for missing in ("stash.appscode.com/target-paths", "stash.appscode.com/volume-mounts"):
        annotations = {k: v for k, v in STASH_DOCS_ANNOTATIONS.items() if k != missing}
        result = plan(
            deployment(annotations),
            {"workload-backup-blueprint": blueprint()},
            forbidden_namespaces=FORBIDDEN,
        )
        assert result.wanted == ()
        assert result.held == ("workload-backup-blueprint",)
        assert missing in result.problems[0]


def test_an_unknown_blueprint_is_said_also_when_the_annotations_are_wrong() -> None:
    annotations = {"stash.appscode.com/backup-blueprint": "gone"}
    result = plan(deployment(annotations), {}, forbidden_namespaces=FORBIDDEN)
    assert result.held == ("gone",)
    assert "stash.appscode.com/target-paths" in result.problems[0]
    assert result.problems[1].startswith("BackupBlueprint gone: not found")


def test_a_blueprint_cannot_place_a_targets_backup_in_another_namespace() -> None:
    for field in ("repoNamespace", "backupNamespace"):
        result = plan(
            deployment(STASH_DOCS_ANNOTATIONS),
            {"workload-backup-blueprint": blueprint(**{field: "team-b"})},
            forbidden_namespaces=FORBIDDEN,
        )
        assert result.wanted == ()
        assert f"spec.{field}: team-b" in result.problems[0]
    same = plan(
        deployment(STASH_DOCS_ANNOTATIONS),
        {"workload-backup-blueprint": blueprint(repoNamespace="demo")},
        forbidden_namespaces=FORBIDDEN,
    )
    assert len(same.wanted) == 1


def test_nothing_is_generated_in_the_operators_namespace_or_kube_system() -> None:
    for namespace in FORBIDDEN:
        result = plan(
            deployment(STASH_DOCS_ANNOTATIONS, namespace=namespace),
            {"workload-backup-blueprint": blueprint()},
            forbidden_namespaces=FORBIDDEN,
        )
        assert result.wanted == ()
        assert f"never acts in namespace {namespace}" in result.problems[0]


def test_an_unannotated_target_wants_nothing_and_holds_nothing() -> None:
    result = plan(deployment({}), {}, forbidden_namespaces=FORBIDDEN)
    assert (result.wanted, result.held, result.problems) == ((), (), ())


def test_the_digest_changes_with_the_blueprint_and_not_otherwise() -> None:
    def digests(bp: JSON) -> tuple[str, str]:
        (g,) = plan(
            deployment(STASH_DOCS_ANNOTATIONS),
            {"workload-backup-blueprint": bp},
            forbidden_namespaces=FORBIDDEN,
        ).wanted
        return (
            g.repository["metadata"]["annotations"][GENERATED_DIGEST_ANNOTATION],
            g.invoker["metadata"]["annotations"][GENERATED_DIGEST_ANNOTATION],
        )

    first = digests(blueprint())
    assert digests(blueprint()) == first
    changed = digests(blueprint(backupHistoryLimit=3))
    assert changed[0] == first[0]
    assert changed[1] != first[1]


def test_volume_mounts_take_an_optional_sub_path_and_refuse_other_shapes() -> None:
    assert volume_mounts("a:/x:sub,b:/y") == [
        {"name": "a", "mountPath": "/x", "subPath": "sub"},
        {"name": "b", "mountPath": "/y"},
    ]
    for bad in ("a", "a:/x:s:t", ":/x", "a:relative"):
        with pytest.raises(ValueError, match=r"stash\.appscode\.com/volume-mounts"):
            volume_mounts(bad)


def test_blueprint_names_are_trimmed_and_kept_once_in_order() -> None:
    annotations = {"stash.appscode.com/backup-blueprint": " b,a,, b "}
    assert blueprint_names(annotations) == ["b", "a"]


@settings(max_examples=300, deadline=None)
@given(
    names=st.text(max_size=40),
    paths=st.text(max_size=40),
    mounts=st.text(max_size=40),
    schedule=st.text(max_size=20),
)
def test_any_annotations_give_objects_or_reasons_never_an_exception(
    names: str, paths: str, mounts: str, schedule: str
) -> None:
    annotations = {
        "stash.appscode.com/backup-blueprint": names,
        "stash.appscode.com/target-paths": paths,
        "stash.appscode.com/volume-mounts": mounts,
        "stash.appscode.com/schedule": schedule,
    }
    known = {name: blueprint(name) for name in blueprint_names(annotations)[:1]}
    result = plan(deployment(annotations), known, forbidden_namespaces=FORBIDDEN)
    assert len(result.wanted) + len(result.held) == len(blueprint_names(annotations))
    for generated in result.wanted:
        assert len(generated.invoker["metadata"]["name"]) <= 63
        Repository.model_validate(generated.repository)
        BackupConfiguration.model_validate(generated.invoker)


def test_an_appbinding_as_kubedb_makes_it_gets_app_named_objects_and_its_addons_task() -> None:
    binding = {
        "apiVersion": "appcatalog.appscode.com/v1alpha1",
        "kind": "AppBinding",
        "metadata": {
            "name": "sample-mariadb",
            "namespace": "demo",
            "uid": "u",
            "annotations": {
                "stash.appscode.com/backup-blueprint": "mariadb-backup-template",
                "params.stash.appscode.com/args": "--databases mysql",
            },
        },
        "spec": {
            "type": "kubedb.com/mariadb",
            "version": "10.5.23",
            "clientConfig": {"service": {"name": "sample-mariadb", "port": 3306}},
            "parameters": {
                "stash": {"addon": {"backupTask": {"name": "mariadb-backup-10.5.23"}}},
            },
        },
    }
    bp = blueprint("mariadb-backup-template")
    bp["spec"]["backend"]["gcs"]["prefix"] = (
        "mariadb-backup/${TARGET_NAMESPACE}/${TARGET_APP_RESOURCE}/${TARGET_NAME}"
    )
    (generated,) = plan(
        binding, {"mariadb-backup-template": bp}, forbidden_namespaces=FORBIDDEN
    ).wanted
    repo, bc = generated.repository, generated.invoker
    assert bc["metadata"]["name"] == repo["metadata"]["name"] == "app-sample-mariadb"
    assert repo["spec"]["backend"]["gcs"]["prefix"] == "mariadb-backup/demo/mariadb/sample-mariadb"
    assert bc["spec"]["task"] == {
        "name": "mariadb-backup-10.5.23",
        "params": [{"name": "args", "value": "--databases mysql"}],
    }
    assert bc["spec"]["target"] == {
        "ref": {
            "apiVersion": "appcatalog.appscode.com/v1alpha1",
            "kind": "AppBinding",
            "name": "sample-mariadb",
        }
    }
    assert bc["metadata"]["ownerReferences"][0]["kind"] == "AppBinding"
    BackupConfiguration.model_validate(bc)


def test_a_blueprints_task_wins_and_param_annotations_override_its_params() -> None:
    annotations = {
        **STASH_DOCS_ANNOTATIONS,
        "params.stash.appscode.com/level": "9",
    }
    bp = blueprint(
        task={"name": "t", "params": [{"name": "level", "value": "1"}, {"name": "x", "value": "y"}]}
    )
    (generated,) = plan(
        deployment(annotations), {"workload-backup-blueprint": bp}, forbidden_namespaces=FORBIDDEN
    ).wanted
    assert generated.invoker["spec"]["task"] == {
        "name": "t",
        "params": [{"name": "level", "value": "9"}, {"name": "x", "value": "y"}],
    }
