"""A real local Kubernetes cluster: the control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler) and a real node (containerd, runc, a kubelet).

Built from the Go module proxy and cached per version (``devcluster.build``, which also pins
the project's restic), started on free loopback ports with a generated PKI
(``devcluster.cluster``, ``devcluster.node``); used by the test suite's session fixture, by
``stash dev-cluster`` and by ``stash demo``.
"""

from devcluster.build import Binaries, BuildError, Versions, ensure_binaries
from devcluster.cluster import ControlPlane, StartError

__all__ = ["Binaries", "BuildError", "ControlPlane", "StartError", "Versions", "ensure_binaries"]
