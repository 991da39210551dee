"""The dev node's containment policies, as data: what they require of every pod."""

from __future__ import annotations

from devcluster import containment


def _pod(**spec: object) -> dict[str, object]:
    env = [
        {"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
        {"name": "KUBERNETES_SERVICE_PORT", "value": "6443"},
    ]
    container = {"name": "c", "imagePullPolicy": "Never", "env": env}
    return {"spec": {"hostNetwork": True, "containers": [container], **spec}}


def test_a_pod_on_the_host_network_with_the_loopback_api_server_is_contained() -> None:
    assert containment.contained(_pod(), 6443)


def test_an_init_container_without_the_loopback_api_server_is_not_contained() -> None:
    assert not containment.contained(_pod(initContainers=[{"name": "i"}]), 6443)


def test_a_bridged_pod_or_a_pulling_container_or_another_port_is_not_contained() -> None:
    assert not containment.contained(_pod(hostNetwork=False), 6443)
    assert not containment.contained(_pod(), 7443)
    pulling = _pod()
    pulling["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"  # type: ignore[index]
    assert not containment.contained(pulling, 6443)


def test_the_policies_mutate_and_validate_pod_creation_with_failure_closed() -> None:
    objects = containment.admission_policies(6443)
    kinds = [o["kind"] for o in objects]
    assert kinds == [
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    for policy in (objects[0], objects[2]):
        assert policy["spec"]["failurePolicy"] == "Fail"
        rule = policy["spec"]["matchConstraints"]["resourceRules"][0]
        assert rule["resources"] == ["pods"]
        assert rule["operations"] == ["CREATE"]
    expression = objects[0]["spec"]["mutations"][0]["applyConfiguration"]["expression"]
    assert "initContainers" in expression
    assert "'6443'" in expression
    assert objects[3]["spec"]["validationActions"] == ["Deny"]


def test_the_sample_addresses_cover_both_contained_ranges() -> None:
    addresses = containment.sample_addresses()
    assert any(a.startswith("10.96.") for a in addresses)
    assert any(a.startswith("10.244.") for a in addresses)
