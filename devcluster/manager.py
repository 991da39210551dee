"""``stash dev-cluster``: a long-running local control plane that outlives the command.

``up`` builds (or reuses) the binaries, starts the control plane detached, installs the CRDs and
prints how to use it; ``env`` prints the shell exports; ``down`` stops it and removes its files.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from api.crd import all_crds
from devcluster.build import Binaries, Versions, ensure_binaries
from devcluster.cluster import ControlPlane, Progress
from kube import Client
from kube.crds import install_crds

FIELD_MANAGER = "stash-dev-cluster"


def default_state_dir() -> Path:
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "stash" / "dev-cluster"


def install_stash_crds(kubeconfig: Path) -> None:
    client = Client.from_kubeconfig(str(kubeconfig))
    try:
        install_crds(client, all_crds(), field_manager=FIELD_MANAGER)
    finally:
        client.close()


@dataclass
class DevCluster:
    state_dir: Path
    progress: Progress = print

    def _binaries(self) -> Binaries:
        return ensure_binaries(Versions.from_environment(), progress=self.progress)

    def running(self) -> ControlPlane | None:
        if not (self.state_dir / "state.json").is_file():
            return None
        plane = ControlPlane.attach(self.state_dir, self.progress)
        return plane if plane.alive() else None

    def up(self, *, crds: bool = True) -> ControlPlane:
        plane = self.running()
        if plane is not None:
            self.progress(f"already running at {plane.server}")
        else:
            if (self.state_dir / "state.json").is_file():
                self.progress("found a stopped or broken cluster: cleaning it up")
                self.down()
            shutil.rmtree(self.state_dir, ignore_errors=True)
            plane = ControlPlane(
                self.state_dir, self._binaries(), die_with_parent=False, progress=self.progress
            )
            plane.start()
        if crds:
            self.progress("installing the stash.appscode.com CRDs")
            install_stash_crds(plane.kubeconfig)
        return plane

    def down(self) -> bool:
        """Stop the cluster and delete its files; False when there was none."""
        if not self.state_dir.exists():
            return False
        if (self.state_dir / "state.json").is_file():
            ControlPlane.attach(self.state_dir, self.progress).stop()
        shutil.rmtree(self.state_dir, ignore_errors=True)
        return True

    def env(self, plane: ControlPlane) -> str:
        return (
            f"export KUBECONFIG={plane.kubeconfig}\n"
            f'export PATH="{plane.binaries.kubectl.parent}:$PATH"\n'
        )

    def describe(self, plane: ControlPlane) -> str:
        versions = plane.binaries.versions
        return (
            "Local control plane running "
            f"(Kubernetes {versions.kubernetes}, etcd {versions.etcd})\n"
            f"  API server : {plane.server}\n"
            f"  kubeconfig : {plane.kubeconfig}\n"
            f"  logs       : {plane.logs}\n"
            f"\nUse it:\n"
            f'  eval "$(stash dev-cluster env)"\n'
            f"  kubectl get crds,namespaces\n"
            f"\nStop it:\n"
            f"  stash dev-cluster down\n"
            f"\n(No kubelet or scheduler runs here: pods are created but stay Pending.)\n"
        )
