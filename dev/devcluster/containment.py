"""Network containment of the dev node: its pods reach only this machine.

A connection from this machine to anything but loopback or its own addresses does not fail
here: something outside answers it, which hides the bug. So, while a node runs:

- every pod runs with host networking, and every container *and init container* has
  ``KUBERNETES_SERVICE_HOST``/``PORT`` set to the loopback API server (explicit env wins over
  the kubelet's ClusterIP values) and ``imagePullPolicy: Never`` (no registry is reachable: an
  image the node lacks fails the pod, it is never fetched). A MutatingAdmissionPolicy sets all
  three; a ValidatingAdmissionPolicy then refuses any pod that still lacks them, so no pod of
  the dev cluster can exist without them, whoever created it;
- the service CIDR and the pod CIDR are blackhole routes, so a ClusterIP or a pod address fails
  at once instead of leaving through the default route.

``route_kind`` asks the kernel (``ip route get``: a lookup, no packet) what an address would
hit; the containment test uses it.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess

from api.objects import JSON
from devcluster.cluster import SERVICE_CIDR

POD_CIDR = "10.244.0.0/16"
BLACKHOLED = (SERVICE_CIDR, POD_CIDR)
MUTATING_POLICY = "stash-dev-host-network"
VALIDATING_POLICY = "stash-dev-local-only"
ADMISSION_API = "admissionregistration.k8s.io/v1"


class ContainmentError(RuntimeError):
    """A route could not be set; the node must not start without it."""


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


def add_blackholes(metric: int) -> None:
    """Blackhole routes for the service and pod CIDRs under ``metric`` (one per node, so two
    dev clusters on one machine never remove each other's)."""
    for cidr in BLACKHOLED:
        done = _ip("route", "replace", "blackhole", cidr, "metric", str(metric))
        if done.returncode != 0:
            raise ContainmentError(f"ip route add blackhole {cidr}: {done.stderr.strip()}")


def remove_blackholes(metric: int) -> None:
    for cidr in BLACKHOLED:
        _ip("route", "del", "blackhole", cidr, "metric", str(metric))


def route_kind(address: str) -> str:
    """What the kernel would do with a packet to ``address``: ``blackhole``, ``unreachable``,
    ``local`` (this machine), ``unicast`` (out through an interface) or the error it gives."""
    done = _ip("-j", "route", "get", address)
    if done.returncode != 0:
        # How the kernel answers a lookup that hits a blackhole route ("Invalid argument") or
        # an unreachable one ("Network is unreachable").
        message = done.stderr.strip()
        if "invalid argument" in message.lower():
            return "blackhole"
        if "unreachable" in message.lower():
            return "unreachable"
        return message
    routes = json.loads(done.stdout or "[]")
    if not routes:
        return "unreachable"
    return str(routes[0].get("type", "unicast"))


def sample_addresses() -> list[str]:
    """A few addresses of each contained range: first, middle, last."""
    out = []
    for cidr in BLACKHOLED:
        net = ipaddress.ip_network(cidr)
        out += [str(net[1]), str(net[net.num_addresses // 2]), str(net[-2])]
    return out


def _with_loopback_env(field: str, port: int) -> str:
    """CEL: the apply configuration that gives each container of ``spec.<field>`` the loopback
    API server's env and ``imagePullPolicy: Never`` (lists merge by name, so other env and
    containers are kept)."""
    env = f"Object.spec.{field}.env"
    return (
        f"object.spec.{field}.map(c, Object.spec.{field}{{name: c.name, "
        "imagePullPolicy: 'Never', env: ["
        f"{env}{{name: 'KUBERNETES_SERVICE_HOST', value: '127.0.0.1'}}, "
        f"{env}{{name: 'KUBERNETES_SERVICE_PORT', value: '{port}'}}]}})"
    )


def admission_policies(apiserver_port: int) -> list[JSON]:
    """The policies (and their bindings) that keep every pod on host networking, on the
    loopback API server and off any registry."""
    rules = [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "operations": ["CREATE"],
            "resources": ["pods"],
        }
    ]
    containers = _with_loopback_env("containers", apiserver_port)
    init_containers = _with_loopback_env("initContainers", apiserver_port)
    mutation = (
        "has(object.spec.initContainers) ? Object{spec: Object.spec{hostNetwork: true, "
        f"containers: {containers}, initContainers: {init_containers}}}}} : "
        f"Object{{spec: Object.spec{{hostNetwork: true, containers: {containers}}}}}"
    )
    local = (
        "c, c.imagePullPolicy == 'Never' && has(c.env) && "
        "c.env.exists(e, e.name == 'KUBERNETES_SERVICE_HOST' && "
        "has(e.value) && e.value == '127.0.0.1') && c.env.exists(e, e.name == "
        f"'KUBERNETES_SERVICE_PORT' && has(e.value) && e.value == '{apiserver_port}')"
    )
    return [
        {
            "apiVersion": ADMISSION_API,
            "kind": "MutatingAdmissionPolicy",
            "metadata": {"name": MUTATING_POLICY},
            "spec": {
                "matchConstraints": {"resourceRules": rules},
                "failurePolicy": "Fail",
                "reinvocationPolicy": "IfNeeded",
                "mutations": [
                    {
                        "patchType": "ApplyConfiguration",
                        "applyConfiguration": {"expression": mutation},
                    }
                ],
            },
        },
        {
            "apiVersion": ADMISSION_API,
            "kind": "MutatingAdmissionPolicyBinding",
            "metadata": {"name": MUTATING_POLICY},
            "spec": {"policyName": MUTATING_POLICY},
        },
        {
            "apiVersion": ADMISSION_API,
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": VALIDATING_POLICY},
            "spec": {
                "matchConstraints": {"resourceRules": rules},
                "failurePolicy": "Fail",
                "validations": [
                    {
                        "expression": "has(object.spec.hostNetwork) && object.spec.hostNetwork",
                        "message": "dev cluster: every pod runs with host networking "
                        "(devcluster.containment)",
                    },
                    {
                        "expression": f"object.spec.containers.all({local}) && "
                        f"(!has(object.spec.initContainers) || "
                        f"object.spec.initContainers.all({local}))",
                        "message": "dev cluster: every container and init container reaches "
                        "the API server on loopback and never pulls an image "
                        "(devcluster.containment)",
                    },
                ],
            },
        },
        {
            "apiVersion": ADMISSION_API,
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": VALIDATING_POLICY},
            "spec": {"policyName": VALIDATING_POLICY, "validationActions": ["Deny"]},
        },
    ]


def contained(pod: JSON, apiserver_port: int) -> bool:
    """Does ``pod`` (as admitted) run on host networking, every container and init container
    reaching the API server on loopback and never pulling its image?"""
    spec = pod.get("spec") or {}
    wanted = {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(apiserver_port),
    }
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    return bool(spec.get("hostNetwork")) and all(
        c.get("imagePullPolicy") == "Never"
        and all(
            any(e.get("name") == k and e.get("value") == v for e in c.get("env") or [])
            for k, v in wanted.items()
        )
        for c in containers
    )
