"""The demo's restore: damage what was backed up, restore it declaratively, prove it is back.

Files are deleted in Deployment web's volume (in its running pod) and in the PVC's volume (on
the node); then the sample RestoreBatch (``manifests/samples/restore/restore-batch.yaml``) is
applied. The operator rolls web, whose new pod gets ``stash-init`` and restores its pages before
nginx starts, and runs a ``pvc-restore`` Job for the PVC. The demo follows the RestoreBatch's
phase, prints each member's hosts, and compares every file's SHA-256 with what was there when it
was backed up. A second demo run restores again (the RestoreBatch is made anew).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from api import constants as c
from api.objects import JSON
from devcluster.progress import TimedOut, follow, wait_for
from kube import Client, NotFound
from kube.types import JOBS, PODS, RESTORE_BATCHES

Say = Callable[[str], None]
Kubectl = Callable[..., str]
SAMPLE = (
    Path(__file__).resolve().parents[2] / "manifests" / "samples" / "restore" / "restore-batch.yaml"
)
WEB_ROOT = "/usr/share/nginx/html"
CHECKSUMS = "cd {root} && find . -type f | sort | xargs sha256sum"


class RestoreDemoError(RuntimeError):
    """The restore did not happen, or the data is not what was backed up; says which."""


def checksums_of(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``root``."""
    return {
        "./" + str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def parse_checksums(text: str) -> dict[str, str]:
    """``sha256sum`` output as relative path -> digest."""
    out = {}
    for line in text.splitlines():
        digest, _, path = line.strip().partition("  ")
        if path:
            out[path] = digest
    return out


@dataclass
class RestoreDemo:
    client: Client
    kubectl: Kubectl
    namespace: str
    pvc_root: Path
    say: Say
    timeout: float = 240.0

    def run(self) -> JSON:
        """Damage, restore, verify; the finished RestoreBatch."""
        self.say("== 6. damage the data, then restore it declaratively (a RestoreBatch)")
        pod = self._web_pod(lambda p: True)
        before_web = self._pod_checksums(pod)
        before_pvc = checksums_of(self.pvc_root)
        app = pod["spec"]["containers"][0]["name"]
        name = pod["metadata"]["name"]
        self.kubectl(
            "exec", "-n", self.namespace, name, "-c", app, "--", "rm", "-rf", f"{WEB_ROOT}/docs"
        )
        shutil.rmtree(self.pvc_root / "docs")
        left = len(self._pod_checksums(pod))
        self.say(
            f"   deleted {len(before_web) - left} of {len(before_web)} files in pod "
            f"{pod['metadata']['name']} ({WEB_ROOT}) and "
            f"{len(before_pvc) - len(checksums_of(self.pvc_root))} of {len(before_pvc)} in the "
            "PVC's volume"
        )
        batch = self._apply()
        finished = self._follow(batch["metadata"]["name"])
        self._report(finished)
        if finished["status"].get("phase") != "Succeeded":
            raise RestoreDemoError(
                f"RestoreBatch {batch['metadata']['name']} {finished['status'].get('phase')}; "
                f"look with: kubectl -n {self.namespace} describe restorebatch "
                f"{batch['metadata']['name']}"
            )
        restored_pod = self._web_pod(
            lambda p: (
                c.RESTORE_INIT_CONTAINER
                in [ct["name"] for ct in p["spec"].get("initContainers") or []]
            )
        )
        self._verify(
            f"Deployment web (pod {restored_pod['metadata']['name']}, restored by stash-init)",
            before_web,
            self._pod_checksums(restored_pod),
        )
        self._verify("PVC shared-data", before_pvc, checksums_of(self.pvc_root))
        return finished

    # -- steps ---------------------------------------------------------------------------------

    def _apply(self) -> JSON:
        (doc,) = [d for d in yaml.safe_load_all(SAMPLE.read_text()) if d]
        doc["metadata"]["namespace"] = self.namespace
        name = doc["metadata"]["name"]
        try:  # a RestoreBatch runs once: an earlier run's is made anew
            self.client.delete(RESTORE_BATCHES, name, self.namespace)
            self._wait(lambda: not self._exists(name), f"the earlier RestoreBatch {name} to go")
        except NotFound:
            pass
        created = self.client.create(doc)
        self.say(
            f"   kubectl apply -f {SAMPLE.relative_to(SAMPLE.parents[3])}: RestoreBatch {name}"
        )
        return created

    def _exists(self, name: str) -> bool:
        try:
            self.client.get(RESTORE_BATCHES, name, self.namespace)
        except NotFound:
            return False
        return True

    def _follow(self, name: str) -> JSON:
        try:
            return follow(
                self.say,
                self.timeout,
                lambda: self.client.get(RESTORE_BATCHES, name, self.namespace),
                lambda: self._jobs(name),
                entries="members",
                final=("Succeeded", "Failed", "Invalid"),
            )
        except TimedOut as exc:
            raise RestoreDemoError(
                f"RestoreBatch {name}: {exc}; look with: "
                f"kubectl -n {self.namespace} describe restorebatch {name}"
            ) from None

    def _jobs(self, name: str) -> list[JSON]:
        return [
            j
            for j in self.client.list(JOBS, self.namespace)["items"]
            if j["metadata"]["name"].startswith(f"stash-restore-{name}-")
        ]

    def _report(self, batch: JSON) -> None:
        status = batch.get("status") or {}
        self.say(
            f"== RestoreBatch {batch['metadata']['name']}: {status.get('phase')} in "
            f"{status.get('sessionDuration', '?')}"
        )
        for member in status.get("members") or []:
            ref = member["ref"]
            self.say(f"   {ref['kind']}/{ref['name']}: {member.get('phase')}")
            for host in member.get("stats") or []:
                detail = host.get("error") or f"restored in {host.get('duration')}"
                self.say(f"     {host['hostname']}: {host.get('phase')} ({detail})")

    def _verify(self, what: str, before: dict[str, str], after: dict[str, str]) -> None:
        missing = sorted(set(before) - set(after))
        changed = sorted(p for p in before if p in after and after[p] != before[p])
        if missing or changed:
            raise RestoreDemoError(
                f"{what}: not what was backed up: missing {missing[:5]}, changed {changed[:5]}"
            )
        self.say(f"   {what}: all {len(before)} files back, byte for byte (SHA-256)")

    # -- pods ----------------------------------------------------------------------------------

    def _web_pod(self, wanted: Callable[[JSON], bool]) -> JSON:
        def ready() -> JSON | None:
            pods = self.client.list(PODS, self.namespace, label_selector="app=web")["items"]
            for pod in sorted(
                pods, key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True
            ):
                statuses = (pod.get("status") or {}).get("containerStatuses") or []
                if (
                    not pod["metadata"].get("deletionTimestamp")
                    and statuses
                    and all(s.get("ready") for s in statuses)
                    and wanted(pod)
                ):
                    found: JSON = pod
                    return found
            return None

        pod: JSON = self._wait(ready, "a Running pod of Deployment web")
        return pod

    def _pod_checksums(self, pod: JSON) -> dict[str, str]:
        container = pod["spec"]["containers"][0]["name"]
        out = self.kubectl(
            "exec", "-n", self.namespace, pod["metadata"]["name"], "-c", container, "--",
            "sh", "-c", CHECKSUMS.format(root=WEB_ROOT),
        )  # fmt: skip
        return parse_checksums(out)

    def _wait(self, probe: Callable[[], Any], what: str) -> Any:
        try:
            return wait_for(probe, self.timeout, what)
        except TimedOut as exc:
            raise RestoreDemoError(str(exc)) from None
