"""Running what a kubelet would run, locally: a backup Job's containers one after another, and
the ``stash`` sidecar as a long-running process, each with its pod's environment and with the
pod's ``/tmp`` (the tmp-dir emptyDir) mapped to a local directory.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    """``stash run-backup`` as the webhook would inject it into pod ``pod_name``."""

    def __init__(
        self,
        invoker: JSON,
        kind: str,
        name: str,
        pod_name: str,
        *,
        kubeconfig: Path,
        local_tmp: Path,
        pushgateway_url: str = "",
    ) -> None:
        namespace = invoker["metadata"]["namespace"]
        targets = sidecar_targets_of(invoker)[(namespace, kind, name)]
        plan = plan_for(kind, name, tuple(targets))
        container = build_container(
            plan, SidecarSettings(image="stash-py:test", pushgateway_url=pushgateway_url), []
        )
        local_tmp.mkdir(parents=True, exist_ok=True)
        self.args = [map_tmp(arg, local_tmp) for arg in container["args"]]
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
                [*STASH, *self.args], env=env, stdout=log, stderr=subprocess.STDOUT
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
