"""What a kubelet would run, run locally (there is no kubelet here): a backup Job's containers
one after another, and the ``stash`` sidecar as a long-running process, each the same command
and arguments as in the pod spec, with the pod's environment (downward API values filled in)
and the pod's ``/tmp`` (the tmp-dir emptyDir) mapped to a local directory.

Used by ``stash demo`` and by the integration tests: the pod spec is the contract, and this
proves the command in it works.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.constants import SIDECAR_CONTAINER
from engine.invokers import sidecar_targets_of
from engine.sidecar import SidecarSettings, build_container, plan_for

JSON = dict[str, Any]
STASH = [sys.executable, "-m", "cli.main"]


def map_tmp(arg: str, local_tmp: Path) -> str:
    """``--output-dir=/tmp/output`` -> ``--output-dir=<local_tmp>/output``: what the commands
    keep in the pod's tmp-dir emptyDir (the test's own data lives under /tmp too, untouched)."""
    return re.sub(r"(?<=[=,])/tmp(?=/(?:output|restic-cache)(?:/|$|,))", str(local_tmp), arg)


@dataclass
class StepRun:
    name: str
    returncode: int
    output: str


def run_job(job: JSON, kubeconfig: Path, local_tmp: Path) -> list[StepRun]:
    """The Job's init containers then its container, as the kubelet runs them: a failing step
    stops the pod."""
    pod = job["spec"]["template"]["spec"]
    local_tmp.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "POD_NAME": f"{job['metadata']['name']}-x7k2p",
        "NODE_NAME": "node-1",
        "STASH_LOG_LEVEL": "INFO",
    }
    runs: list[StepRun] = []
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        args = [map_tmp(arg, local_tmp) for arg in container.get("args", [])]
        done = subprocess.run(
            [*STASH, *args], env=env, capture_output=True, text=True, timeout=300, check=False
        )
        runs.append(StepRun(container["name"], done.returncode, done.stdout + done.stderr))
        if done.returncode != 0:
            break
    return runs


class Sidecar:
    """The ``stash`` container of a pod, run as a local process until stopped."""

    def __init__(
        self,
        args: list[str],
        *,
        pod_name: str,
        namespace: str,
        kubeconfig: Path,
        local_tmp: Path,
        detached: bool = False,
    ) -> None:
        local_tmp.mkdir(parents=True, exist_ok=True)
        self.args = [map_tmp(arg, local_tmp) for arg in args]
        self.log_path = local_tmp / f"{pod_name}.log"
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "POD_NAME": pod_name,
            "POD_NAMESPACE": namespace,
            "NODE_NAME": "node-1",
            "STASH_LOG_LEVEL": "INFO",
        }
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [*STASH, *self.args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=detached,
            )

    @classmethod
    def from_pod(cls, pod: JSON, *, kubeconfig: Path, local_tmp: Path) -> Sidecar:
        """The sidecar the webhook injected into ``pod``."""
        container = next(c for c in pod["spec"]["containers"] if c["name"] == SIDECAR_CONTAINER)
        return cls(
            list(container.get("args", [])),
            pod_name=pod["metadata"]["name"],
            namespace=pod["metadata"]["namespace"],
            kubeconfig=kubeconfig,
            local_tmp=local_tmp,
        )

    @classmethod
    def for_invoker(
        cls,
        invoker: JSON,
        kind: str,
        name: str,
        pod_name: str,
        *,
        kubeconfig: Path,
        local_tmp: Path,
        pushgateway_url: str = "",
    ) -> Sidecar:
        """The sidecar the webhook would inject into a pod of workload ``kind``/``name``."""
        namespace = invoker["metadata"]["namespace"]
        targets = sidecar_targets_of(invoker)[(namespace, kind, name)]
        plan = plan_for(kind, name, tuple(targets))
        settings = SidecarSettings(image="stash-py:local", pushgateway_url=pushgateway_url)
        container = build_container(plan, settings, [])
        return cls(
            container["args"],
            pod_name=pod_name,
            namespace=namespace,
            kubeconfig=kubeconfig,
            local_tmp=local_tmp,
        )

    def stop(self) -> str:
        """Stop (SIGTERM, as the kubelet would) and return the sidecar's log."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.log_path.read_text()
