"""The tenant boundary's rules (``api.tenancy``): each check alone, the chain, the webhook's use
of it, and a property over settings a tenant could write."""

from __future__ import annotations

import json
from typing import Any

import jsonpatch
from hypothesis import given, settings
from hypothesis import strategies as st

from api.constants import SIDECAR_CONTAINER
from api.objects import JSON
from api.tenancy import (
    HOST_PATH,
    IDENTITY,
    PRIVILEGED,
    PRIVILEGES_ANNOTATION,
    PSA_ENFORCE_LABEL,
    Member,
    NamespacePolicy,
    Subject,
    Tenancy,
    refusals,
    settings_refusals,
)
from pods.invokers import SidecarIndex
from pods.sidecar import SidecarSettings
from tests.factories import batch, member, pod, review
from tests.unit.controller.invokers.test_evaluation import repository as repo
from webhook.mutation import handle
from webhook.review import parse_review


def tenancy(**namespaces: NamespacePolicy) -> Tenancy:
    return Tenancy("stash", namespaces)


def policy(name: str, privileges: str = "", level: str = "") -> NamespacePolicy:
    return NamespacePolicy(
        name,
        labels={PSA_ENFORCE_LABEL: level} if level else {},
        annotations={PRIVILEGES_ANNOTATION: privileges} if privileges else {},
    )


HOST = {"hostPath": {"path": "/"}}


# -- each rule -----------------------------------------------------------------------------------


def test_a_repository_on_the_nodes_files_needs_the_hostpath_privilege() -> None:
    subject = Subject("a", repo("a", local=HOST))
    (refused,) = refusals(tenancy(), subject)
    assert refused.field == "spec.repository"
    assert refused.reason == "PrivilegeNotAllowed"
    assert f"{PRIVILEGES_ANNOTATION} of namespace a must list 'hostPath'" in refused.message
    assert refusals(tenancy(a=policy("a", HOST_PATH)), subject) == []
    assert refusals(tenancy(a=policy("a", "*")), subject) == []
    # Another privilege is not this one.
    assert refusals(tenancy(a=policy("a", PRIVILEGED)), subject) != []


def test_the_pod_security_level_holds_whatever_the_admin_allowed() -> None:
    subject = Subject("a", repo("a", local=HOST))
    (refused,) = refusals(tenancy(a=policy("a", "*", "baseline")), subject)
    assert refused.reason == "PodSecurityViolation"
    assert "enforces Pod Security level 'baseline'" in refused.message
    # restricted: only the volume types it lists; a PVC is one of them, NFS is not.
    nfs = Subject("a", repo("a", local={"nfs": {"server": "10.0.0.1", "path": "/"}}))
    assert refusals(tenancy(a=policy("a", "", "restricted")), nfs)[0].reason == (
        "PodSecurityViolation"
    )
    assert refusals(tenancy(a=policy("a", "", "restricted")), Subject("a", repo("a"))) == []
    # An unknown level is read as the strictest.
    assert policy("a", level="typo").pod_security == "restricted"


def test_another_namespaces_repository_needs_its_usage_policy_and_protected_ones_never_serve() -> (
    None
):
    same = Subject("b", repo("a"))
    (refused,) = refusals(tenancy(), same)
    assert refused.reason == "RepositoryUsageNotAllowed"
    assert refusals(tenancy(), Subject("b", repo("a", **{"from": "All"}))) == []
    for protected in ("kube-system", "stash"):
        (refused,) = refusals(tenancy(), Subject("b", repo(protected, **{"from": "All"})))
        assert f"a Repository in namespace {protected} serves only invokers there" in str(refused)
    selector = {"from": "Selector", "selector": {"matchLabels": {"team": "x"}}}
    labelled = NamespacePolicy("b", labels={"team": "x"})
    assert refusals(tenancy(b=labelled), Subject("b", repo("a", **selector))) == []
    assert refusals(tenancy(), Subject("b", repo("a", **selector))) != []


