"""Tenancy: an invoker reaches another namespace only where that namespace allows it, and
never the operator's namespace or kube-system; refused members are named by field."""

from __future__ import annotations

from typing import Any

import pytest

from api import constants as c
from api.conditions import get_condition
from api.tenancy import ALLOW_ANNOTATION, NamespacePolicy, Tenancy
from controller.invokers.evaluation import InvokerFacts, evaluate, members_of
from controller.sessions.backup_status import BACKUP
from controller.sessions.machine import Observed, decide
from kube.sessions import new_session
from pods.invokers import SidecarIndex, sidecar_targets_of
from tests.factories import batch, member
from tests.unit.controller.invokers.test_evaluation import T0, repository

DB = {"apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding", "name": "db"}


def _db_member(namespace: str) -> dict[str, Any]:
    return {"task": {"name": "postgres-backup"}, "target": {"ref": {**DB, "namespace": namespace}}}


def _namespace(name: str, allowed: str | None) -> dict[str, Any]:
    annotations = {ALLOW_ANNOTATION: allowed} if allowed is not None else {}
    return {"metadata": {"name": name, "annotations": annotations}}


def test_a_namespace_lists_the_invoker_namespaces_it_allows() -> None:
    listed = NamespacePolicy.of("b", _namespace("b", " team-a, team-c ,,"))
    assert listed.allowed_invokers == {"team-a", "team-c"}
    assert NamespacePolicy.of("b", _namespace("b", None)).allowed_invokers == frozenset()
    assert NamespacePolicy.of("b", None).allowed_invokers == frozenset()


def test_the_own_namespace_is_always_reachable() -> None:
    assert Tenancy("stash").refusal("a", "a", "Deployment", sidecar=True) is None


@pytest.mark.parametrize("target", ["kube-system", "stash"])
def test_the_operator_namespace_and_kube_system_are_never_targets_even_when_allowed(
    target: str,
) -> None:
    tenancy = Tenancy("stash", {target: NamespacePolicy.of(target, _namespace(target, "a"))})
    refused = tenancy.refusal("a", target, "AppBinding", sidecar=False)
    assert refused == f"namespace {target} is never a backup target of another namespace"


def test_another_namespace_is_refused_until_it_allows_the_invoker_namespace() -> None:
    refused = Tenancy("stash").refusal("a", "b", "AppBinding", sidecar=False)
    assert refused is not None
    assert "namespace b does not allow invokers from a" in refused
    assert ALLOW_ANNOTATION in refused
    other = Tenancy("stash", {"b": NamespacePolicy.of("b", _namespace("b", "c"))})
    assert other.refusal("a", "b", "AppBinding", sidecar=False) is not None
    allowed = Tenancy("stash", {"b": NamespacePolicy.of("b", _namespace("b", "a"))})
    assert allowed.refusal("a", "b", "AppBinding", sidecar=False) is None


@pytest.mark.parametrize(
    ("kind", "sidecar", "says"),
    [
        ("Deployment", True, "sidecar runs in namespace b"),
        ("StatefulSet", True, "sidecar runs in namespace b"),
        ("PersistentVolumeClaim", False, "mounted only by pods in its own namespace"),
    ],
)
def test_what_cannot_work_across_namespaces_is_refused_even_when_allowed(
    kind: str, sidecar: bool, says: str
) -> None:
    tenancy = Tenancy("stash", {"b": NamespacePolicy.of("b", _namespace("b", "a"))})
    refused = tenancy.refusal("a", "b", kind, sidecar=sidecar)
    assert refused is not None
    assert says in refused


def test_an_invoker_reaching_another_namespace_is_invalid_naming_the_field() -> None:
    obj = batch(
        "nightly",
        "a",
        member("Deployment", "web"),
        member("Deployment", "x", namespace="kube-system"),
        _db_member("b"),
    )
    facts = InvokerFacts(
        tenancy=Tenancy("stash"),
        repository=repository("a"),
        secret_found=True,
        targets_found={0: True},
    )
    status = evaluate(obj, facts, now=T0)
    assert status.phase == "Invalid"
    validation = get_condition(status.conditions, c.VALIDATION_PASSED)
    assert validation is not None
    assert validation["status"] == "False"
    assert (
        "spec.members[1].target.ref.namespace: namespace kube-system is never"
        in (validation["message"])
    )
    assert (
        "spec.members[2].target.ref.namespace: namespace b does not allow"
        in (validation["message"])
    )
    # The refused targets were never looked up: not reported "not found".
    found = get_condition(status.conditions, c.BACKUP_TARGET_FOUND)
    assert found is not None
    assert found["status"] == "True"
    members = status.member_conditions or []
    refused = get_condition(members[2]["conditions"], c.BACKUP_TARGET_FOUND)
    assert refused is not None
    assert refused["reason"] == "TargetNotAllowed"


def test_an_allowed_job_model_member_in_another_namespace_is_valid() -> None:
    obj = batch("nightly", "a", _db_member("b"))
    facts = InvokerFacts(
        tenancy=Tenancy("stash", {"b": NamespacePolicy.of("b", _namespace("b", "a"))}),
        repository=repository("a"),
        secret_found=True,
        targets_found={0: True},
    )
    assert evaluate(obj, facts, now=T0).phase == "Ready"


def test_no_sidecar_is_ever_planned_for_a_workload_of_another_namespace() -> None:
    obj = batch(
        "nightly", "a", member("Deployment", "web", namespace="b"), member("Deployment", "own")
    )
    assert set(sidecar_targets_of(obj)) == {("a", "Deployment", "own")}
    index = SidecarIndex()
    index.upsert(obj)
    assert index.targets("b", "Deployment", "web") == ()


def test_a_session_fails_a_refused_member_and_creates_no_job_for_it() -> None:
    # Ready when the grant was there; the grant is withdrawn as the session starts.
    obj = batch("nightly", "a", _db_member("b"))
    obj["metadata"]["uid"] = "u"
    obj["status"] = {"phase": "Ready"}
    session = new_session("BackupBatch", "nightly", "u", "a", unix_seconds=1)
    session["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    seen = Observed(
        kind=BACKUP,
        invoker=obj,
        members=members_of(obj),
        total_hosts={0: 1},
        jobs={0: [None]},
        refused={0: "spec.members[0].target.ref.namespace: namespace b does not allow"},
    )
    decision = decide(session, seen, T0)
    assert decision.create_jobs == ()
    target = decision.status["targets"][0]
    assert target["phase"] == "Failed"
    assert "namespace b does not allow" in str(target)
