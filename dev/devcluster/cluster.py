"""Run etcd, kube-apiserver, kube-controller-manager and kube-scheduler on free loopback ports.

The work directory holds everything of one cluster: ``pki/`` (a CA, serving certs, a
``system:masters`` client certificate, the service-account signing key, the node's kubelet
certificates), ``etcd/`` data, one log per component in ``logs/``, the admin ``kubeconfig`` and
``state.json`` (ports and PIDs, so another process can find and stop the cluster).

The API server listens on loopback only. It reaches kubelets at their node's InternalIP (this
machine's own address, see ``devcluster.node``) and webhook Services at their endpoints'
addresses (``--enable-aggregator-routing``): there is no kube-proxy, and a ClusterIP leads
nowhere (``devcluster.containment`` blackholes the range).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from certs import CertificateAuthority, KeyPair, generate_signing_key
from devcluster.build import Binaries, Versions, cached_binaries

Progress = Callable[[str], None]

SERVICE_CIDR = "10.96.0.0/24"  # only ever an allocation range: blackholed while a node runs
WEBHOOK_CLIENT_CA = "webhook-client-ca.crt"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
# Ports are picked free, then bound by another process a moment later: another program can
# take one in between. Such a start is retried on fresh ports.
START_ATTEMPTS = 3
_PR_SET_PDEATHSIG = 1


class StartError(RuntimeError):
    """A component did not come up; the message carries the end of its log."""

    def __init__(self, message: str, *, port_taken: bool = False) -> None:
        super().__init__(message)
        self.port_taken = port_taken


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # SIGKILL: a throwaway component has nothing to shut down gracefully once its owner is
    # gone, and a kube-apiserver told SIGTERM after etcd died hangs on.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Ports:
    etcd_client: int = 0
    etcd_peer: int = 0
    apiserver: int = 0
    controller_manager: int = 0
    scheduler: int = 0

    @classmethod
    def allocate(cls) -> Ports:
        return cls(free_port(), free_port(), free_port(), free_port(), free_port())


@dataclass
class ControlPlane:
    """One local control plane. ``start()`` blocks until it serves; ``stop()`` ends it."""

    workdir: Path
    binaries: Binaries
    die_with_parent: bool = True
    progress: Progress = print
    ports: Ports = field(default_factory=Ports)
    pids: dict[str, int] = field(default_factory=dict)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    # -- paths ----------------------------------------------------------------------------

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    @property
    def state_file(self) -> Path:
        return self.workdir / "state.json"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 180.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                self._start_once(timeout)
                return
            except StartError as exc:
                if not exc.port_taken or attempt == START_ATTEMPTS:
                    raise
                self.progress("a port was taken meanwhile; starting again on fresh ports")
                for name in COMPONENTS:
                    (self.logs / f"{name}.log").unlink(missing_ok=True)
                shutil.rmtree(self.workdir / "etcd", ignore_errors=True)

    def _start_once(self, timeout: float) -> None:
        self.ports = Ports.allocate()
        self._write_pki()  # the kubeconfigs name the API server's port
        deadline = time.monotonic() + timeout
        try:
            self._spawn("etcd", self._etcd_args())
            self._wait("etcd", deadline, self._etcd_healthy)
            self._spawn("kube-apiserver", self._apiserver_args())
            self._wait("kube-apiserver", deadline, lambda: self._get("/readyz") == 200)
            self._spawn("kube-controller-manager", self._controller_manager_args())
            self._wait(
                "kube-controller-manager",
                deadline,
                lambda: self._get("/api/v1/namespaces/default/serviceaccounts/default") == 200,
            )
            self._spawn("kube-scheduler", self._scheduler_args())
            self._wait("kube-scheduler", deadline, self._scheduler_healthy)
        except BaseException:
            self.stop()
            raise
        self._write_state()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every component (children of this process, or PIDs from ``state.json``)."""
        for name in reversed(COMPONENTS):
            proc = self._procs.pop(name, None)
            if proc is not None:
                _terminate(proc, timeout)
            elif name in self.pids and _is_ours(self.pids[name], name):
                _terminate_pid(self.pids[name], timeout)
        self.pids.clear()
        self.state_file.unlink(missing_ok=True)

    def alive(self) -> bool:
        return (
            all(name in self.pids and _is_ours(self.pids[name], name) for name in COMPONENTS)
            and self._get("/readyz") == 200
        )

    @classmethod
    def attach(cls, workdir: Path, progress: Progress = print) -> ControlPlane:
        """The cluster described by ``workdir/state.json`` (started by another process)."""
        state = json.loads((workdir / "state.json").read_text())
        return cls(
            workdir=workdir,
            binaries=cached_binaries(Versions(**state["versions"])),
            die_with_parent=False,
            progress=progress,
            ports=Ports(**state["ports"]),
            pids={k: int(v) for k, v in state["pids"].items()},
        )

    # -- PKI and kubeconfigs ------------------------------------------------------------------

    def _write_pki(self) -> None:
        self.pki.mkdir(parents=True, exist_ok=True)
        ca = CertificateAuthority.create("stash-dev-cluster-ca")
        _write(self.pki / "ca.crt", ca.cert_pem)
        _write(self.pki / "ca.key", ca.pair.key_pem, secret=True)
        serving = ca.issue(
            "kube-apiserver",
            dns_names=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
            ip_addresses=["127.0.0.1", SERVICE_CIDR.rsplit(".", 1)[0] + ".1"],
        )
        _write(self.pki / "apiserver.crt", serving.cert_pem)
        _write(self.pki / "apiserver.key", serving.key_pem, secret=True)
        admin = ca.issue("stash-admin", organizations=["system:masters"], server=False, client=True)
        _write(self.pki / "admin.crt", admin.cert_pem)
        _write(self.pki / "admin.key", admin.key_pem, secret=True)
        kcm = ca.issue("system:kube-controller-manager", server=False, client=True)
        scheduler = ca.issue("system:kube-scheduler", server=False, client=True)
        # The API server's identity towards kubelets (logs, exec, port-forward).
        kubelet_client = ca.issue(
            "kube-apiserver-kubelet-client",
            organizations=["system:masters"],
            server=False,
            client=True,
        )
        _write(self.pki / "apiserver-kubelet-client.crt", kubelet_client.cert_pem)
        _write(self.pki / "apiserver-kubelet-client.key", kubelet_client.key_pem, secret=True)
        # A front-proxy CA, as kubeadm sets up: aggregated API servers and the controller
        # manager's delegated authentication expect one.
        front = CertificateAuthority.create("stash-dev-front-proxy-ca")
        proxy = front.issue("front-proxy-client", server=False, client=True)
        _write(self.pki / "front-proxy-ca.crt", front.cert_pem)
        _write(self.pki / "front-proxy-client.crt", proxy.cert_pem)
        _write(self.pki / "front-proxy-client.key", proxy.key_pem, secret=True)
        self._write_webhook_client_identity()
        sa = generate_signing_key()
        _write(self.pki / "sa.pub", sa.cert_pem)
        _write(self.pki / "sa.key", sa.key_pem, secret=True)
        _write(self.kubeconfig, self._kubeconfig(ca.cert_pem, admin.cert_pem, admin.key_pem), True)
        _write(
            self.workdir / "controller-manager.kubeconfig",
            self._kubeconfig(ca.cert_pem, kcm.cert_pem, kcm.key_pem),
            secret=True,
        )
        _write(
            self.workdir / "scheduler.kubeconfig",
            self._kubeconfig(ca.cert_pem, scheduler.cert_pem, scheduler.key_pem),
            secret=True,
        )

    def _write_webhook_client_identity(self) -> None:
        """The certificate the API server presents to admission webhooks, from a CA of its
        own, as an administrator configures it (``AdmissionConfiguration``): webhooks that
        require it (``stash webhook --client-ca-file``) answer nobody else."""
        ca = CertificateAuthority.create("stash-dev-webhook-client-ca")
        client = ca.issue("kube-apiserver-webhook-client", server=False, client=True)
        _write(self.pki / WEBHOOK_CLIENT_CA, ca.cert_pem)
        _write(self.pki / "webhook-client.crt", client.cert_pem)
        _write(self.pki / "webhook-client.key", client.key_pem, secret=True)
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            # "*": every webhook this API server calls gets the same client certificate
            "users": [
                {
                    "name": "*",
                    "user": {
                        "client-certificate": str(self.pki / "webhook-client.crt"),
                        "client-key": str(self.pki / "webhook-client.key"),
                    },
                }
            ],
        }
        _write(
            self.pki / "webhook-client.kubeconfig",
            yaml.safe_dump(kubeconfig, sort_keys=False).encode(),
            secret=True,
        )
        plugin = {
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "WebhookAdmissionConfiguration",
            "kubeConfigFile": str(self.pki / "webhook-client.kubeconfig"),
        }
        admission = {
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "AdmissionConfiguration",
            "plugins": [
                {"name": name, "configuration": plugin}
                for name in ("MutatingAdmissionWebhook", "ValidatingAdmissionWebhook")
            ],
        }
        _write(self.pki / "admission.yaml", yaml.safe_dump(admission, sort_keys=False).encode())

    @property
    def webhook_client_ca(self) -> Path:
        """The CA of the certificate this API server presents to webhooks."""
        return self.pki / WEBHOOK_CLIENT_CA

    def webhook_client(self) -> tuple[Path, Path]:
        """Certificate and key the API server presents to webhooks (tests act as it)."""
        return self.pki / "webhook-client.crt", self.pki / "webhook-client.key"

    def kubeconfig_for(self, common_name: str, organizations: list[str], path: Path) -> Path:
        """A kubeconfig for a client certificate issued now by the cluster's CA (a node's)."""
        ca = CertificateAuthority.load(
            KeyPair((self.pki / "ca.crt").read_bytes(), (self.pki / "ca.key").read_bytes())
        )
        pair = ca.issue(common_name, organizations=organizations, server=False, client=True)
        _write(path, self._kubeconfig(ca.cert_pem, pair.cert_pem, pair.key_pem), secret=True)
        return path

    def issue_serving(self, common_name: str, ip_addresses: list[str], directory: Path) -> None:
        """``<name>.crt`` and ``<name>.key`` in ``directory``: a serving pair from the CA."""
        ca = CertificateAuthority.load(
            KeyPair((self.pki / "ca.crt").read_bytes(), (self.pki / "ca.key").read_bytes())
        )
        pair = ca.issue(common_name, dns_names=[common_name], ip_addresses=ip_addresses)
        directory.mkdir(parents=True, exist_ok=True)
        _write(directory / f"{common_name}.crt", pair.cert_pem)
        _write(directory / f"{common_name}.key", pair.key_pem, secret=True)

    def _kubeconfig(self, ca: bytes, cert: bytes, key: bytes) -> bytes:
        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode()

        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "stash-dev",
                    "cluster": {"server": self.server, "certificate-authority-data": b64(ca)},
                }
            ],
            "users": [
                {
                    "name": "stash-dev-admin",
                    "user": {"client-certificate-data": b64(cert), "client-key-data": b64(key)},
                }
            ],
            "contexts": [
                {
                    "name": "stash-dev",
                    "context": {"cluster": "stash-dev", "user": "stash-dev-admin"},
                }
            ],
            "current-context": "stash-dev",
        }
        return yaml.safe_dump(doc, sort_keys=False).encode()

    # -- component command lines ----------------------------------------------------------------

    def _etcd_args(self) -> list[str]:
        client = f"http://127.0.0.1:{self.ports.etcd_client}"
        peer = f"http://127.0.0.1:{self.ports.etcd_peer}"
        return [
            str(self.binaries.etcd),
            "--name=default",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--unsafe-no-fsync=true",  # a throwaway cluster: durability is not worth the latency
            "--log-level=warn",
        ]

    def _apiserver_args(self) -> list[str]:
        pki = self.pki
        return [
            str(self.binaries.kube_apiserver),
            f"--etcd-servers=http://127.0.0.1:{self.ports.etcd_client}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            # The kubernetes Service may not point at loopback; nothing in-cluster needs it here.
            "--endpoint-reconciler-type=none",
            f"--secure-port={self.ports.apiserver}",
            f"--cert-dir={pki / 'apiserver-generated'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # Node: kubelets may read what their own pods use, and nothing else.
            "--authorization-mode=Node,RBAC",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            # Webhook Services are called at their endpoints (host-network pods on this
            # machine's address), never at a ClusterIP: no kube-proxy here.
            "--enable-aggregator-routing=true",
            f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            "--allow-privileged=true",
            "--profiling=false",
            f"--admission-control-config-file={pki / 'admission.yaml'}",
        ]

    def _controller_manager_args(self) -> list[str]:
        pki = self.pki
        kubeconfig = self.workdir / "controller-manager.kubeconfig"
        return [
            str(self.binaries.kube_controller_manager),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports.controller_manager}",
            f"--cert-dir={pki / 'controller-manager-generated'}",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--profiling=false",
        ]

    def _scheduler_args(self) -> list[str]:
        kubeconfig = self.workdir / "scheduler.kubeconfig"
        return [
            str(self.binaries.kube_scheduler),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports.scheduler}",
            f"--cert-dir={self.pki / 'scheduler-generated'}",
            "--leader-elect=false",
            "--profiling=false",
        ]

    def _scheduler_healthy(self) -> bool:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # its self-signed serving cert; /healthz is public
        try:
            conn = http.client.HTTPSConnection(
                "127.0.0.1", self.ports.scheduler, context=ctx, timeout=2
            )
            conn.request("GET", "/healthz")
            status = conn.getresponse().status
            conn.close()
        except OSError:
            return False
        return status == 200

    # -- processes -------------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> None:
        self.progress(f"starting {name}")
        proc = spawn(args, self.logs / f"{name}.log", self.workdir, self.die_with_parent)
        self._procs[name] = proc
        self.pids[name] = proc.pid

    def _wait(self, name: str, deadline: float, ready: Callable[[], bool]) -> None:
        proc = self._procs[name]
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = self._tail(name)
                raise StartError(
                    f"{name} exited with code {proc.returncode}:\n{tail}",
                    port_taken="address already in use" in tail,
                )
            if ready():
                return
            time.sleep(0.2)
        raise StartError(f"{name} was not ready in time:\n{self._tail(name)}")

    def _tail(self, name: str) -> str:
        return log_tail(self.logs / f"{name}.log")

    def _etcd_healthy(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.ports.etcd_client, timeout=2)
            conn.request("GET", "/health")
            body = conn.getresponse().read()
            conn.close()
        except OSError:
            return False
        return b'"health":"true"' in body

    def _get(self, path: str) -> int:
        """GET ``path`` on the API server as the admin; the HTTP status, 0 when unreachable."""
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        try:
            conn = http.client.HTTPSConnection(
                "127.0.0.1", self.ports.apiserver, context=ctx, timeout=5
            )
            conn.request("GET", path)
            status = conn.getresponse().status
            conn.close()
        except OSError:
            return 0
        return status

    def _write_state(self) -> None:
        state: dict[str, Any] = {
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "ports": self.ports.__dict__,
            "pids": self.pids,
            "versions": self.binaries.versions.__dict__,
        }
        _write(self.state_file, json.dumps(state, indent=2).encode())


def spawn(args: list[str], log: Path, cwd: Path, die_with_parent: bool) -> subprocess.Popen[bytes]:
    """A component in its own session, its output appended to ``log``; with
    ``die_with_parent`` it gets SIGTERM when this process dies (tests), else it outlives it."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent else None,  # noqa: PLW1509
        )


def log_tail(path: Path, lines: int = 25) -> str:
    """The end of a component's log, and where the rest is."""
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:]) + f"\n(full log: {path})"


def _write(path: Path, data: bytes, secret: bool = False) -> None:
    path.write_bytes(data)
    if secret:
        path.chmod(0o600)


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _is_ours(pid: int, name: str) -> bool:
    """Is ``pid`` still the component we started (and not a recycled PID)?"""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return name.encode() in cmdline.split(b"\0", 1)[0]


def _terminate_pid(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
