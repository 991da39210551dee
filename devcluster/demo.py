"""``stash demo``: the whole flow of DESIGN.md section 2 on this machine, with one command.

A local control plane, a Pushgateway, the operator and the webhook (self-signed certificates,
registered by URL), and the samples of ``manifests/samples/`` with real data: a Secret, a local
Repository, two Deployments and a PVC, and a BackupBatch over all three. It triggers a session,
runs what a kubelet would run (the sidecars the webhook injected into the Deployments' pods, the
PVC's backup Job), and ends with the session's result, the repository's snapshots and the
Pushgateway's metrics.

There is no kubelet, so pod paths are this machine's paths: the demo points the samples'
paths (the Repository's mountPath, each member's paths) into ``<state>/node/``, where it writes
the data. ``--keep`` leaves everything running; a second run reuses what is running.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from api import constants as c
from api.repository import Repository
from controller.backup_job import SESSION_LABEL
from controller.sessions import create_session
from devcluster import services
from devcluster.cluster import StartError, free_port
from devcluster.local_pods import STASH, Sidecar, run_job
from devcluster.manager import DevCluster
from engine.backend import backend_config
from engine.restic import Restic
from kube import Client, KubeError
from kube.types import BACKUP_BATCHES, BACKUP_SESSIONS, JOBS, NAMESPACES, PODS, REPOSITORIES

JSON = dict[str, Any]
FIELD_MANAGER = "stash-demo"
OPERATOR_NAMESPACE = "stash-system"
SAMPLES = Path(__file__).resolve().parent.parent / "manifests" / "samples"
Say = Callable[[str], None]


class DemoError(RuntimeError):
    """A step of the demo did not happen; says which and where its log is."""


def default_state_dir() -> Path:
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "stash" / "demo"


def localize(objects: list[JSON], node: Path) -> list[JSON]:
    """The samples with pod paths pointed into ``node`` (this machine stands in for the node)."""
    out = []
    for original in objects:
        obj = copy.deepcopy(original)
        spec = obj.get("spec") or {}
        if obj["kind"] == "Repository" and "local" in spec.get("backend", {}):
            local = spec["backend"]["local"]
            local["mountPath"] = str(node / local["mountPath"].lstrip("/"))
        if obj["kind"] == "BackupBatch":
            for member in spec.get("members") or []:
                target = member.setdefault("target", {})
                if member.get("task") and not target.get("volumeMounts"):
                    claim = target["ref"]["name"]
                    target["volumeMounts"] = [{"name": claim, "mountPath": f"/pvc/{claim}"}]
                    target["paths"] = [f"/pvc/{claim}"]
                for mount in target.get("volumeMounts") or []:
                    mount["mountPath"] = str(node / mount["mountPath"].lstrip("/"))
                target["paths"] = [str(node / p.lstrip("/")) for p in target.get("paths") or []]
        out.append(obj)
    return out


def write_sample_data(batch: JSON) -> list[Path]:
    """A few real files in each member's paths (kept between runs, changed a little each run)."""
    written = []
    for member in batch["spec"]["members"]:
        for path in member["target"].get("paths") or []:
            root = Path(path)
            (root / "docs").mkdir(parents=True, exist_ok=True)
            for index in range(20):
                item = root / "docs" / f"page-{index}.html"
                if not item.exists():
                    item.write_bytes(os.urandom(64 * 1024))
            (root / "last-run.txt").write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
            written.append(root)
    return written


