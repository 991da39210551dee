"""Helpers for integration tests: waiting, owned objects, a webhook process."""

from __future__ import annotations

import contextlib
import http.client
import os
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from controller.operator import Operator, OperatorOptions
from devcluster.cluster import WEBHOOK_CLIENT_CA, free_port
from kube import Client, NotFound, ResourceType
from kube.types import BACKUP_BATCHES, EVENTS, JOBS, NAMESPACES, PODS
from tests import waiting
from tests.manifests import ROOT, load_all

T = TypeVar("T")
eventually = waiting.eventually  # the integration tests wait with it too


@contextlib.contextmanager
def fresh_namespace(kube: Client, prefix: str) -> Iterator[str]:
    """A new namespace ``<prefix>-<random>``, deleted when the block ends."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    try:
        yield name
    finally:
        kube.delete(NAMESPACES, name, missing_ok=True)


class Impersonating(Client):
    """A client that acts as ``user`` (the admin's credentials, the user's permissions: the
    API server's own impersonation)."""

    def __init__(self, connection: Any, user: str) -> None:
        super().__init__(connection)
        self.user = user

    def _headers(
        self, accept: str, content_type: str | None, extra: dict[str, str] | None = None
    ) -> dict[str, str]:
        return super()._headers(
            accept, content_type, {**(extra or {}), "Impersonate-User": self.user}
        )


@contextlib.contextmanager
def tenant(kube: Client, namespace: str) -> Iterator[Client]:
    """A tenant of ``namespace`` as the trust model has it: a ServiceAccount bound to the
    shipped ``stash-edit`` role (and Kubernetes' ``edit``) there and nothing else, acting
    through impersonation."""
    for doc in load_all(ROOT / "manifests" / "rbac" / "user-roles.yaml"):
        kube.apply(doc, field_manager="stash-tests")
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "tenant", "namespace": namespace},
        },
        field_manager="stash-tests",
    )
    for role in ("stash-edit", "edit"):
        kube.apply(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": f"tenant-{role}", "namespace": namespace},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": role,
                },
                "subjects": [{"kind": "ServiceAccount", "name": "tenant", "namespace": namespace}],
            },
            field_manager="stash-tests",
        )
    client = Impersonating(kube.connection, f"system:serviceaccount:{namespace}:tenant")
    try:
        yield client
    finally:
        client.close()


def exists(kube: Client, rt: ResourceType, namespace: str, name: str) -> bool:
    """Whether the API server has ``name`` of ``rt`` in ``namespace`` now."""
    try:
        kube.get(rt, name, namespace)
    except NotFound:
        return False
    return True


def events_of(kube: Client, namespace: str, name: str) -> list[tuple[str, str]]:
    """(reason, message) of every Event about the object ``name`` in ``namespace``."""
    return [
        (e.get("reason", ""), e.get("message", ""))
        for e in kube.list(EVENTS, namespace)["items"]
        if (e.get("involvedObject") or {}).get("name") == name
    ]


def invoker_ready(
    kube: Client,
    namespace: str,
    name: str,
    timeout: float = 60,
    rt: ResourceType = BACKUP_BATCHES,
) -> None:
    """Wait for BackupBatch (or ``rt``) ``name`` to be Ready; a timeout says what its status
    says."""
    last: dict[str, Any] = {}

    def ready() -> bool:
        nonlocal last
        try:
            last = kube.get(rt, name, namespace).get("status") or {}
        except NotFound:  # not made yet (a generated invoker)
            return False
        return last.get("phase") == "Ready"

    try:
        eventually(ready, timeout, f"{rt.kind} {name} Ready")
    except pytest.fail.Exception:
        problems = [
            f"{cond['type']}={cond['status']}: {cond.get('message', '')}"
            for cond in last.get("conditions") or []
            if cond.get("status") != "True"
        ]
        pytest.fail(f"{rt.kind} {name} is {last.get('phase')!r}: {'; '.join(problems)}")


def owned_by(items: list[dict[str, Any]], kind: str, name: str) -> list[dict[str, Any]]:
    return [
        item
        for item in items
        if any(
            ref["kind"] == kind and ref["name"] == name
            for ref in item["metadata"].get("ownerReferences", [])
        )
    ]


def container_names(pod: dict[str, Any]) -> list[str]:
    return [c["name"] for c in pod["spec"]["containers"]]


