"""What an invoker's pods are granted in another namespace's Repository: that one Repository and
its Secret, by name, for its own service accounts; nothing for a Repository of its own."""

from __future__ import annotations

from api.repository import Repository
from controller.invokers.grants import GRANTED_TO, grant_name, granted_to, repository_grant
from tests.factories import batch, restore_session


def repo(namespace: str) -> Repository:
    return Repository.model_validate(
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": "shared", "namespace": namespace},
            "spec": {"backend": {"s3": {"bucket": "b"}, "storageSecretName": "s3-secret"}},
        }
    )


def test_a_repository_of_the_invokers_own_namespace_needs_no_grant() -> None:
    assert repository_grant(batch("nightly", "shop"), repo("shop"), ["a"], backup=True) == []
    assert repository_grant(batch("nightly", "shop"), None, ["a"], backup=True) == []


def test_a_restore_may_read_that_repository_and_its_secret_and_nothing_else() -> None:
    restore = restore_session("back", "shop")
    role, binding = repository_grant(
        restore, repo("backups"), ["stash-restore-back", "web"], backup=False
    )
    assert role["metadata"]["namespace"] == "backups"
    assert role["metadata"]["name"] == grant_name("RestoreSession", "shop", "back")
    assert "ownerReferences" not in role["metadata"]  # owners cannot cross namespaces
    assert role["rules"] == [
        {
            "apiGroups": ["stash.appscode.com"],
            "resources": ["repositories"],
            "verbs": ["get"],
            "resourceNames": ["shared"],
        },
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "verbs": ["get"],
            "resourceNames": ["s3-secret"],
        },
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "stash-restore-back", "namespace": "shop"},
        {"kind": "ServiceAccount", "name": "web", "namespace": "shop"},
    ]
    assert granted_to(role) == ("RestoreSession", "shop", "back")


def test_a_backup_may_also_write_the_repositorys_status_and_take_its_init_lease() -> None:
    role, binding, init = repository_grant(
        batch("nightly", "shop"), repo("backups"), ["x"], backup=True
    )
    assert init["metadata"]["namespace"] == "backups"
    assert init["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "stash-repository-init",
    }
    assert init["subjects"] == binding["subjects"]
    status = [r for r in role["rules"] if r["resources"] == ["repositories/status"]]
    assert status == [
        {
            "apiGroups": ["stash.appscode.com"],
            "resources": ["repositories/status"],
            "verbs": ["get", "patch", "update"],
            "resourceNames": ["shared"],
        }
    ]


def test_only_a_whole_annotation_names_an_invoker() -> None:
    def obj(value: str) -> dict[str, object]:
        return {"metadata": {"annotations": {GRANTED_TO: value}}}

    assert granted_to(obj("BackupBatch/shop/a/b")) == ("BackupBatch", "shop", "a/b")
    assert granted_to(obj("BackupBatch/shop")) is None
    assert granted_to(obj("BackupBatch//x")) is None
    assert granted_to({"metadata": {}}) is None
