"""``kubectl stash``, run by the real kubectl (as a plugin on its PATH) against the real cluster:
pause and resume, a triggered session followed to its end on the node, describe, the
Repository's snapshots and check, and a restore from a chosen snapshot."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from controller.operator import Operator
from devcluster import ControlPlane
from kube import Client
from kube.types import BACKUP_BATCHES, CRONJOBS, RESTORE_SESSIONS
from tests.factories import batch, member
from tests.integration.helpers import give_to_pods
from tests.integration.objects import pvc, repository
from tests.integration.test_restic import make_data, tree
from tests.waiting import eventually

PLUGIN = Path(sys.executable).parent / "kubectl-stash"


def _kubectl(
    control_plane: ControlPlane, namespace: str, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{PLUGIN.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("KUBECONFIG", None)
    return subprocess.run(
        [
            str(control_plane.binaries.kubectl),
            "stash",
            *args,
            "--kubeconfig",
            str(control_plane.kubeconfig),
            "-n",
            namespace,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_kubectl_stash_pauses_triggers_describes_lists_checks_and_restores(
    operator: Operator, control_plane: ControlPlane, kube: Client, namespace: str, tmp_path: Path
) -> None:
    assert PLUGIN.exists(), "the package installs the kubectl-stash executable"
    data = give_to_pods(make_data(tmp_path / "pvc"))  # the restore Job writes as the pods' user
    expected = tree(data)
    repository(kube, namespace, tmp_path / "repo")
    pvc(kube, namespace, "shared", data)
    shared = member("PersistentVolumeClaim", "shared", mounts=(("shared", str(data)),))
    shared["task"] = {"name": "pvc-backup"}
    kube.create(batch("nightly", namespace, shared, schedule="0 3 * * *"), namespace)
    run = functools.partial(_kubectl, control_plane, namespace)

    # pause / resume: the spec, and through it the CronJob.
    paused = run("pause", "nightly")
    assert paused.returncode == 0, paused.stdout + paused.stderr
    assert paused.stdout.strip() == "backupbatch.stash.appscode.com/nightly paused"
    assert kube.get(BACKUP_BATCHES, "nightly", namespace)["spec"]["paused"] is True
    eventually(
        lambda: kube.get(CRONJOBS, "stash-trigger-nightly", namespace)["spec"]["suspend"] or None,
        60,
        "the CronJob to be suspended",
    )
    assert run("pause", "backupbatch/nightly").stdout.strip().endswith("already paused")
    resumed = run("resume", "bb/nightly")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert kube.get(BACKUP_BATCHES, "nightly", namespace)["spec"]["paused"] is False

    # trigger --wait: the session runs on the node; its end is described.
    triggered = run("trigger", "nightly", "--wait", "--timeout", "240", "--poll", "0.5")
    assert triggered.returncode == 0, triggered.stdout + triggered.stderr
    assert "backupsession.stash.appscode.com/nightly-" in triggered.stdout
    assert "Phase:        Succeeded" in triggered.stdout
    assert "  PersistentVolumeClaim/shared: Succeeded, 1/1 host(s) reported" in triggered.stdout
    assert "    host host-0: Succeeded in " in triggered.stdout
    assert ": Succeeded" in triggered.stderr  # the progress lines
    session = triggered.stdout.split("backupsession.stash.appscode.com/")[1].split()[0]

    described = run("describe", "backupbatch/nightly")
    assert described.returncode == 0, described.stdout + described.stderr
    assert f"  {session}: Succeeded in " in described.stdout
    assert "Latest session:" in described.stdout
    as_json = json.loads(run("describe", f"bs/{session}", "-o", "json").stdout)
    assert as_json["status"]["phase"] == "Succeeded"
    assert yaml.safe_load(run("describe", f"bs/{session}", "-o", "yaml").stdout)["kind"] == (
        "BackupSession"
    )

    # The Repository, read here by restic.
    listed = run("snapshots", "repo", "-o", "json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    (snapshot,) = json.loads(listed.stdout)
    assert snapshot["hostname"] == "host-0"
    wide = run("snapshots", "repo", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["ID", "TIME", "HOST", "PATHS", "TAGS", "FULL", "ID"]
    assert snapshot["id"] in wide[1]
    checked = run("check", "repo")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "no errors" in checked.stdout
    unlocked = run("unlock", "repo")
    assert unlocked.returncode == 0, unlocked.stdout + unlocked.stderr

    # restore from the chosen snapshot, completed from the backup member (mounts, Task).
    shutil.rmtree(data / "sub")
    restored = run(
        "restore", "pvc/shared", "--snapshot", snapshot["id"][:8], "--name", "back", "--wait",
        "--poll", "0.5", "--timeout", "240",
    )  # fmt: skip
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "restoresession.stash.appscode.com/back created" in restored.stdout
    assert "  PersistentVolumeClaim/shared: Succeeded, 1/1 host(s) reported" in restored.stdout
    spec = kube.get(RESTORE_SESSIONS, "back", namespace)["spec"]
    assert spec["task"] == {"name": "pvc-restore"}
    assert spec["target"]["rules"] == [{"snapshots": [snapshot["id"][:8]]}]
    assert tree(data) == expected

    # What cannot be done says why, with kubectl's exit codes.
    missing = run("describe", "bs/nope")
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: ")
    assert "nope" in missing.stderr
    wrong_type = run("describe", "pods/web")
    assert wrong_type.returncode == 1
    assert "is not one of BackupBatch" in wrong_type.stderr
    assert run("trigger").returncode == 2  # the command line itself is wrong
    absent = run("trigger", "nothing")
    assert absent.returncode == 1
    assert f"no BackupBatch or BackupConfiguration 'nothing' in namespace {namespace}" in (
        absent.stderr
    )
