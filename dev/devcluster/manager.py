"""``stash dev-cluster``: a long-running local cluster (control plane and a real node) that
outlives the command.

``up`` builds (or reuses) the binaries and images, starts the control plane and the node
detached, installs the CRDs and prints how to use it; ``env`` prints the shell exports; ``down``
stops it and removes everything it made (containers, mounts, cgroups, routes, files).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from api.crd import all_crds
from devcluster.build import Binaries, Versions, ensure_binaries
from devcluster.cluster import ControlPlane, Progress
from devcluster.images import Builder, Images
from devcluster.node import NODE_NAME, Node
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

    def images(self) -> Images:
        return Builder(progress=self.progress).all()

    def running(self) -> ControlPlane | None:
        if not (self.state_dir / "state.json").is_file():
            return None
        plane = ControlPlane.attach(self.state_dir, self.progress)
        if not plane.alive():
            return None
        return plane if Node.attach(plane, progress=self.progress).alive() else None

    def up(self, *, crds: bool = True) -> ControlPlane:
        plane = self.running()
        images = self.images()
        if plane is not None:
            self.progress(f"already running at {plane.server}")
            node = Node.attach(plane, images, self.progress)
            node.import_images()  # the project's image may have been rebuilt meanwhile
        else:
            if self.state_dir.exists():
                self.progress("found a stopped or broken cluster: cleaning it up")
                self.down()
            shutil.rmtree(self.state_dir, ignore_errors=True)
            plane = ControlPlane(
                self.state_dir, self._binaries(), die_with_parent=False, progress=self.progress
            )
            plane.start()
            try:
                Node(plane, images, progress=self.progress, die_with_parent=False).start()
            except BaseException:
                plane.stop()
                raise
        if crds:
            self.progress("installing the stash.appscode.com CRDs")
            install_stash_crds(plane.kubeconfig)
        return plane

    def down(self) -> bool:
        """Stop the cluster and delete its files; False when there was none."""
        if not self.state_dir.exists():
            return False
        if (self.state_dir / "state.json").is_file():
            plane = ControlPlane.attach(self.state_dir, self.progress)
            Node.attach(plane, progress=self.progress).stop()
            plane.stop()
        shutil.rmtree(self.state_dir, ignore_errors=True)
        return True

    def env(self, plane: ControlPlane) -> str:
        return (
            f"export KUBECONFIG={plane.kubeconfig}\n"
            f'export PATH="{plane.binaries.kubectl.parent}:$PATH"\n'
        )

    def describe(self, plane: ControlPlane) -> str:
        versions = plane.binaries.versions
        images = "".join(f"    {image.name}\n" for image in self.images().all())
        return (
            "Local cluster running "
            f"(Kubernetes {versions.kubernetes}, etcd {versions.etcd})\n"
            f"  API server : {plane.server}\n"
            f"  node       : {NODE_NAME} (containerd, runc, kubelet; pods on host networking)\n"
            f"  kubeconfig : {plane.kubeconfig}\n"
            f"  logs       : {plane.logs}\n"
            f"\nUse it:\n"
            f'  eval "$(stash dev-cluster env)"\n'
            f"  kubectl get crds,namespaces\n"
            f"\nStop it:\n"
            f"  stash dev-cluster down\n"
            "\nPods run for real, on host networking. No registry is reachable: every pod gets\n"
            f"imagePullPolicy Never, and the node has these images, built here:\n{images}"
        )
