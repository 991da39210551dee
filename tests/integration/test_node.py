"""The dev cluster's real node: pods really run, and nothing they do can leave this machine.

No packet is sent outward to prove it: the kernel's route lookup (``ip route get``) says what a
connection would hit, and the API server's own admission says what every pod is set to reach.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import uuid
from pathlib import Path

from devcluster import containment
from devcluster.build import RESTIC_VERSION
from devcluster.images import Images
from devcluster.node import Node, NodeRecord, remove_node
from kube import Client
from kube.types import PODS
from tests.integration.helpers import eventually, run_pod


def test_service_and_pod_addresses_are_blackholed_while_the_node_runs(cluster: Node) -> None:
    for address in containment.sample_addresses():
        assert containment.route_kind(address) in ("blackhole", "unreachable"), address
    # The node's own address is this machine's: local.
    assert containment.route_kind(cluster.address) == "local"


def test_every_pod_runs_on_host_networking_and_the_loopback_api_server(
    cluster: Node, kube: Client, namespace: str, images: Images
) -> None:
    pod = {
        "metadata": {"name": "probe"},
        "spec": {
            "restartPolicy": "Never",
            "initContainers": [
                {"name": "init", "image": images.app.name, "command": ["sh", "-c", "env"]}
            ],
            "containers": [
                {"name": "main", "image": images.app.name, "command": ["sh", "-c", "env"]}
            ],
        },
    }
    steps = run_pod(kube, namespace, pod)
    assert [(s.name, s.returncode) for s in steps] == [("init", 0), ("main", 0)]
    port = cluster.plane.ports.apiserver
    for step in steps:  # what the processes really saw
        assert "KUBERNETES_SERVICE_HOST=127.0.0.1\n" in step.output
        assert f"KUBERNETES_SERVICE_PORT={port}\n" in step.output
    stored = kube.get(PODS, "probe", namespace)
    assert containment.contained(stored, port)
    assert stored["status"]["podIP"] == cluster.address


def test_a_pod_that_asks_for_its_own_network_and_a_cluster_ip_is_put_on_the_host(
    cluster: Node, kube: Client, namespace: str
) -> None:
    bridged = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "bridged"},
        "spec": {
            "hostNetwork": False,
            "containers": [
                {
                    "name": "c",
                    "image": "registry.example/anything:1",
                    "imagePullPolicy": "Always",
                    "env": [{"name": "KUBERNETES_SERVICE_HOST", "value": "10.96.0.1"}],
                }
            ],
        },
    }
    admitted = kube.create(bridged, namespace, dry_run=True)
    # Mutated onto the host network, the loopback API server and no pulling...
    assert admitted["spec"]["hostNetwork"] is True
    assert admitted["spec"]["containers"][0]["imagePullPolicy"] == "Never"
    assert containment.contained(admitted, cluster.plane.ports.apiserver)
    names = {
        p["metadata"]["name"]
        for p in kube.request(
            "GET", "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies"
        )["items"]
    }
    # ...and a pod the mutation missed would be refused, not run.
    assert containment.VALIDATING_POLICY in names


def test_stopping_a_node_record_removes_its_routes_cgroups_and_files(tmp_path: Path) -> None:
    """What a killed run leaves (a registry record, its routes and cgroups) is removed."""
    record = NodeRecord(
        node_id=f"test-{uuid.uuid4().hex[:8]}",
        cluster_dir=str(tmp_path),
        workdir=str(tmp_path / "node"),
        cgroup_root=f"/stash-dev-test-{uuid.uuid4().hex[:8]}",
        route_metric=4999,
        bridge="sdtestbridge",
        containerd_socket=str(tmp_path / "node" / "containerd.sock"),
        owner_pid=0,
    )
    (tmp_path / "node" / "kubelet").mkdir(parents=True)
    record.save()
    containment.add_blackholes(record.route_metric)
    memory = Path("/sys/fs/cgroup/memory") / record.cgroup_root.lstrip("/")
    if Path("/sys/fs/cgroup/memory").is_dir():
        (memory / "kubepods").mkdir(parents=True)
    remove_node(record)
    assert not record.path.exists()
    assert not (tmp_path / "node").exists()
    assert not memory.exists()
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True, check=True).stdout
    assert "metric 4999" not in routes


def test_an_image_the_node_lacks_fails_the_pod_instead_of_being_pulled(
    cluster: Node, kube: Client, namespace: str
) -> None:
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "missing"},
            "spec": {"containers": [{"name": "c", "image": "registry.example/missing:1"}]},
        },
        namespace,
    )

    def reason() -> str | None:
        statuses = (kube.get(PODS, "missing", namespace).get("status") or {}).get(
            "containerStatuses"
        ) or []
        waiting = (statuses[0].get("state") or {}).get("waiting") if statuses else None
        return (waiting or {}).get("reason")

    assert eventually(lambda: reason() == "ErrImageNeverPull", 60, "ErrImageNeverPull")


def test_the_image_runs_the_very_restic_the_tests_run(
    cluster: Node, kube: Client, namespace: str, images: Images
) -> None:
    pod = {
        "metadata": {"name": "restic-version"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": images.stash.name,
                    "command": ["sh", "-c", "restic version && sha256sum $(command -v restic)"],
                }
            ],
        },
    }
    (step,) = run_pod(kube, namespace, pod)
    assert step.returncode == 0, step.output
    here = subprocess.run(["restic", "version"], capture_output=True, text=True, check=True)
    pinned = RESTIC_VERSION.removeprefix("v")
    assert here.stdout.startswith(f"restic {pinned} ")
    assert step.output.splitlines()[0] == here.stdout.strip()
    binary = shutil.which("restic")
    assert binary is not None
    digest = hashlib.sha256(Path(binary).read_bytes()).hexdigest()
    assert step.output.splitlines()[1] == f"{digest}  /usr/local/bin/restic"
