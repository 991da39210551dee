"""``stash demo``: the whole flow of DESIGN.md section 2 on this machine's real node.

A local cluster (control plane and a node running real pods), the operator installed the way
a user installs it — ``kubectl apply -k`` over ``manifests/`` (or, with ``--install helm``, the
chart ``charts/stash``) with the image just built from the Dockerfile — and the samples of
``manifests/samples/`` with real data: a Secret, a local Repository, two Deployments and a PVC,
and a BackupBatch over all three. The Deployments' new pods carry the injected ``stash``
sidecar, a BackupSession runs (the sidecars and the PVC's backup Job), with the session's
result, the repository's snapshots and the Pushgateway's metrics; then the data is damaged and
a RestoreBatch puts it back (``devcluster.demo_restore``), checked byte for byte, and the demo
ends with ``kubectl get pods``.

What the dev cluster changes, and says so: no registry is reachable, so the samples' nginx and
busybox images are replaced by a local stand-in, and the operator's Pushgateway is reached on
loopback (every pod runs on host networking, ``devcluster.containment``); the node's host paths
(the repository, the PV of the PVC) live under the demo's state directory. ``--keep`` leaves it
all running; a second run reuses it.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from api import constants as c
from api.objects import JSON
from api.repository import Repository
from api.tenancy import HOST_PATH, PRIVILEGES_ANNOTATION
from controller.jobs.member_job import SESSION_LABEL
from devcluster.build import BuildError, use_pinned_restic
from devcluster.cluster import ControlPlane, StartError
from devcluster.demo_restore import RestoreDemo, RestoreDemoError
from devcluster.images import Images
from devcluster.manager import DevCluster
from devcluster.progress import TimedOut, follow, wait_for
from engine.backend import backend_config
from engine.restic import Restic
from kube import Client, KubeError
from kube.sessions import create_session
from kube.types import (
    BACKUP_BATCHES,
    BACKUP_SESSIONS,
    JOBS,
    NAMESPACES,
    PODS,
    REPOSITORIES,
    WEBHOOK_CONFIGS,
)

FIELD_MANAGER = "stash-demo"
OPERATOR_NAMESPACE = "stash"
PROJECT = Path(__file__).resolve().parents[2]  # dev/devcluster/ -> the repository
SAMPLES = PROJECT / "manifests" / "samples"
SAMPLE_IMAGES = ("nginx", "busybox")  # the samples' application images, without a registry
PUSHGATEWAY_PORT = 56789  # the Pushgateway's read-only door, served by the operator
PUSHGATEWAY_LOOPBACK_PORT = 9091  # the Pushgateway itself, on the pod's loopback (its default)
# The operator pod's ports (health, webhook, Pushgateway): on host networking they are this
# machine's, so a second demo cluster's operator pod could not start beside the first's.
OPERATOR_PORTS = (8081, 8443, PUSHGATEWAY_PORT, PUSHGATEWAY_LOOPBACK_PORT)
POD_USER = 65532  # the image's user: what the sidecar and the Jobs write as
Say = Callable[[str], None]


class DemoError(RuntimeError):
    """A step of the demo did not happen; says which and where to look."""


@dataclass(frozen=True)
class Outcome:
    """What the demo ends with: its BackupSession and its RestoreBatch, as they finished."""

    session: JSON
    restore: JSON

    @property
    def succeeded(self) -> bool:
        return all(_phase(o) == "Succeeded" for o in (self.session, self.restore))


def default_state_dir() -> Path:
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "stash" / "demo"


def install_overlay(images: Images, directory: Path, client_ca: Path | None = None) -> Path:
    """A kustomization over ``manifests/`` for this cluster: the image just built, the local
    Pushgateway image and one replica (host networking: a second replica's ports would clash
    on the one node); with ``client_ca`` (the CA of the certificate this cluster's API server
    presents to webhooks) the ``webhook/client-auth`` component, as a hardened install has."""
    directory.mkdir(parents=True, exist_ok=True)
    stash_name, stash_tag = images.stash.name.rsplit(":", 1)
    push_name, push_tag = images.pushgateway.name.rsplit(":", 1)
    image_env = {"name": "STASH_IMAGE", "value": images.stash.name}
    patch = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "stash-operator", "namespace": OPERATOR_NAMESPACE},
        "spec": {
            "replicas": 1,
            # host ports: the new pod cannot start beside the old one on the one node
            "strategy": {"type": "Recreate", "rollingUpdate": None},
            "template": {
                "spec": {
                    "containers": [
                        {"name": "operator", "env": [image_env]},
                        {"name": "webhook", "env": [image_env]},
                    ]
                }
            },
        },
    }
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [os.path.relpath(PROJECT / "manifests", directory)],
        "images": [
            {"name": "stash-py", "newName": stash_name, "newTag": stash_tag},
            {"name": "prom/pushgateway", "newName": push_name, "newTag": push_tag},
        ],
        "patches": [{"patch": yaml.safe_dump(patch, sort_keys=False)}],
    }
    if client_ca is not None:
        shutil.copyfile(client_ca, directory / "client-ca.crt")  # kustomize reads below its root
        kustomization["components"] = [
            os.path.relpath(PROJECT / "manifests" / "webhook" / "client-auth", directory)
        ]
        kustomization["configMapGenerator"] = [
            {
                "name": "stash-webhook-client-ca",
                "namespace": OPERATOR_NAMESPACE,
                "files": ["ca.crt=client-ca.crt"],
            }
        ]
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
    return directory


def install_values(images: Images, directory: Path, client_ca: Path | None = None) -> Path:
    """The chart's values for this cluster (``--install helm``): what ``install_overlay`` changes
    in ``manifests/``, as values of ``charts/stash``."""
    directory.mkdir(parents=True, exist_ok=True)
    stash_name, stash_tag = images.stash.name.rsplit(":", 1)
    values = {
        "image": {"repository": stash_name, "tag": stash_tag},
        "operator": {"replicas": 1, "strategy": {"type": "Recreate"}},
        "pushgateway": {"image": images.pushgateway.name},
    }
    if client_ca is not None:
        values["webhook"] = {"clientCA": client_ca.read_text()}
    path = directory / "values.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def localize(objects: list[JSON], images: Images, node: Path, namespace: str) -> list[JSON]:
    """The samples for this cluster: the stand-in image for the application images, the local
    repository's host path and the PVC's volume under ``node`` (a hostPath PV)."""
    out = []
    for original in objects:
        obj = copy.deepcopy(original)
        obj.setdefault("metadata", {})["namespace"] = namespace
        spec = obj.get("spec") or {}
        if obj["kind"] == "Repository" and "hostPath" in (spec["backend"].get("local") or {}):
            spec["backend"]["local"]["hostPath"]["path"] = str(node / "repository")
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
            for container in spec["template"]["spec"]["containers"]:
                if container["image"].split(":")[0] in SAMPLE_IMAGES:
                    container["image"] = images.app.name
        out.append(obj)
        if obj["kind"] == "PersistentVolumeClaim":
            out.append(_volume_for(obj, node / "volumes" / obj["metadata"]["name"]))
    return out


def _volume_for(claim: JSON, path: Path) -> JSON:
    """A hostPath PersistentVolume bound to ``claim`` (the dev cluster has no provisioner)."""
    meta = claim["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"{meta['namespace']}-{meta['name']}"},
        "spec": {
            "capacity": {"storage": claim["spec"]["resources"]["requests"]["storage"]},
            "accessModes": claim["spec"]["accessModes"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "claimRef": {"namespace": meta["namespace"], "name": meta["name"]},
            "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
        },
    }


def sample_files(root: str) -> str:
    """A shell script that writes a few real files under ``root`` (kept between runs)."""
    return (
        f"mkdir -p {root}/docs && for i in $(seq 0 19); do "
        f"f={root}/docs/page-$i.html; [ -f $f ] || head -c 65536 /dev/urandom > $f; "
        f"done; date -u +%FT%TZ > {root}/last-run.txt"
    )


@dataclass
class Demo:
    state_dir: Path
    keep: bool = False
    namespace: str = "demo"
    timeout: float = 240.0
    say: Say = print
    installer: str = "kustomize"  # or "helm": charts/stash instead of manifests/

    @property
    def cluster(self) -> DevCluster:
        return DevCluster(self.state_dir / "cluster", progress=lambda m: self.say(f"   {m}"))

    # -- the flow ------------------------------------------------------------------------------

    def run(self) -> Outcome:
        """Run the demo; the finished BackupSession and RestoreBatch."""
        self.say("== 1. a local cluster: control plane and a real node (containerd, kubelet)")
        cluster = self.cluster
        plane = cluster.up(crds=False)
        images = cluster.images()
        # The summary's look into the repository runs the image's restic version here too.
        use_pinned_restic(progress=lambda m: self.say(f"   {m}"))
        client = Client.from_kubeconfig(str(plane.kubeconfig))
        try:
            self._install(plane, images, client)
            batch = self._apply_samples(plane, images, client)
            self._show_sidecars(plane, client)
            session = self._back_up(plane, client, batch["metadata"]["name"])
            self._summary(session, batch, plane)
            restore = RestoreDemo(
                client,
                lambda *args: self.kubectl(plane, *args),
                self.namespace,
                self.state_dir / "node" / "volumes" / "shared-data",
                self.say,
                self.timeout,
            ).run()
            self._show_pods(plane)
        finally:
            client.close()
        self._look_around(session, plane)
        return Outcome(session, restore)

    def kubectl(self, plane: ControlPlane, *args: str, check: bool = True) -> str:
        return self._tool(plane, plane.binaries.kubectl, *args, check=check)

    def _tool(
        self,
        plane: ControlPlane,
        binary: Path,
        *args: str,
        check: bool = True,
        timeout: float | None = None,
    ) -> str:
        """Run kubectl or helm on the demo's cluster; its output, or a DemoError in its words."""
        done = subprocess.run(
            [str(binary), f"--kubeconfig={plane.kubeconfig}", *args],
            capture_output=True,
            text=True,
            # `rollout status` waits up to self.timeout itself
            timeout=self.timeout + 30 if timeout is None else timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise DemoError(f"{binary.name} {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def _check_ports(self, client: Client) -> None:
        if self._operator_ready(client) is not None:
            return  # ours, from an earlier run: it holds them
        for port in OPERATOR_PORTS:
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(("0.0.0.0", port))  # noqa: S104 - a probe, closed at once
                except OSError:
                    raise DemoError(
                        f"port {port} of this machine is taken, and the operator's pod runs on "
                        "host networking: is another `stash demo --keep` running? Stop it with "
                        "`stash demo --down` (or free the port)"
                    ) from None

    def _install(self, plane: ControlPlane, images: Images, client: Client) -> None:
        helm = self.installer == "helm"
        how = "helm upgrade --install stash charts/stash" if helm else "kubectl apply -k manifests/"
        self.say(f"== 2. the operator, as a user installs it: {how}")
        self._check_ports(client)
        self.say(f"   image {images.stash.name} (built from the Dockerfile)")
        self.say(
            "   one replica: every pod of the dev cluster runs on host networking, and a second "
            "replica's ports would clash on the one node"
        )
        self.say(
            "   the webhook answers only the API server's client certificate "
            "(manifests/webhook/client-auth)"
        )
        target = self.state_dir / "install"
        if helm:
            self._helm_install(plane, install_values(images, target, plane.webhook_client_ca))
        else:
            overlay = install_overlay(images, target, plane.webhook_client_ca)
            self.kubectl(plane, "apply", "-k", str(overlay))
        self.kubectl(
            plane,
            "rollout",
            "status",
            "deployment/stash-operator",
            "-n",
            OPERATOR_NAMESPACE,
            f"--timeout={self.timeout:.0f}s",
        )
        self._wait(
            lambda: all(
                w.get("clientConfig", {}).get("caBundle")
                for w in client.get(WEBHOOK_CONFIGS, c.WEBHOOK_NAME).get("webhooks") or []
            ),
            "the webhook to register its CA bundle",
        )
        pod = self._operator_ready(client)
        assert pod is not None  # noqa: S101 - just waited for it
        self.say(f"   pod {OPERATOR_NAMESPACE}/{pod['metadata']['name']} Ready (3/3)")

    def _helm_install(self, plane: ControlPlane, values: Path) -> None:
        chart = str(PROJECT / "charts" / "stash")
        out = self._tool(
            plane,
            plane.binaries.helm,
            *("upgrade", "--install", "stash", chart, f"--namespace={OPERATOR_NAMESPACE}"),
            *("--create-namespace", f"--values={values}"),
            timeout=self.timeout,
        ).strip()
        self.say(f"   {out.splitlines()[0] if out else 'installed'}")

    def _operator_ready(self, client: Client) -> JSON | None:
        pods = client.list(
            PODS, OPERATOR_NAMESPACE, label_selector="app.kubernetes.io/component=operator"
        )["items"]
        for pod in pods:
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            if (
                pod["metadata"].get("deletionTimestamp") is None
                and statuses
                and all(s.get("ready") for s in statuses)
            ):
                found: JSON = pod
                return found
        return None

    def _apply_samples(self, plane: ControlPlane, images: Images, client: Client) -> JSON:
        self.say(f"== 3. the samples of manifests/samples/ in namespace {self.namespace}")
        self.say(f"   (no registry: nginx and busybox are replaced by {images.app.name})")
        # The sample Repository keeps its data on the node (hostPath): a cluster admin's
        # decision for the namespace (docs/security.md), which the demo takes as the admin.
        allowed = {"annotations": {PRIVILEGES_ANNOTATION: HOST_PATH}}
        try:
            client.create(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": self.namespace, **allowed},
                }
            )
        except KubeError:
            client.patch(NAMESPACES, self.namespace, {"metadata": allowed})
        self.say(
            f"   namespace {self.namespace}: {PRIVILEGES_ANNOTATION}={HOST_PATH} (as the admin)"
        )
        objects = []
        for path in sorted(SAMPLES.glob("*.yaml")):
            objects += _load_yaml(path)
        node = self.state_dir / "node"
        # The sidecar and the Jobs run as the image's user: the repository is theirs.
        (node / "repository").mkdir(parents=True, exist_ok=True)
        os.chown(node / "repository", POD_USER, POD_USER)
        (node / "repository").chmod(0o700)
        objects = localize(objects, images, node, self.namespace)
        for obj in objects:
            client.apply(obj, field_manager=FIELD_MANAGER)
            self.say(f"   {obj['kind']} {obj['metadata']['name']}")
        pvc_data = node / "volumes" / "shared-data"
        subprocess.run(["sh", "-c", sample_files(str(pvc_data))], check=True)
        # The volume's data is its application's (the image's user here), as in a cluster: the
        # restore Job, running as that user, writes it back.
        for root, dirs, files in os.walk(pvc_data):
            for name in [".", *dirs, *files]:
                os.chown(os.path.join(root, name), POD_USER, POD_USER)
        self.say(f"   data: {pvc_data} (the PVC's volume on the node)")
        batch = next(o for o in objects if o["kind"] == "BackupBatch")
        name = batch["metadata"]["name"]
        self._wait(
            lambda: _phase(client.get(BACKUP_BATCHES, name, self.namespace)) == "Ready",
            f"BackupBatch {name} to be Ready",
        )
        self.say(f"   BackupBatch {name} is Ready; CronJob stash-trigger-{name} created")
        return client.get(BACKUP_BATCHES, name, self.namespace)

    def _show_sidecars(self, plane: ControlPlane, client: Client) -> None:
        self.say("== 4. the opted-in Deployments roll; their new pods carry the stash sidecar")
        for app in ("web", "api"):
            pod = self._wait(
                lambda app=app: _running_with_sidecar(client, self.namespace, app),  # type: ignore[misc]
                f"a Running pod of Deployment {app} with the stash sidecar",
            )
            name = pod["metadata"]["name"]
            containers = ", ".join(ct["name"] for ct in pod["spec"]["containers"])
            app_container = pod["spec"]["containers"][0]
            root = app_container["volumeMounts"][0]["mountPath"]
            self.kubectl(
                plane,
                "exec",
                "-n",
                self.namespace,
                name,
                "-c",
                app_container["name"],
                "--",
                "sh",
                "-c",
                sample_files(root),
            )
            self.say(f"   pod {name}: Running, containers {containers}; data written to {root}")

    def _back_up(self, plane: ControlPlane, client: Client, batch_name: str) -> JSON:
        self.say("== 5. a BackupSession (what the CronJob creates each slot; `stash trigger` now)")
        for _ in range(3):
            session = self._one_session(client, batch_name)
            if (session.get("status") or {}).get("phase") != "Skipped":
                return session
            self.say("   Skipped: another session of the batch (the CronJob's) was running")
            self._wait(
                lambda: (
                    not any(
                        (s.get("status") or {}).get("phase") in ("Pending", "Running", None)
                        for s in client.list(
                            BACKUP_SESSIONS,
                            self.namespace,
                            label_selector=f"{c.INVOKER_NAME_LABEL}={batch_name}",
                        )["items"]
                    )
                ),
                "the other session to end",
            )
            time.sleep(1)  # a new second: the next session's name
        return session

    def _one_session(self, client: Client, batch_name: str) -> JSON:
        session = create_session(client, "BackupBatch", batch_name, self.namespace)
        name = session["metadata"]["name"]
        self.say(f"   BackupSession {name}")
        try:
            return follow(
                self.say,
                self.timeout,
                lambda: client.get(BACKUP_SESSIONS, name, self.namespace),
                lambda: client.list(JOBS, self.namespace, label_selector=f"{SESSION_LABEL}={name}")[
                    "items"
                ],
                entries="targets",
                final=("Succeeded", "Failed", "Skipped"),
            )
        except TimedOut as exc:
            raise DemoError(
                f"BackupSession {name}: {exc}; look with: "
                f"kubectl -n {self.namespace} describe backupsession {name}"
            ) from None

    def _show_pods(self, plane: ControlPlane) -> None:
        self.say("")
        self.say("== kubectl get pods -A")
        for line in self.kubectl(plane, "get", "pods", "-A").splitlines():
            self.say(f"   {line}")

    def _summary(self, session: JSON, batch: JSON, plane: ControlPlane) -> None:
        status = session.get("status") or {}
        kubeconfig = plane.kubeconfig
        self.say("")
        self.say(
            f"== BackupSession {session['metadata']['name']}: {status.get('phase')} "
            f"in {status.get('sessionDuration', '?')}"
        )
        for target in status.get("targets") or []:
            ref = target["ref"]
            self.say(f"   {ref['kind']}/{ref['name']}: {target.get('phase')}")
            for host in target.get("stats") or []:
                snaps = host.get("snapshots") or [{}]
                snap = snaps[0]
                files = (snap.get("fileStats") or {}).get("totalFiles", "?")
                detail = host.get("error") or (
                    f"snapshot {snap.get('name')}, {files} files, {snap.get('totalSize')}, "
                    f"uploaded {snap.get('uploaded')}"
                )
                self.say(f"     {host['hostname']}: {host.get('phase')} ({detail})")
        self._show_repository(batch, kubeconfig)
        self._show_metrics_and_logs(batch, plane)

    def _look_around(self, session: JSON, plane: ControlPlane) -> None:
        kubeconfig = plane.kubeconfig
        self.say("")
        self.say("== look around")
        self.say(f"   export KUBECONFIG={kubeconfig} PATH={plane.binaries.kubectl.parent}:$PATH")
        self.say(
            f"   kubectl -n {self.namespace} get backupbatches,backupsessions,repositories,jobs"
        )
        self.say(f"   kubectl -n {self.namespace} describe restorebatch demo-restore")
        self.say(
            f"   kubectl -n {self.namespace} describe backupsession {session['metadata']['name']}"
        )
        self.say(
            f"   kubectl -n {self.namespace} exec deploy/web -c stash -- stash snapshots "
            f"--repository local-repo --namespace {self.namespace}"
        )
        if not self.keep:
            self.say("   (these need `stash demo --keep`, which leaves it all running)")

    def _show_repository(self, batch: JSON, kubeconfig: Path) -> JSON:
        self.say("")
        self.say("== the repository")
        client = Client.from_kubeconfig(str(kubeconfig))
        try:
            repo = client.get(REPOSITORIES, batch["spec"]["repository"]["name"], self.namespace)
        finally:
            client.close()
        rstatus = repo.get("status") or {}
        self.say(
            f"   {rstatus.get('snapshotCount')} snapshots, {rstatus.get('totalSize')}, "
            f"integrity {'ok' if rstatus.get('integrity') else 'NOT VERIFIED'}"
        )
        password = next(
            o for o in _load_yaml(SAMPLES / "backup-batch.yaml") if o and o["kind"] == "Secret"
        )["stringData"]["RESTIC_PASSWORD"]
        # The repository's volume is a host path of the node: read it from here.
        on_node = copy.deepcopy(repo)
        local = on_node["spec"]["backend"]["local"]
        local["mountPath"] = local["hostPath"]["path"]
        model = Repository.model_validate(on_node)
        with Restic(backend_config(model, {"RESTIC_PASSWORD": password})) as restic:
            for snap in restic.snapshots():
                target = next((t for t in snap.tags if t.startswith("target:")), "")
                self.say(
                    f"   {snap.short_id}  {snap.time[:19]}  {snap.hostname:7} "
                    f"{target[7:]:36} {','.join(snap.paths)}"
                )
        return repo

    def _show_metrics_and_logs(self, batch: JSON, plane: ControlPlane) -> None:
        pushgateway = f"http://127.0.0.1:{PUSHGATEWAY_PORT}"
        self.say("")
        self.say(f"== metrics in the Pushgateway ({pushgateway}/metrics)")
        with urllib.request.urlopen(f"{pushgateway}/metrics", timeout=5) as response:  # noqa: S310
            lines = response.read().decode().splitlines()
        job = f"backupbatch-{self.namespace}-{batch['metadata']['name']}"
        for line in metrics_digest(lines, job):
            self.say(f"   {line}")
        self.say("")
        client = Client.from_kubeconfig(str(plane.kubeconfig))
        try:
            web = _running_with_sidecar(client, self.namespace, "web")
        finally:
            client.close()
        if web:
            pod = web["metadata"]["name"]
            self.say(f"== kubectl -n {self.namespace} logs {pod} -c stash (the last lines)")
            logs = self.kubectl(plane, "logs", "-n", self.namespace, pod, "-c", "stash")
            for line in logs.splitlines()[-4:]:
                self.say(f"   {line[:160]}")
            self.say("")

    def _wait(self, probe: Callable[[], Any], what: str) -> Any:
        try:
            return wait_for(probe, self.timeout, what)
        except TimedOut as exc:
            raise DemoError(f"{exc}; logs in {self.state_dir}/logs/") from None


DIGEST = (
    "stash_backup_session_success",
    "stash_backup_session_duration_seconds",
    "stash_backup_target_success",
    "stash_backup_host_backup_success",
    "stash_backup_host_files_total",
    "stash_repository_snapshot_count",
    "stash_repository_integrity",
)
_SAMPLE = re.compile(r"^(\w+)\{(.*)\} (\S+)$")
_COMMON_LABELS = {"job", "instance", "invoker_kind", "invoker_name", "namespace", "repository"}


def metrics_digest(lines: list[str], job: str) -> list[str]:
    """The main metrics of one invoker's job, with only the labels that tell series apart."""
    out = []
    for line in lines:
        match = _SAMPLE.match(line)
        if match is None or match[1] not in DIGEST:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match[2]))
        if labels.get("job") != job:
            continue
        own = ",".join(f"{k}={v}" for k, v in labels.items() if k not in _COMMON_LABELS)
        out.append(f"{match[1]}{'{' + own + '}' if own else ''} {float(match[3]):g}")
    return sorted(out, key=lambda text: DIGEST.index(text.split("{")[0].split(" ")[0]))


