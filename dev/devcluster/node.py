"""The dev cluster's real node: containerd + runc, the CNI plugins and a kubelet.

Everything of one node lives in its work directory, ``/var/lib/stash-dev/<id>`` (containerd's
root, state and socket, the kubelet's root, pod logs, certificates; linked from the cluster's
directory as ``node``) and under its own cgroup root
(``/stash-dev-<id>``), so two dev clusters on one machine never share state. The node registers
with this machine's own interface address as its InternalIP (a kubelet refuses loopback); its
pods run with host networking (``devcluster.containment``), so everything they reach is local.

``stop`` removes everything the node made: the containers (every process in its cgroups and
its shims), mounts under its work directory, its cgroups, its blackhole routes and bridge. A
record of each running node is kept in ``/run/stash-dev/nodes/``; ``clean_leftovers`` (called by
every start) cleans the nodes of runs that were killed before they could stop.

Facts of this kind of machine (cgroup v1, no CAP_SYS_RESOURCE, no registry) and the settings
that get round them are in ``shared/notes/real-node.md``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from api.objects import JSON
from devcluster import containment
from devcluster.cluster import ControlPlane, StartError, _is_ours, log_tail, spawn
from devcluster.images import Images
from kube import Client, KubeError
from kube.types import NODES

Progress = Callable[[str], None]

NODE_NAME = "stash-dev-node"
FIELD_MANAGER = "stash-dev-cluster"
REGISTRY = Path("/run/stash-dev/nodes")
NODES_ROOT = Path("/var/lib/stash-dev")
CNI_BIN = Path("/usr/lib/cni")
READY_TIMEOUT = 120.0


class NodeError(StartError):
    """The node could not start; the message says which part and where its log is."""


def node_address() -> str:
    """This machine's own address for the node: $STASH_DEV_NODE_IP, else the first global
    IPv4 address of an interface that is up (``ip -j addr``: no packet is sent)."""
    explicit = os.environ.get("STASH_DEV_NODE_IP")
    if explicit:
        return explicit
    done = subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True, check=False)
    for link in json.loads(done.stdout or "[]"):
        if link.get("operstate") not in ("UP", "UNKNOWN") or link.get("ifname") == "lo":
            continue
        for info in link.get("addr_info") or []:
            if info.get("scope") == "global" and info.get("local"):
                return str(info["local"])
    raise NodeError(
        "no global IPv4 address on this machine for the node (a kubelet refuses loopback); "
        "set STASH_DEV_NODE_IP to one of this machine's own addresses"
    )


@dataclass
class NodeRecord:
    """What ``stop`` (or a later start's cleanup) needs to remove a node."""

    node_id: str
    workdir: str
    cgroup_root: str
    route_metric: int
    bridge: str
    containerd_socket: str
    owner_pid: int
    pids: dict[str, int] = field(default_factory=dict)
    cluster_dir: str = ""

    @property
    def path(self) -> Path:
        return REGISTRY / f"{self.node_id}.json"

    def save(self) -> None:
        REGISTRY.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> NodeRecord:
        return cls(**json.loads(path.read_text()))


@dataclass
class Node:
    """One node of ``plane``. ``start()`` returns once the node is Ready with the images
    imported; ``stop()`` removes everything it made."""

    plane: ControlPlane
    images: Images | None  # None: attached only to stop it
    progress: Progress = print
    die_with_parent: bool = True
    name: str = NODE_NAME
    address: str = ""
    record: NodeRecord | None = None
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    @property
    def workdir(self) -> Path:
        """The node's state, on a short path of its own: unix sockets under it (the kubelet's,
        containerd's) may not exceed ~104 bytes, which a cluster under pytest's tmp tree would.
        The cluster's directory links to it as ``node``."""
        assert self.record is not None  # noqa: S101 - set by start() or attach()
        return Path(self.record.workdir)

    @property
    def logs(self) -> Path:
        return self.plane.logs

    @property
    def socket(self) -> Path:
        return self.workdir / "containerd.sock"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        clean_leftovers(self.progress)
        self.address = self.address or node_address()
        node_id = f"{os.getpid()}-{int(time.time() * 1000) % 10**8}"
        self.record = NodeRecord(
            node_id=node_id,
            cluster_dir=str(self.plane.workdir),
            workdir=str(NODES_ROOT / node_id),
            cgroup_root=f"/stash-dev-{node_id}",
            route_metric=_unused_metric(),
            bridge=f"sd{node_id.replace('-', '')[-12:]}",
            containerd_socket=str(NODES_ROOT / node_id / "containerd.sock"),
            owner_pid=os.getpid(),
        )
        self.record.save()
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            link = self.plane.workdir / "node"
            link.unlink(missing_ok=True)
            link.symlink_to(self.workdir)
            containment.add_blackholes(self.record.route_metric)
            self._install_policies()
            self._start_containerd()
            self.import_images()
            self._start_kubelet()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the kubelet and containerd and remove every trace of the node."""
        for name in ("kubelet", "containerd"):
            proc = self._procs.pop(name, None)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self.record is not None:
            remove_node(self.record)
            self.record = None

    @classmethod
    def attach(
        cls, plane: ControlPlane, images: Images | None = None, progress: Progress = print
    ) -> Node:
        """The node of ``plane`` started by another process (found in the registry)."""
        node = cls(plane, images, progress=progress, die_with_parent=False)
        node.record = next((r for r in _records() if r.cluster_dir == str(plane.workdir)), None)
        return node

    def alive(self) -> bool:
        if self.record is None:
            return False
        return all(_is_ours(pid, name) for name, pid in self.record.pids.items())

    # -- containment -------------------------------------------------------------------------

    def _install_policies(self) -> None:
        """The admission policies of ``devcluster.containment``, in force before any pod can
        reach the node: a dry-run pod must come back on host networking."""
        client = Client.from_kubeconfig(str(self.plane.kubeconfig))
        probe = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "stash-dev-containment-probe"},
            "spec": {
                "initContainers": [{"name": "init", "image": self._images.app.name}],
                "containers": [{"name": "probe", "image": self._images.app.name}],
            },
        }
        try:
            for policy in containment.admission_policies(self.plane.ports.apiserver):
                client.apply(policy, field_manager=FIELD_MANAGER)
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(KubeError):
                    admitted = client.create(probe, "default", dry_run=True)
                    if containment.contained(admitted, self.plane.ports.apiserver):
                        return
                if time.monotonic() > deadline:
                    raise NodeError(
                        "the dev cluster's admission policies did not take effect: a pod "
                        "would run without host networking (devcluster.containment)"
                    )
                time.sleep(0.2)
        finally:
            client.close()

    # -- containerd ----------------------------------------------------------------------------

    def _containerd_config(self) -> str:
        base = self.workdir / "containerd"
        cni = self.workdir / "cni"
        assert self.record is not None  # noqa: S101 - set by start()
        (cni / "net.d").mkdir(parents=True, exist_ok=True)
        # Every pod uses host networking; the CNI config is there because the kubelet reports
        # the node NotReady without one. No gateway, no masquerade: a bridged pod (which the
        # admission policies make impossible) would reach nothing outside the bridge.
        conflist = {
            "cniVersion": "0.4.0",
            "name": "stash-dev",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.record.bridge,
                    "isGateway": False,
                    "ipMasq": False,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": containment.POD_CIDR}]],
                        "dataDir": str(cni / "ipam"),
                    },
                },
                {"type": "loopback"},
            ],
        }
        (cni / "net.d" / "10-stash-dev.conflist").write_text(json.dumps(conflist, indent=2))
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        return f"""version = 2
root = "{base / "root"}"
state = "{base / "state"}"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "{self.socket}"

[ttrpc]
  address = "{self.socket}.ttrpc"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{base / "opt"}"

[{cri}]
  sandbox_image = "{self._images.pause.name}"
  # No CAP_SYS_RESOURCE on this kind of machine: lowering oom_score_adj fails every sandbox.
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false

[{cri}.cni]
  bin_dir = "{CNI_BIN}"
  conf_dir = "{cni / "net.d"}"
"""

    def _start_containerd(self) -> None:
        binary = shutil.which("containerd")
        if binary is None or not (CNI_BIN / "bridge").is_file() or not shutil.which("runc"):
            raise NodeError(
                "containerd, runc and the CNI plugins are needed for the node: apt-get install "
                "containerd runc containernetworking-plugins (scripts/setup does)"
            )
        config = self.workdir / "containerd" / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(self._containerd_config())
        self._spawn("containerd", [binary, "--config", str(config), "--log-level", "warn"])
        deadline = time.monotonic() + 30
        while not self._ctr_ok():
            self._check("containerd")
            if time.monotonic() > deadline:
                raise NodeError(f"containerd did not answer in time:\n{self._tail('containerd')}")
            time.sleep(0.2)

    def ctr(self, *args: str, timeout: float = 300) -> str:
        """``ctr`` on this node's containerd, in the CRI's namespace."""
        done = subprocess.run(
            ["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise NodeError(f"ctr {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def _ctr_ok(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            self.ctr("version", timeout=5)
        except (NodeError, subprocess.TimeoutExpired):
            return False
        return True

    @property
    def _images(self) -> Images:
        if self.images is None:
            raise NodeError("the node was attached without images: it can only be stopped")
        return self.images

    def import_images(self) -> None:
        present = set(self.ctr("images", "list", "--quiet").split())
        for image in self._images.all():
            if image.name in present:
                continue
            self.progress(f"importing {image.name} into the node's containerd")
            # The archive names the image; --no-unpack=false unpacks it for the snapshotter.
            self.ctr("images", "import", "--digests", str(image.archive))

    # -- the kubelet -------------------------------------------------------------------------------

    def _kubelet_config(self, port: int, healthz_port: int) -> JSON:
        assert self.record is not None  # noqa: S101 - set by start()
        pki = self.workdir / "pki"
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.address,
            "port": port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz_port,
            "tlsCertFile": str(pki / f"{self.name}.crt"),
            "tlsPrivateKeyFile": str(pki / f"{self.name}.key"),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(self.plane.pki / "ca.crt")},
            },
            # Only holders of the cluster CA's client certificates reach it at all (the API
            # server); a dev node needs no finer authorization.
            "authorization": {"mode": "AlwaysAllow"},
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "imageServiceEndpoint": f"unix://{self.socket}",
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.record.cgroup_root,
            "failCgroupV1": False,
            "failSwapOn": False,
            "podLogsDir": str(self.workdir / "pod-logs"),
            "resolvConf": "/etc/resolv.conf",
            "clusterDomain": "cluster.local",
            "makeIPTablesUtilChains": False,
            "protectKernelDefaults": False,
            "serializeImagePulls": False,
            # Images cannot be pulled again here: never garbage-collect them, never evict.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "50Mi",
                "nodefs.available": "1%",
                "nodefs.inodesFree": "1%",
                "imagefs.available": "1%",
            },
            "registerNode": True,
            "maxPods": 110,
            "shutdownGracePeriod": "0s",
        }

    def _make_cgroup_root(self) -> None:
        """The kubelet wants its cgroup root to exist in every hierarchy; a v1 cpuset cgroup
        takes no process until it has CPUs and memory nodes (copied from the top)."""
        assert self.record is not None  # noqa: S101 - set by start()
        for mount in _cgroup_mounts():
            path = mount / self.record.cgroup_root.lstrip("/")
            path.mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if (mount / name).is_file() and (path / name).is_file():
                    (path / name).write_text((mount / name).read_text())

    def _start_kubelet(self) -> None:
        self._make_cgroup_root()
        pki = self.workdir / "pki"
        self.plane.issue_serving(self.name, [self.address, "127.0.0.1"], pki)
        kubeconfig = self.plane.kubeconfig_for(
            f"system:node:{self.name}", ["system:nodes"], self.workdir / "kubelet.kubeconfig"
        )
        config = self.workdir / "kubelet.yaml"
        config.write_text(yaml.safe_dump(self._kubelet_config(_free_port_on(self.address), 0)))
        self._spawn(
            "kubelet",
            [
                str(self.plane.binaries.kubelet),
                f"--config={config}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.workdir / 'kubelet'}",
                f"--cert-dir={pki}",
                f"--hostname-override={self.name}",
                f"--node-ip={self.address}",
                "--v=1",
            ],
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        self.progress(f"waiting for node {self.name} ({self.address}) to be Ready")
        while time.monotonic() < deadline:
            self._check("kubelet")
            self._check("containerd")
            if self._ready():
                self.progress(f"node {self.name} is Ready")
                return
            time.sleep(0.5)
        raise NodeError(f"node {self.name} was not Ready in time:\n{self._tail('kubelet')}")

    def _ready(self) -> bool:
        client = Client.from_kubeconfig(str(self.plane.kubeconfig))
        try:
            node = client.get(NODES, self.name)
        except KubeError:
            return False
        finally:
            client.close()
        conditions = (node.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    # -- processes -------------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> None:
        self.progress(f"starting {name}")
        proc = spawn(args, self.logs / f"{name}.log", self.workdir, self.die_with_parent)
        self._procs[name] = proc
        assert self.record is not None  # noqa: S101 - set by start()
        self.record.pids[name] = proc.pid
        self.record.save()

    def _check(self, name: str) -> None:
        proc = self._procs.get(name)
        if proc is not None and proc.poll() is not None:
            raise NodeError(f"{name} exited with code {proc.returncode}:\n{self._tail(name)}")

    def _tail(self, name: str) -> str:
        return log_tail(self.logs / f"{name}.log")


# -- removing a node ----------------------------------------------------------------------------


def _records() -> list[NodeRecord]:
    out = []
    for path in sorted(REGISTRY.glob("*.json")) if REGISTRY.is_dir() else []:
        with contextlib.suppress(OSError, ValueError, TypeError):
            out.append(NodeRecord.load(path))
    return out


def _unused_metric() -> int:
    """A route metric no other node of this machine uses (each removes only its own)."""
    taken = {record.route_metric for record in _records()}
    return next(m for m in range(4242, 4242 + 1000) if m not in taken)


def _free_port_on(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


def _cgroup_mounts() -> list[Path]:
    """Every cgroup (v1 hierarchies and v2) mount point of this machine."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        fstype = fields[fields.index("-") + 1]
        if fstype in ("cgroup", "cgroup2"):
            out.append(Path(fields[4]))
    return out


def _cgroup_dirs(cgroup_root: str) -> list[Path]:
    """The node's cgroups, deepest first, in every hierarchy."""
    found: list[Path] = []
    for mount in _cgroup_mounts():
        top = mount / cgroup_root.lstrip("/")
        if top.is_dir():
            found += [Path(d) for d, _, _ in os.walk(top)]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _kill_cgroup_processes(cgroup_root: str) -> None:
    for _ in range(50):
        pids = set()
        for directory in _cgroup_dirs(cgroup_root):
            with contextlib.suppress(OSError):
                pids |= {int(p) for p in (directory / "cgroup.procs").read_text().split()}
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def _kill_shims(containerd_socket: str) -> None:
    """containerd's shims of this node: started by it, outliving it when it is killed."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"containerd-shim" in cmdline[0] and containerd_socket.encode() in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)


def _unmount_under(root: str) -> None:
    """Unmount everything mounted under ``root`` (pod volumes, container rootfs), deepest
    first; lazily when busy."""
    for _ in range(3):
        points = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point == root or point.startswith(root.rstrip("/") + "/"):
                points.append(point)
        if not points:
            return
        for point in sorted(points, key=len, reverse=True):
            done = subprocess.run(["umount", point], capture_output=True, check=False)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def remove_node(record: NodeRecord) -> None:
    """Remove a node's containers, shims, mounts, cgroups, routes, bridge and files."""
    for name, pid in record.pids.items():
        if _is_ours(pid, name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    _kill_cgroup_processes(record.cgroup_root)
    _kill_shims(record.containerd_socket)
    _unmount_under(record.workdir)
    for directory in _cgroup_dirs(record.cgroup_root):
        with contextlib.suppress(OSError):
            directory.rmdir()
    containment.remove_blackholes(record.route_metric)
    subprocess.run(["ip", "link", "delete", record.bridge], capture_output=True, check=False)
    shutil.rmtree(record.workdir, ignore_errors=True)
    with contextlib.suppress(OSError):
        (Path(record.cluster_dir) / "node").unlink(missing_ok=True)
    record.path.unlink(missing_ok=True)


def clean_leftovers(progress: Progress = print) -> None:
    """Remove the nodes of runs that ended without stopping them (killed)."""
    for record in _records():
        if any(_is_ours(pid, name) for name, pid in record.pids.items()):
            continue  # a node that still runs (another dev cluster, or `dev-cluster up`'s)
        progress(f"cleaning up the node of an earlier run that did not stop ({record.workdir})")
        remove_node(record)