@dataclass
class WebhookProcess:
    """``stash webhook`` run as its own process, registered by URL with the API server. By
    default it answers only the API server's client certificate (``--client-ca-file``), as a
    hardened install does; ``request`` then presents that certificate, acting as the API
    server, and ``health_port`` serves the probes and metrics over plain HTTP."""

    port: int
    cert_dir: Path
    log: Path
    process: subprocess.Popen[bytes]
    health_port: int
    client_cert: tuple[Path, Path] | None = None  # what the API server presents

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def ssl_context(self, *, as_apiserver: bool = True) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.cert_dir / "ca.crt"))
        if as_apiserver and self.client_cert is not None:
            context.load_cert_chain(*(str(p) for p in self.client_cert))
        return context

    def probe(self, path: str) -> tuple[int, bytes]:
        """GET ``path`` from the plain-HTTP health port."""
        conn = http.client.HTTPConnection("127.0.0.1", self.health_port, timeout=10)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.ssl_context(), timeout=10
        )
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @classmethod
    def start(
        cls,
        kubeconfig: Path,
        workdir: Path,
        namespace: str = "stash-system",
        *,
        image: str = "stash-py:test",
        log_format: str = "text",
        client_auth: bool = True,
    ) -> WebhookProcess:
        port, health_port = free_port(), free_port()
        cert_dir = workdir / "certs"
        log = workdir / "webhook.log"
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "STASH_LOG_LEVEL": "INFO"}
        command = [
            sys.executable, "-m", "cli.main", "webhook",
            "--certs", "local", "--cert-dir", str(cert_dir),
            "--host", "127.0.0.1", "--port", str(port),
            "--health-port", str(health_port),
            "--register-url", f"https://127.0.0.1:{port}",
            "--namespace", namespace, "--image", image, "--log-format", log_format,
        ]  # fmt: skip
        client_cert = None
        if client_auth:  # the control plane's (devcluster.cluster): beside its kubeconfig
            pki = kubeconfig.parent / "pki"
            command += ["--client-ca-file", str(pki / WEBHOOK_CLIENT_CA)]
            client_cert = (pki / "webhook-client.crt", pki / "webhook-client.key")
        with log.open("wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        hook = cls(port, cert_dir, log, process, health_port, client_cert)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"stash webhook exited:\n{log.read_text()}")
            try:
                if hook.request("GET", "/readyz")[0] == 200:
                    return hook
            except (OSError, ssl.SSLError):
                pass
            time.sleep(0.2)
        hook.stop()
        pytest.fail(f"stash webhook not ready in 60s:\n{log.read_text()}")


def wait_until_injected(
    kube: Client, namespace: str, pod: dict[str, Any], injected: bool = True, timeout: float = 20
) -> dict[str, Any]:
    """Dry-run create ``pod`` until the webhook does (or no longer does) inject the sidecar:
    the webhook's cache has then seen the latest invokers."""

    def probe() -> dict[str, Any] | None:
        result = kube.create(pod, namespace, dry_run=True)
        return result if ("stash" in container_names(result)) == injected else None

    return eventually(probe, timeout, f"the webhook to {'' if injected else 'stop '}inject")


@contextlib.contextmanager
def running_operator(kubeconfig: Path, **options: Any) -> Iterator[Operator]:
    """An operator (no leader election unless asked) on its own client, until the block ends."""
    client = Client.from_kubeconfig(str(kubeconfig))
    # Verification restores each successful session in a Job of its own: only the tests that
    # are about it turn it on (the annotation stash.appscode.com/verify: "true").
    settings: dict[str, Any] = {"image": "stash-py:test", "leader_elect": False}
    settings["verify_backups"] = False
    settings.update(options)
    op = Operator(client, OperatorOptions(**settings))
    stop = threading.Event()
    thread = threading.Thread(target=op.run, args=(stop,), daemon=True)
    thread.start()
    try:
        eventually(op.caches.synced, 30, "the operator's caches")
        yield op
    finally:
        stop.set()
        thread.join(15)
        client.close()


# -- real pods on the dev cluster's node ----------------------------------------------------------


@dataclass
class StepResult:
    """One container of a finished pod: its exit code and its log."""

    name: str
    returncode: int
    output: str


def pod_logs(kube: Client, namespace: str, pod: str, container: str) -> str:
    path = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
    data = kube.request("GET", path, query={"container": container}, accept="*/*", raw=True)
    return bytes(data).decode(errors="replace")


def pod_steps(kube: Client, namespace: str, pod: dict[str, Any]) -> list[StepResult]:
    """The init containers then the containers of a finished pod, as far as they ran."""
    status = pod.get("status") or {}
    statuses = {
        s["name"]: s
        for s in [
            *(status.get("initContainerStatuses") or []),
            *status.get("containerStatuses", []),
        ]
    }
    out = []
    spec = pod["spec"]
    for container in [*(spec.get("initContainers") or []), *spec["containers"]]:
        terminated = (statuses.get(container["name"]) or {}).get("state", {}).get("terminated")
        if terminated is None:
            break
        logs = pod_logs(kube, namespace, pod["metadata"]["name"], container["name"])
        out.append(StepResult(container["name"], int(terminated["exitCode"]), logs))
    return out


def job_steps(kube: Client, namespace: str, job: str, timeout: float = 180) -> list[StepResult]:
    """Wait until Job ``job`` (run by the node) has finished; what each of its steps did."""

    def finished() -> dict[str, Any] | None:
        status = kube.get(JOBS, job, namespace).get("status") or {}
        if not (status.get("completionTime") or status.get("failed")):
            return None
        pods = kube.list(PODS, namespace, label_selector=f"job-name={job}")["items"]
        return pods[0] if pods else None

    return pod_steps(kube, namespace, eventually(finished, timeout, f"Job {job} to finish"))


def run_pod(
    kube: Client, namespace: str, pod: dict[str, Any], timeout: float = 180
) -> list[StepResult]:
    """Create ``pod`` (restartPolicy Never) and wait until it has run to its end."""
    kube.create({"apiVersion": "v1", "kind": "Pod", **pod}, namespace)
    name = pod["metadata"]["name"]

    def ended() -> dict[str, Any] | None:
        got = kube.get(PODS, name, namespace)
        return got if (got.get("status") or {}).get("phase") in ("Succeeded", "Failed") else None

    return pod_steps(kube, namespace, eventually(ended, timeout, f"pod {name} to end"))


POD_USER = 65532  # the project image's user


def give_to_pods(path: Path) -> Path:
    """Make ``path`` (a tree made here as root) the pods' user's, as a repository made by
    the sidecar or a Job would be."""
    os.chown(path, POD_USER, POD_USER)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), POD_USER, POD_USER)
    return path


def shared_dir(path: Path) -> Path:
    """A host directory (a hostPath volume) that the pods' user may write: the image runs as
    65532. Only the directory itself matters: in a container it is the mount point."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path