def _load_yaml(path: Path) -> list[JSON]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _phase(obj: JSON) -> str:
    return str((obj.get("status") or {}).get("phase", ""))


def _running_with_sidecar(client: Client, namespace: str, app: str) -> JSON | None:
    """The newest pod of ``app`` that runs, all containers ready, with the stash sidecar."""
    pods = client.list(PODS, namespace, label_selector=f"app={app}")["items"]
    for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True):
        if pod["metadata"].get("deletionTimestamp"):
            continue
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        names = {ct["name"] for ct in pod["spec"]["containers"]}
        if c.SIDECAR_CONTAINER in names and statuses and all(s.get("ready") for s in statuses):
            found: JSON = pod
            return found
    return None


def down(state_dir: Path) -> None:
    """Stop what ``--keep`` left running (the cluster and its pods); the data stays."""
    DevCluster(state_dir / "cluster", progress=lambda m: None).down()


def run(state_dir: Path, *, keep: bool, say: Say = print, installer: str = "kustomize") -> int:
    demo = Demo(state_dir, keep=keep, say=say, installer=installer)
    try:
        outcome = demo.run()
    except (DemoError, RestoreDemoError, KubeError, StartError, BuildError) as exc:
        say(f"stash demo: {exc}")
        say(f"   logs: {state_dir}/cluster/logs/ and kubectl logs")
        if not keep:
            down(state_dir)
        return 1
    except KeyboardInterrupt:
        if not keep:
            down(state_dir)  # the children run in their own sessions: stop them ourselves
        raise
    if keep:
        say("   stash demo --down   # stops it all")
    else:
        down(state_dir)
        say("   (stopped the cluster: its pods, node and control plane)")
    return 0 if outcome.succeeded else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run(default_state_dir(), keep="--keep" in sys.argv))
