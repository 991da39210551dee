"""Invoker validation: conditions and phase with messages that name the field."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from api import constants as c
from api.conditions import get_condition, is_true, set_condition
from api.naming import backup_job_name, cronjob_name, session_name
from api.repository import Repository
from api.tenancy import NamespacePolicy, Tenancy
from controller.invokers.evaluation import InvokerFacts, evaluate, members_of, validation_problems
from controller.invokers.trigger import cronjob, rbac_objects
from kube.sessions import new_session
from tests.factories import batch, configuration, member

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=5)


def repository(namespace: str = "demo", *, local: Any = None, **policy: Any) -> Repository:
    """Repository ``repo`` of a local backend at /r (its volume source: ``local``), allowing
    the namespaces ``policy`` says (its own only by default)."""
    backend = {"local": {"mountPath": "/r", **(local or {})}, "storageSecretName": "s"}
    spec: dict[str, Any] = {"backend": backend}
    if policy:
        spec["usagePolicy"] = {"allowedNamespaces": policy}
    return Repository.from_dict(
        {
            "apiVersion": "stash.appscode.com/v1alpha1",
            "kind": "Repository",
            "metadata": {"name": "repo", "namespace": namespace},
            "spec": spec,
        }
    )


def good_facts(invoker: dict[str, Any]) -> InvokerFacts:
    return InvokerFacts(
        repository=repository(),
        secret_found=True,
        targets_found={v.index: True for v in members_of(invoker)},
    )


def _with_uid(obj: dict[str, Any]) -> dict[str, Any]:
    obj["metadata"]["uid"] = "1234"
    return obj


# -- names ---------------------------------------------------------------------------------


def test_names_follow_the_design() -> None:
    assert cronjob_name("nightly") == "stash-trigger-nightly"
    assert session_name("nightly", 1714643400) == "nightly-1714643400"
    assert backup_job_name("nightly-1714643400", 2) == "stash-backup-nightly-1714643400-2"


def test_long_names_are_cut_with_a_stable_hash_and_dots_become_dashes() -> None:
    long = "a" * 60
    assert len(cronjob_name(long)) == 52
    assert cronjob_name(long) == cronjob_name(long)
    assert cronjob_name(long) != cronjob_name("a" * 61)
    assert cronjob_name("db.prod") == "stash-trigger-db-prod"
    assert len(backup_job_name("x" * 70, 0)) == 63


def _names_and_labels(obj: Any, found: list[tuple[str, str, str]]) -> None:
    """Every (what, value, kind) of metadata names and label values, nested templates too."""
    if isinstance(obj, dict):
        meta = obj.get("metadata")
        if isinstance(meta, dict):
            if "name" in meta:
                found.append(("name", str(meta["name"]), str(obj.get("kind", ""))))
            for value in (meta.get("labels") or {}).values():
                found.append(("label", str(value), str(obj.get("kind", ""))))
        for value in obj.values():
            _names_and_labels(value, found)
    elif isinstance(obj, list):
        for value in obj:
            _names_and_labels(value, found)


LIMITS = {"CronJob": 52, "Job": 63, "ServiceAccount": 253, "Role": 253, "RoleBinding": 253}


@pytest.mark.parametrize("name_length", [63, 200, 253])
def test_every_name_and_label_derived_from_a_long_invoker_name_fits(name_length: int) -> None:
    name = "n" * (name_length - 2) + ".x"
    obj = _with_uid(
        batch(name, "demo", member("Deployment", "web"), member("PersistentVolumeClaim", "d"))
    )
    session = new_session("BackupBatch", name, "1234", "demo", unix_seconds=1714643400)
    session["metadata"]["uid"] = "5678"
    objects = [*rbac_objects(obj), cronjob(obj, "img"), session]
    found: list[tuple[str, str, str]] = []
    _names_and_labels(objects, found)
    for what, value, kind in found:
        limit = 63 if what == "label" else LIMITS.get(kind, 253)
        assert len(value) <= limit, (what, kind, value)
    assert session["metadata"]["name"].endswith("-1714643400")
    assert len(session["metadata"]["name"]) <= 253
    assert len(backup_job_name(session["metadata"]["name"], 1)) <= 63
    assert session_name(name, 1) != session_name(name[:-1] + "y", 1)  # cut, still unique


# -- conditions ----------------------------------------------------------------------------


def test_a_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    first = set_condition(None, "X", True, "R", "m", now=T0)
    again = set_condition(first, "X", True, "R2", "m2", now=T1)
    assert again[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert again[0]["reason"] == "R2"
    flipped = set_condition(again, "X", False, "R3", now=T1)
    assert flipped[0]["lastTransitionTime"] == "2026-01-01T00:05:00Z"


# -- evaluate --------------------------------------------------------------------------------


def test_a_valid_batch_with_everything_in_place_is_ready() -> None:
    obj = batch("nightly", "demo", member("Deployment", "web"), member("StatefulSet", "db"))
    status = evaluate(obj, good_facts(obj), now=T0)
    assert status.phase == "Ready"
    for type_ in (
        c.VALIDATION_PASSED,
        c.REPOSITORY_FOUND,
        c.BACKEND_SECRET_FOUND,
        c.BACKUP_TARGET_FOUND,
        c.CRONJOB_CREATED,
    ):
        assert is_true(status.conditions, type_), type_
    assert status.member_conditions is not None
    assert [m["target"]["name"] for m in status.member_conditions] == ["web", "db"]


def test_evaluating_twice_gives_the_same_status() -> None:
    obj = batch()
    first = evaluate(obj, good_facts(obj), now=T0)
    obj["status"] = first.as_status(1)
    assert evaluate(obj, good_facts(obj), now=T1).as_status(1) == obj["status"]


def test_a_missing_repository_makes_it_not_ready_and_says_so() -> None:
    obj = batch()
    status = evaluate(obj, InvokerFacts(targets_found={0: True}), now=T0)
    assert status.phase == "NotReady"
    found = get_condition(status.conditions, c.REPOSITORY_FOUND)
    assert found is not None
    assert found["message"] == "Repository 'repo' not found in namespace demo"


def test_a_missing_secret_and_target_are_both_reported() -> None:
    obj = batch("b", "demo", member("Deployment", "web"), member("Deployment", "api"))
    facts = InvokerFacts(repository=repository(), secret_found=False, targets_found={0: True})
    status = evaluate(obj, facts, now=T0)
    assert status.phase == "NotReady"
    assert "Secret demo/s not found" in status.problems
    assert "not found: Deployment api" in status.problems
    assert status.member_conditions is not None
    api_member = status.member_conditions[1]["conditions"][0]
    assert (api_member["type"], api_member["status"]) == (c.BACKUP_TARGET_FOUND, "False")


def test_a_repository_of_another_namespace_needs_its_usage_policy() -> None:
    obj = batch("b", "team-a")
    facts = InvokerFacts(
        repository=repository("backups"), secret_found=True, targets_found={0: True}
    )
    assert evaluate(obj, facts, now=T0).problems == (
        "Repository backups/repo only allows its own namespace",
    )
    selector = {"from": "Selector", "selector": {"matchLabels": {"team": "a"}}}
    facts = InvokerFacts(
        repository=repository("backups", **selector),
        secret_found=True,
        targets_found={0: True},
        tenancy=Tenancy("stash", {"team-a": NamespacePolicy("team-a", labels={"team": "a"})}),
    )
    assert evaluate(obj, facts, now=T0).phase == "Ready"
    facts = InvokerFacts(
        repository=repository("backups", **{"from": "All"}),
        secret_found=True,
        targets_found={0: True},
    )
    assert evaluate(obj, facts, now=T0).phase == "Ready"


@pytest.mark.parametrize("where", ["kube-system", "stash"])
def test_a_repository_in_kube_system_or_the_operators_namespace_serves_only_its_own(
    where: str,
) -> None:
    facts = InvokerFacts(
        tenancy=Tenancy(operator_namespace="stash"),
        repository=repository(where, **{"from": "All"}),
        secret_found=True,
        targets_found={0: True},
    )
    assert evaluate(batch("b", "team-a"), facts, now=T0).problems == (
        f"a Repository in namespace {where} serves only invokers there",
    )
    assert evaluate(batch("b", where), facts, now=T0).phase == "Ready"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"schedule": "0 0 31 2 *"}, "spec.schedule: no month it names has the day"),
        ({"retentionPolicy": {"name": "r"}}, "spec.retentionPolicy: set at least one of"),
        ({"members": []}, "spec.members: a BackupBatch needs at least one member"),
        (
            {"members": [member("Service", "pg")]},
            "spec.members[0].task.name: a Service target needs a Task",
        ),
        (
            {"members": [member("Deployment", "web"), member("Deployment", "web")]},
            "spec.members[1].target.ref: Deployment web is also member 0",
        ),
    ],
)
def test_an_invalid_batch_is_invalid_with_a_message_naming_the_field(
    change: dict[str, Any], problem: str
) -> None:
    obj = batch()
    obj["spec"].update(change)
    status = evaluate(obj, good_facts(obj), now=T0)
    assert status.phase == "Invalid"
    validation = get_condition(status.conditions, c.VALIDATION_PASSED)
    assert validation is not None
    assert validation["status"] == "False"
    assert problem in validation["message"]


def test_a_pvc_member_without_a_task_uses_pvc_backup() -> None:
    obj = batch("b", "demo", member("PersistentVolumeClaim", "data"))
    assert members_of(obj)[0].task == "pvc-backup"
    assert evaluate(obj, good_facts(obj), now=T0).phase == "Ready"


def test_a_backup_configuration_has_no_member_conditions() -> None:
    obj = configuration()
    status = evaluate(obj, good_facts(obj), now=T0)
    assert status.phase == "Ready"
    assert status.member_conditions is None
    assert "memberConditions" not in status.as_status(1)


def test_a_cronjob_that_could_not_be_written_is_reported() -> None:
    obj = batch()
    facts = InvokerFacts(
        repository=repository(),
        secret_found=True,
        targets_found={0: True},
        cronjob_error="CronJob rejected: spec.schedule: invalid",
    )
    status = evaluate(obj, facts, now=T0)
    assert status.phase == "NotReady"
    assert not is_true(status.conditions, c.CRONJOB_CREATED)


# -- trigger objects and sessions ------------------------------------------------------------


def test_the_cronjob_runs_create_backupsession_and_is_suspended_while_paused() -> None:
    obj = _with_uid(batch("nightly", "demo", paused=True))
    job = cronjob(obj, "stash-py:1")
    assert job["metadata"]["name"] == "stash-trigger-nightly"
    assert job["spec"]["suspend"] is True
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == [
        "create-backupsession",
        "--invoker-kind=BackupBatch",
        "--invoker-name=nightly",
        "--invoker-uid=1234",
    ]
    assert job["metadata"]["ownerReferences"][0]["uid"] == "1234"


def test_the_trigger_service_account_may_only_create_backup_sessions() -> None:
    objs = {
        (o["kind"], o["metadata"]["name"]): o for o in rbac_objects(_with_uid(batch("nightly")))
    }
    assert set(objs) == {
        ("ServiceAccount", "stash-trigger-nightly"),
        ("Role", "stash-trigger-nightly"),
        ("RoleBinding", "stash-trigger-nightly"),
        ("ServiceAccount", "stash-backup-nightly"),
        ("RoleBinding", "stash-backup-nightly"),
    }
    assert objs["Role", "stash-trigger-nightly"]["rules"] == [
        {"apiGroups": ["stash.appscode.com"], "resources": ["backupsessions"], "verbs": ["create"]}
    ]
    trigger = objs["RoleBinding", "stash-trigger-nightly"]
    assert trigger["subjects"][0]["name"] == "stash-trigger-nightly"


def test_backup_jobs_get_their_own_service_account_bound_to_the_backup_job_role() -> None:
    objs = {
        (o["kind"], o["metadata"]["name"]): o for o in rbac_objects(_with_uid(batch("nightly")))
    }
    binding = objs["RoleBinding", "stash-backup-nightly"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "stash-backup-job",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "stash-backup-nightly", "namespace": "demo"}
    ]


def test_an_invoker_service_account_is_used_instead_of_ours() -> None:
    obj = _with_uid(batch("nightly", "demo", runtimeSettings={"pod": {"serviceAccountName": "sa"}}))
    objs = {(o["kind"], o["metadata"]["name"]): o for o in rbac_objects(obj)}
    assert ("ServiceAccount", "stash-trigger-nightly") not in objs
    assert objs["RoleBinding", "stash-trigger-nightly"]["subjects"][0]["name"] == "sa"
    pod_spec = cronjob(obj, "img")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == "sa"


def test_a_new_session_is_named_labelled_and_owned_by_its_invoker() -> None:
    session = new_session("BackupBatch", "nightly", "1234", "demo", unix_seconds=1714643400)
    assert session["metadata"]["name"] == "nightly-1714643400"
    assert session["metadata"]["labels"] == {
        c.INVOKER_TYPE_LABEL: "BackupBatch",
        c.INVOKER_NAME_LABEL: "nightly",
    }
    assert session["metadata"]["ownerReferences"][0]["uid"] == "1234"
    assert session["spec"]["invoker"] == {
        "apiGroup": "stash.appscode.com",
        "kind": "BackupBatch",
        "name": "nightly",
    }


def test_the_volume_snapshotter_driver_is_refused_by_name() -> None:
    obj = batch("nightly", "demo", driver="VolumeSnapshotter")
    assert "spec.driver: VolumeSnapshotter is not supported yet; only Restic backs up here" in (
        validation_problems(obj, members_of(obj), InvokerFacts(tenancy=Tenancy("stash")))
    )


def test_members_are_parsed_again_when_the_generation_changes() -> None:
    stored = batch("nightly", "demo", member("Deployment", "web"))
    stored["metadata"].update(uid="u-members", generation=1)
    assert [v.name for v in members_of(stored)] == ["web"]
    assert [v.name for v in members_of(stored)] == ["web"]

    edited = batch("nightly", "demo", member("Deployment", "web"), member("Deployment", "api"))
    edited["metadata"].update(uid="u-members", generation=2)
    assert [v.name for v in members_of(edited)] == ["web", "api"]

    replaced = batch("nightly", "demo", member("StatefulSet", "db"))
    replaced["metadata"].update(uid="u-other", generation=1)  # deleted and made again
    assert [(v.kind, v.name) for v in members_of(replaced)] == [("StatefulSet", "db")]


def test_parsed_members_are_kept_once_per_live_invoker_and_go_with_it() -> None:
    from controller.invokers import evaluation  # noqa: PLC0415

    invoker = batch("kept", "demo", member("Deployment", "web"))
    invoker["metadata"].update(uid="uid-kept", generation=1)
    evaluation.track_members(invoker)  # the cache holds it
    first = members_of(invoker)
    assert members_of(invoker)[0] is first[0]  # parsed once
    invoker["spec"]["members"].append(member("Deployment", "api"))
    invoker["metadata"]["generation"] = 2
    assert [v.name for v in members_of(invoker)] == ["web", "api"]  # a new generation
    kept = [k for k in evaluation._members if k[1] == "uid-kept"]
    assert len(kept) == 1  # the old generation is not kept beside it
    evaluation.forget_members(invoker)
    assert not [k for k in evaluation._members if k[1] == "uid-kept"]


def test_a_reconcile_that_parses_a_just_deleted_invoker_keeps_nothing_of_it() -> None:
    from controller.invokers import evaluation  # noqa: PLC0415

    invoker = batch("late", "demo", member("Deployment", "web"))
    invoker["metadata"].update(uid="uid-late", generation=1)
    evaluation.track_members(invoker)
    evaluation.forget_members(invoker)  # the delete event came first
    members_of(invoker)  # a reconcile still holding its copy
    assert not [k for k in evaluation._members if k[1] == "uid-late"]


def test_a_relisting_drops_what_was_kept_of_invokers_deleted_during_a_watch_gap() -> None:
    from controller.invokers import evaluation  # noqa: PLC0415

    gone, stays = (batch(n, "demo", member("Deployment", "web")) for n in ("gone", "stays"))
    for obj, uid in ((gone, "uid-gone"), (stays, "uid-stays")):
        obj["metadata"].update(uid=uid, generation=1)
        evaluation.track_members(obj)
        members_of(obj)
    evaluation.track_only("BackupBatch", ["uid-stays"])
    kept = {k[1] for k in evaluation._members}
    assert "uid-gone" not in kept
    assert "uid-stays" in kept
