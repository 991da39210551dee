"""The control plane runs the controllers the product relies on, with RBAC and service accounts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from devcluster import ControlPlane, ensure_binaries
from devcluster.cluster import Ports
from kube import Client, Forbidden
from kube.types import JOBS, PODS, REPLICASETS
from kube.types import SERVICE_ACCOUNTS as SERVICEACCOUNTS
from tests.integration.helpers import eventually, owned_by

POD_TEMPLATE = {
    "metadata": {"labels": {"app": "web"}},
    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
}


def test_a_namespace_gets_its_default_service_account(kube: Client, namespace: str) -> None:
    eventually(
        lambda: kube.list(SERVICEACCOUNTS, namespace)["items"], 30, "the default ServiceAccount"
    )


def test_a_deployment_becomes_a_replica_set_and_a_pod(kube: Client, namespace: str) -> None:
    kube.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": namespace},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": POD_TEMPLATE,
            },
        }
    )
    replica_sets = eventually(
        lambda: owned_by(kube.list(REPLICASETS, namespace)["items"], "Deployment", "web"),
        60,
        "the Deployment's ReplicaSet",
    )
    rs_name = replica_sets[0]["metadata"]["name"]
    pods = eventually(
        lambda: owned_by(kube.list(PODS, namespace)["items"], "ReplicaSet", rs_name),
        60,
        "the ReplicaSet's Pod",
    )
    # No scheduler and no kubelet run here: the pod exists and stays Pending.
    assert pods[0]["status"]["phase"] == "Pending"
    assert pods[0]["metadata"]["labels"]["app"] == "web"


def test_a_cron_job_creates_a_job_at_its_schedule(kube: Client, namespace: str) -> None:
    kube.create(
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "every-minute", "namespace": namespace},
            "spec": {
                "schedule": "* * * * *",
                "concurrencyPolicy": "Forbid",
                "jobTemplate": {
                    "spec": {
                        "backoffLimit": 0,
                        "template": {
                            "spec": {
                                "restartPolicy": "Never",
                                "containers": [{"name": "c", "image": "busybox", "args": ["true"]}],
                            }
                        },
                    }
                },
            },
        }
    )
    jobs = eventually(
        lambda: owned_by(kube.list(JOBS, namespace)["items"], "CronJob", "every-minute"),
        90,
        "the CronJob's Job (one schedule slot)",
    )
    assert jobs[0]["spec"]["template"]["spec"]["containers"][0]["args"] == ["true"]


def test_rbac_is_enforced_for_users_without_a_role(
    control_plane: ControlPlane, kube: Client, namespace: str
) -> None:
    # Impersonate an unprivileged service account: the admin may, it may not list pods.
    with pytest.raises(Forbidden, match="cannot list resource"):
        kube.request(
            "GET",
            PODS.path(namespace),
            headers={"Impersonate-User": f"system:serviceaccount:{namespace}:default"},
        )


def test_the_dev_cluster_command_starts_prints_and_stops_a_cluster(tmp_path: Path) -> None:
    state = tmp_path / "dev"
    env = dict(os.environ)
    stash = [sys.executable, "-m", "cli.main", "dev-cluster"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*stash, *args, "--dir", str(state)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )

    up = run("up")
    try:
        assert up.returncode == 0, up.stderr
        assert "API server : https://127.0.0.1:" in up.stdout
        exports = run("env")
        assert exports.returncode == 0, exports.stderr
        assert f"export KUBECONFIG={state / 'kubeconfig'}" in exports.stdout
        kubeconfig = yaml.safe_load((state / "kubeconfig").read_text())
        assert kubeconfig["clusters"][0]["cluster"]["server"].startswith("https://127.0.0.1:")
        client = Client.from_kubeconfig(str(state / "kubeconfig"))
        crds = client.resource_type("stash.appscode.com/v1beta1", "BackupBatch")
        assert client.list(crds)["items"] == []
        client.close()
        again = run("up")  # a second `up` reuses the running cluster
        assert "already running" in again.stderr
    finally:
        down = run("down")
    assert down.returncode == 0, down.stderr
    assert not state.exists()
    assert run("env").returncode == 1


def test_a_port_taken_before_the_api_server_binds_it_is_retried_on_fresh_ports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    allocations: list[Ports] = []
    allocate = Ports.allocate

    def first_one_taken() -> Ports:
        ports = allocate()
        if not allocations:
            ports.apiserver = taken
        allocations.append(ports)
        return ports

    monkeypatch.setattr(Ports, "allocate", staticmethod(first_one_taken))
    plane = ControlPlane(tmp_path / "cp", ensure_binaries(), progress=lambda _: None)
    try:
        plane.start()
        assert len(allocations) == 2
        assert plane.ports.apiserver != taken
        assert plane.alive()
    finally:
        plane.stop()
        blocker.close()
