"""``kubectl stash restore --preview`` on the real node: a preview Job of the user's reads the
live PVC read-only and restic's dry run says what the restore would add, overwrite and leave
alone; nothing is written; the restore that follows does exactly that."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from controller.operator import Operator
from devcluster import ControlPlane
from kube import Client
from kube.types import JOBS, RESTORE_SESSIONS
from tests.factories import batch, member
from tests.integration.helpers import give_to_pods, invoker_ready
from tests.integration.objects import pvc, repository
from tests.integration.test_kubectl_plugin import _kubectl
from tests.integration.test_restic import make_data, tree


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_preview_says_what_the_restore_then_does_and_changes_nothing(
    operator: Operator, control_plane: ControlPlane, kube: Client, namespace: str, tmp_path: Path
) -> None:
    data = give_to_pods(make_data(tmp_path / "pvc"))  # a.txt, sub/b.bin, sub/deeper/c.txt
    backed_up = tree(data)
    repository(kube, namespace, tmp_path / "repo")
    pvc(kube, namespace, "shared", data)
    shared = member("PersistentVolumeClaim", "shared", mounts=(("shared", str(data)),))
    shared["task"] = {"name": "pvc-backup"}
    kube.create(batch("nightly", namespace, shared), namespace)
    invoker_ready(kube, namespace, "nightly")
    run = functools.partial(_kubectl, control_plane, namespace)
    triggered = run("trigger", "nightly", "--wait", "--timeout", "240", "--poll", "0.5")
    assert triggered.returncode == 0, triggered.stdout + triggered.stderr

    # The live data moved on since: one file changed, one gone, one new.
    (data / "a.txt").write_text("changed\n")
    (data / "sub" / "b.bin").unlink()
    (data / "new.txt").write_text("new\n")
    give_to_pods(data)
    live = tree(data)

    previewed = run("restore", "pvc/shared", "--preview", "--timeout", "240")
    assert previewed.returncode == 0, previewed.stdout + previewed.stderr
    said = previewed.stdout
    assert "PersistentVolumeClaim/shared host host-0, snapshot " in said
    assert f"would add         1 file(s), 200000 bytes: {data}/sub/b.bin" in said, said
    assert f"would overwrite   1 file(s), 6 bytes: {data}/a.txt" in said, said
    assert "would leave alone 1 file(s), 6000 bytes" in said, said
    # Nothing was written: the data, no RestoreSession; the Job was the user's, read-only.
    assert tree(data) == live
    assert kube.list(RESTORE_SESSIONS, namespace)["items"] == []
    (job,) = [
        j
        for j in kube.list(JOBS, namespace)["items"]
        if j["metadata"]["name"].startswith("stash-preview-")
    ]
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    target_mounts = [m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == str(data)]
    assert target_mounts
    assert all(m["readOnly"] for m in target_mounts)

    # The restore then does what the preview said: b.bin back, a.txt as backed up, c.txt and
    # the new file as they were.
    restored = run(
        "restore", "pvc/shared", "--name", "back", "--wait", "--poll", "0.5", "--timeout", "240"
    )
    assert restored.returncode == 0, restored.stdout + restored.stderr
    after = tree(data)
    assert after["sub/b.bin"] == backed_up["sub/b.bin"]
    assert after["a.txt"] == backed_up["a.txt"]
    assert after["sub/deeper/c.txt"] == live["sub/deeper/c.txt"]
    assert after["new.txt"] == _sha(b"new\n")