@dataclass
class Demo:
    state_dir: Path
    keep: bool = False
    namespace: str = "demo"
    timeout: float = 180.0
    say: Say = print
    _children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    # -- the long-running parts (reused by a second run) -------------------------------------

    @property
    def _pids_file(self) -> Path:
        return self.state_dir / "processes.json"

    def _alive(self, name: str) -> int | None:
        """The port of a process an earlier run left running (0: it serves none), else None."""
        try:
            record = json.loads(self._pids_file.read_text())[name]
        except (OSError, ValueError, KeyError):
            return None
        try:
            os.kill(int(record["pid"]), 0)
        except OSError:
            return None
        port = int(record["port"])
        if port:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) != 0:
                    return None
        return port

    def _record(self, name: str, pid: int, port: int) -> None:
        try:
            records = json.loads(self._pids_file.read_text())
        except (OSError, ValueError):
            records = {}
        records[name] = {"pid": pid, "port": port}
        self._pids_file.write_text(json.dumps(records))

    def _spawn(self, name: str, args: list[str], env: dict[str, str], port: int) -> None:
        log = (self.state_dir / "logs" / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [*STASH, *args],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._children[name] = proc
        self._record(name, proc.pid, port)

    def _pushgateway(self) -> str:
        port = self._alive("pushgateway")
        if port is None:
            service = services.pushgateway(self.state_dir / "logs", detached=True)
            assert service.process is not None  # noqa: S101 - started
            self._record("pushgateway", service.process.pid, service.port)
            port = service.port
        return f"http://127.0.0.1:{port}"

    def _operator(self, kubeconfig: Path, pushgateway: str) -> None:
        if self._alive("operator") is not None:
            return
        args = [
            "operator",
            "--no-leader-elect",
            "--namespace",
            OPERATOR_NAMESPACE,
            "--pushgateway-url",
            pushgateway,
            "--image",
            "stash-py:latest",
        ]
        self._spawn("operator", args, {"KUBECONFIG": str(kubeconfig)}, 0)

    def _webhook(self, kubeconfig: Path, pushgateway: str) -> None:
        if self._alive("webhook") is not None:
            return
        port = free_port()
        certs = self.state_dir / "webhook-certs"
        args = [
            "webhook",
            "--certs",
            "local",
            "--cert-dir",
            str(certs),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--register-url",
            f"https://127.0.0.1:{port}",
            "--namespace",
            OPERATOR_NAMESPACE,
            "--pushgateway-url",
            pushgateway,
        ]
        self._spawn("webhook", args, {"KUBECONFIG": str(kubeconfig)}, port)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self._check_children()
            try:
                context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
                url = f"https://127.0.0.1:{port}/readyz"
                with urllib.request.urlopen(url, context=context, timeout=1):
                    return
            except (OSError, ssl.SSLError):
                time.sleep(0.3)
        raise DemoError(f"the webhook did not become ready: see {self.state_dir}/logs/webhook.log")

    def stop(self) -> None:
        try:
            records = json.loads(self._pids_file.read_text())
        except (OSError, ValueError):
            records = {}
        for record in records.values():
            with contextlib.suppress(OSError):
                os.kill(int(record["pid"]), signal.SIGTERM)
        self._pids_file.unlink(missing_ok=True)

    # -- the flow ------------------------------------------------------------------------------

    def run(self) -> JSON:
        """Run the demo; the finished BackupSession."""
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.say("== 1. a local control plane (etcd, kube-apiserver, kube-controller-manager)")
        plane = DevCluster(self.state_dir / "cluster", progress=lambda m: self.say(f"   {m}")).up()
        kubeconfig = plane.kubeconfig
        client = Client.from_kubeconfig(str(kubeconfig))
        sidecars: list[Sidecar] = []
        try:
            self.say("== 2. the Pushgateway, the operator and the webhook")
            pushgateway = self._pushgateway()
            self._operator(kubeconfig, pushgateway)
            self._webhook(kubeconfig, pushgateway)
            self.say(f"   Pushgateway {pushgateway}; logs in {self.state_dir}/logs/")
            batch = self._apply_samples(client)
            sidecars = self._start_sidecars(client, kubeconfig)
            session = self._back_up(client, kubeconfig, batch["metadata"]["name"])
        finally:
            for sidecar in sidecars:
                sidecar.stop()
            client.close()
        self._summary(session, batch, pushgateway, kubeconfig)
        return session

    def _apply_samples(self, client: Client) -> JSON:
        self.say(f"== 3. the samples of manifests/samples/ in namespace {self.namespace}")
        try:
            client.create(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}}
            )
        except KubeError:
            client.get(NAMESPACES, self.namespace)
        objects = []
        for path in sorted(SAMPLES.glob("*.yaml")):
            objects += [d for d in _load_yaml(path) if d]
        node = self.state_dir / "node"
        objects = localize(objects, node)
        batch = next(o for o in objects if o["kind"] == "BackupBatch")
        for root in write_sample_data(batch):
            self.say(f"   data: {root}")
        for obj in objects:
            obj.setdefault("metadata", {})["namespace"] = self.namespace
            client.apply(obj, field_manager=FIELD_MANAGER)
            self.say(f"   {obj['kind']} {obj['metadata']['name']}")
        name = batch["metadata"]["name"]
        self._wait(
            lambda: _phase(client.get(BACKUP_BATCHES, name, self.namespace)) == "Ready",
            f"BackupBatch {name} to be Ready",
        )
        self.say(f"   BackupBatch {name} is Ready; CronJob stash-trigger-{name} created")
        return client.get(BACKUP_BATCHES, name, self.namespace)

    def _start_sidecars(self, client: Client, kubeconfig: Path) -> list[Sidecar]:
        self.say("== 4. the opted-in Deployments roll; their new pods carry the stash sidecar")
        sidecars = []
        for app in ("web", "api"):
            pod = self._wait(
                lambda app=app: _injected_pod(client, self.namespace, app),  # type: ignore[misc]
                f"a pod of Deployment {app} with the stash sidecar",
            )
            containers = ", ".join(ct["name"] for ct in pod["spec"]["containers"])
            self.say(f"   pod {pod['metadata']['name']}: containers {containers}")
            sidecars.append(
                Sidecar.from_pod(
                    pod,
                    kubeconfig=kubeconfig,
                    local_tmp=self.state_dir / "pods" / pod["metadata"]["name"],
                )
            )
        self.say("   (no kubelet here: the demo runs each stash container's command locally)")
        return sidecars

    def _back_up(self, client: Client, kubeconfig: Path, batch_name: str) -> JSON:
        self.say("== 5. a BackupSession (what the CronJob creates each slot; `stash trigger` now)")
        session = create_session(client, "BackupBatch", batch_name, self.namespace)
        name = session["metadata"]["name"]
        self.say(f"   BackupSession {name}")
        jobs = self._wait(
            lambda: client.list(JOBS, self.namespace, label_selector=f"{SESSION_LABEL}={name}")[
                "items"
            ],
            f"the backup Job of {name}",
        )
        for job in jobs:
            job_name = job["metadata"]["name"]
            self.say(f"   Job {job_name}: running its steps locally")
            for step in run_job(job, kubeconfig, self.state_dir / "pods" / job_name):
                self.say(f"     step {step.name}: exit {step.returncode}")
        last = ""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            self._check_children()
            session = client.get(BACKUP_SESSIONS, name, self.namespace)
            status = session.get("status") or {}
            line = ", ".join(
                f"{t['ref']['kind']}/{t['ref']['name']} {t.get('phase', '?')}"
                for t in status.get("targets") or []
            )
            line = f"   {status.get('phase', 'Pending')}: {line}"
            if line != last:
                self.say(line)
                last = line
            if status.get("phase") in ("Succeeded", "Failed", "Skipped"):
                return session
            time.sleep(1)
        raise DemoError(f"BackupSession {name} did not finish in {self.timeout:.0f}s")

    def _summary(self, session: JSON, batch: JSON, pushgateway: str, kubeconfig: Path) -> None:
        status = session.get("status") or {}
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
        model = Repository.model_validate(repo)
        with Restic(backend_config(model, {"RESTIC_PASSWORD": password})) as restic:
            for snap in restic.snapshots():
                target = next((t for t in snap.tags if t.startswith("target:")), "")
                self.say(
                    f"   {snap.short_id}  {snap.time[:19]}  {snap.hostname:7} "
                    f"{target[7:]:36} {','.join(snap.paths)}"
                )
        self.say("")
        self.say(f"== metrics in the Pushgateway ({pushgateway}/metrics)")
        with urllib.request.urlopen(f"{pushgateway}/metrics", timeout=5) as response:  # noqa: S310
            lines = response.read().decode().splitlines()
        job = f"backupbatch-{self.namespace}-{batch['metadata']['name']}"
        for line in metrics_digest(lines, job):
            self.say(f"   {line}")
        self.say("")
        self.say("== look around")
        self.say(f"   export KUBECONFIG={kubeconfig}")
        self.say(
            f"   kubectl -n {self.namespace} get backupbatches,backupsessions,repositories,jobs"
        )
        self.say(
            f"   kubectl -n {self.namespace} describe backupsession {session['metadata']['name']}"
        )
        self.say(
            f"   .venv/bin/stash snapshots --repository {repo['metadata']['name']} "
            f"--namespace {self.namespace}"
        )
        if not self.keep:
            self.say("   (these need `stash demo --keep`, which leaves it all running)")

    def _check_children(self) -> None:
        """Fail at once, with its last words, when the operator or the webhook died."""
        for name, proc in self._children.items():
            code = proc.poll()
            if code is not None:
                log = self.state_dir / "logs" / f"{name}.log"
                tail = log.read_text(errors="replace").strip().splitlines()[-5:]
                raise DemoError(f"the {name} exited with {code}:\n      " + "\n      ".join(tail))

    def _wait(self, probe: Callable[[], Any], what: str) -> Any:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            self._check_children()
            try:
                found = probe()
            except KubeError:
                found = None
            if found:
                return found
            time.sleep(0.5)
        raise DemoError(f"timed out waiting for {what}; logs in {self.state_dir}/logs/")


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


def _injected_pod(client: Client, namespace: str, app: str) -> JSON | None:
    pods = client.list(PODS, namespace, label_selector=f"app={app}")["items"]
    for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True):
        if pod["metadata"].get("deletionTimestamp"):
            continue
        if any(ct["name"] == c.SIDECAR_CONTAINER for ct in pod["spec"]["containers"]):
            found: JSON = pod
            return found
    return None


def down(state_dir: Path) -> None:
    """Stop what ``--keep`` left running (processes, control plane); the data stays."""
    Demo(state_dir).stop()
    DevCluster(state_dir / "cluster", progress=lambda m: None).down()


def run(state_dir: Path, *, keep: bool, say: Say = print) -> int:
    demo = Demo(state_dir, keep=keep, say=say)
    try:
        session = demo.run()
    except (DemoError, KubeError, StartError) as exc:
        say(f"stash demo: {exc}")
        say(f"   logs: {state_dir}/logs/")
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
        say("   (stopped the operator, webhook, Pushgateway and control plane)")
    ok = (session.get("status") or {}).get("phase") == "Succeeded"
    return 0 if ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run(default_state_dir(), keep="--keep" in sys.argv))