def test_a_shared_repository_on_the_node_needs_the_privilege_of_the_namespace_using_it() -> None:
    # The volume is mounted into the user's pods: the user's namespace decides, not the owner's.
    shared = Subject("b", repo("a", local=HOST, **{"from": "All"}))
    assert refusals(tenancy(a=policy("a", HOST_PATH)), shared) != []
    assert refusals(tenancy(b=policy("b", HOST_PATH)), shared) == []


def test_settings_that_pick_the_pods_identity_need_the_identity_privilege() -> None:
    for key in ("serviceAccountName", "priorityClassName", "runtimeClassName", "schedulerName"):
        given_settings = {"pod": {key: "x"}}
        (refused,) = settings_refusals(tenancy(), "a", "spec.runtimeSettings", given_settings)
        assert refused.field == f"spec.runtimeSettings.pod.{key}"
        assert "'identity'" in refused.message
        allowed = tenancy(a=policy("a", IDENTITY))
        assert settings_refusals(allowed, "a", "spec.runtimeSettings", given_settings) == []


def test_what_baseline_forbids_needs_the_privileged_privilege() -> None:
    forbidden: list[JSON] = [
        {"container": {"securityContext": {"privileged": True}}},
        {"container": {"securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}},
        {"container": {"securityContext": {"capabilities": {"add": ["CAP_NET_ADMIN"]}}}},
        {"container": {"securityContext": {"seccompProfile": {"type": "Unconfined"}}}},
        {"container": {"securityContext": {"procMount": "Unmasked"}}},
        {"container": {"securityContext": {"seLinuxOptions": {"type": "spc_t"}}}},
        {"pod": {"hostNetwork": True}},
        {"pod": {"hostPID": True}},
        {"pod": {"hostIPC": True}},
        {"pod": {"securityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}}},
    ]
    for given_settings in forbidden:
        found = settings_refusals(tenancy(), "a", "spec", given_settings)
        assert [r.reason for r in found] == ["PrivilegeNotAllowed"], given_settings
        assert (
            settings_refusals(tenancy(a=policy("a", PRIVILEGED)), "a", "spec", given_settings) == []
        )


def test_ordinary_settings_pass_and_root_is_judged_by_the_restricted_level_only() -> None:
    ordinary = {
        "container": {
            "resources": {"limits": {"memory": "256Mi"}},
            "securityContext": {
                "runAsUser": 0,
                "capabilities": {"add": ["CHOWN"], "drop": ["ALL"]},
            },
        },
        "pod": {"nodeSelector": {"disk": "ssd"}, "securityContext": {"fsGroup": 1000}},
    }
    assert settings_refusals(tenancy(), "a", "spec", ordinary) == []
    found = settings_refusals(tenancy(a=policy("a", "*", "restricted")), "a", "spec", ordinary)
    assert {r.field for r in found} == {
        "spec.container.securityContext.runAsUser",
        "spec.container.securityContext.capabilities.add",
    }


def test_the_chain_names_each_members_field_and_the_invokers_own() -> None:
    members = (
        Member(
            "spec.members[0]", "PersistentVolumeClaim", "d", "a", False, {"pod": {"hostPID": True}}
        ),
        Member("spec.members[1]", "Deployment", "web", "b", True),
    )
    subject = Subject(
        "a", repo("a", local=HOST), members, runtime_settings={"pod": {"serviceAccountName": "x"}}
    )
    fields = [r.field for r in refusals(tenancy(), subject)]
    assert fields == [
        "spec.members[1].target.ref.namespace",
        "spec.repository",
        "spec.members[0].runtimeSettings.pod.hostPID",
        "spec.runtimeSettings.pod.serviceAccountName",
    ]


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 70000) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
_keys = st.sampled_from(
    [
        "securityContext",
        "privileged",
        "capabilities",
        "add",
        "hostPID",
        "hostNetwork",
        "serviceAccountName",
        "sysctls",
        "seLinuxOptions",
        "runAsUser",
        "type",
        "name",
    ]
)
_settings = st.recursive(
    _json, lambda inner: st.dictionaries(_keys, inner, max_size=4), max_leaves=16
)


@settings(max_examples=300, deadline=None)
@given(pod_settings=_settings, container_settings=_settings)
def test_any_settings_a_tenant_writes_are_judged_without_error_and_refusals_name_their_field(
    pod_settings: Any, container_settings: Any
) -> None:
    # The CRD schema lets only objects through here, but the rules must not trust that.
    given_settings: dict[str, Any] = {"pod": pod_settings, "container": container_settings}
    try:
        found = settings_refusals(tenancy(), "a", "spec.runtimeSettings", given_settings)
    except (AttributeError, TypeError) as exc:
        raise AssertionError(f"settings crashed the boundary: {exc}") from exc
    for refusal in found:
        assert refusal.field.startswith("spec.runtimeSettings.")
        assert refusal.message
    # Everything allowed and no Pod Security: nothing refused.
    assert settings_refusals(tenancy(a=policy("a", "*")), "a", "spec", given_settings) == []


# -- the webhook ---------------------------------------------------------------------------------


def _admit(obj: JSON, index: SidecarIndex) -> Any:
    request = parse_review(json.dumps(review(obj, namespace="demo")).encode())
    return handle(request, index, SidecarSettings(image="stash-py:test"))


def _index(*objects: JSON, namespaces: tuple[JSON, ...] = ()) -> SidecarIndex:
    index = SidecarIndex("stash")
    index.replace([o for o in objects if o["kind"] != "Repository"])
    index.replace_repositories([o for o in objects if o["kind"] == "Repository"])
    index.replace_namespaces(namespaces)
    return index


def _repository_object(namespace: str, local: JSON, **policy: Any) -> JSON:
    obj: JSON = json.loads(
        repo(namespace, local=local, **policy).model_dump_json(by_alias=True, exclude_unset=True)
    )
    return {"apiVersion": "stash.appscode.com/v1alpha1", "kind": "Repository", **obj}


def _namespace(name: str, **annotations: str) -> JSON:
    return {"metadata": {"name": name, "annotations": annotations}}


def test_the_webhook_mounts_no_repository_the_pods_namespace_may_not_use() -> None:
    invoker = batch(
        "nightly",
        "demo",
        member("Deployment", "web"),
        repository={"name": "repo", "namespace": "other"},
    )
    other_repo = _repository_object("other", HOST)  # usagePolicy: its own namespace only
    response = _admit(pod(), _index(invoker, other_repo))
    assert not response.patch
    assert any("refused" in w and "only allows its own namespace" in w for w in response.warnings)


def test_the_webhook_mounts_a_repository_on_the_node_only_where_an_admin_allowed_it() -> None:
    invoker = batch("nightly", "demo", member("Deployment", "web"))
    own = _repository_object("demo", HOST)
    refused = _admit(pod(), _index(invoker, own))
    assert not refused.patch
    assert any("needs a cluster administrator's decision" in w for w in refused.warnings)
    allowed = _admit(
        pod(),
        _index(
            invoker, own, namespaces=(_namespace("demo", **{PRIVILEGES_ANNOTATION: HOST_PATH}),)
        ),
    )
    patched = jsonpatch.apply_patch(pod(), allowed.patch)
    assert [c["name"] for c in patched["spec"]["containers"]].count(SIDECAR_CONTAINER) == 1
    assert {"name": "stash-local", "hostPath": {"path": "/"}} in patched["spec"]["volumes"]


def test_the_webhook_injects_no_privileged_sidecar_without_the_admins_decision() -> None:
    target = {
        **member("Deployment", "web"),
        "runtimeSettings": {"container": {"securityContext": {"privileged": True}}},
    }
    invoker = batch("nightly", "demo", target)
    own = _repository_object("demo", {"persistentVolumeClaim": {"claimName": "r"}})
    response = _admit(pod(), _index(invoker, own))
    assert not response.patch
    assert any(
        "spec.members[0].runtimeSettings.container.securityContext.privileged" in w
        for w in response.warnings
    )
