"""A real local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager).

Built from the Go module proxy and cached per version (``devcluster.build``), started on free
loopback ports with a generated PKI (``devcluster.cluster``); used by the test suite's session
fixture and by ``stash dev-cluster``. There is no kubelet or scheduler: pods stay Pending.
"""

from devcluster.build import Binaries, BuildError, Versions, ensure_binaries
from devcluster.cluster import ControlPlane, StartError

__all__ = ["Binaries", "BuildError", "ControlPlane", "StartError", "Versions", "ensure_binaries"]
