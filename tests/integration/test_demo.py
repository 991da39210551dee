"""The main job, non-interactively: `stash demo` from nothing to a summary, and its outcome."""

from __future__ import annotations

import re
from pathlib import Path

from devcluster.demo import Demo
from devcluster.manager import DevCluster
from kube import Client
from kube.types import BACKUP_SESSIONS, PODS, REPOSITORIES, SECRETS


def test_the_demo_backs_up_every_sample_target_and_says_so(tmp_path: Path) -> None:
    lines: list[str] = []
    demo = Demo(tmp_path / "demo", keep=True, say=lines.append)
    try:
        outcome = demo.run()
        session = outcome.session
        kubeconfig = tmp_path / "demo" / "cluster" / "kubeconfig"
        client = Client.from_kubeconfig(str(kubeconfig))
        try:
            stored = client.get(BACKUP_SESSIONS, session["metadata"]["name"], "demo")
            repo = client.get(REPOSITORIES, "local-repo", "demo")
        finally:
            client.close()
        # A second run reuses what is running, backs up and restores again.
        again = demo.run()
    finally:
        DevCluster(tmp_path / "demo" / "cluster", progress=lambda _: None).down()

    status = stored["status"]
    assert status["phase"] == "Succeeded", "\n".join(lines)
    assert [(t["ref"]["name"], t["phase"]) for t in status["targets"]] == [
        ("web", "Succeeded"),
        ("api", "Succeeded"),
        ("shared-data", "Succeeded"),
    ]
    for target in status["targets"]:
        (host,) = target["stats"]
        assert host["snapshots"][0]["fileStats"]["totalFiles"] == 21
    # (the sample's CronJob may have added a slot's snapshots meanwhile)
    assert repo["status"]["snapshotCount"] >= 3
    assert repo["status"]["integrity"] is True
    assert again.succeeded
    restore = outcome.restore["status"]
    assert restore["phase"] == "Succeeded", "\n".join(lines)
    assert [(m["ref"]["name"], m["phase"]) for m in restore["members"]] == [
        ("web", "Succeeded"),
        ("shared-data", "Succeeded"),
    ]
    assert [s["hostname"] for m in restore["members"] for s in m["stats"]] == ["host-0", "host-0"]

    text = "\n".join(lines)
    assert f"== BackupSession {session['metadata']['name']}: Succeeded" in text
    assert "stash_backup_session_success" in text
    assert "export KUBECONFIG=" in text
    # Real pods: the operator's, the sidecars' and the Job's, as kubectl shows them.
    assert "stash-operator-" in text
    assert re.search(r"web-\S+ +2/2 +Running", text), text
    assert re.search(r"stash-backup-\S+ +0/1 +Completed", text), text
    assert "change-me-to-a-long-random-password" not in text
    # The damage and the restore, as the demo tells them.
    assert re.search(r"deleted 20 of 21 files in pod web-\S+", text), text
    assert "== RestoreBatch demo-restore: Succeeded" in text
    assert "Deployment web (pod web-" in text
    assert "restored by stash-init): all 21 files back, byte for byte (SHA-256)" in text
    assert "PVC shared-data: all 21 files back, byte for byte (SHA-256)" in text
    assert re.search(r"stash-restore-demo-restore-1-\S+ +0/1 +Completed", text), text


def test_the_helm_chart_installs_the_operator_on_the_node_and_a_backup_and_restore_succeed(
    tmp_path: Path,
) -> None:
    lines: list[str] = []
    demo = Demo(tmp_path / "demo", keep=True, say=lines.append, installer="helm")
    try:
        outcome = demo.run()
        client = Client.from_kubeconfig(str(tmp_path / "demo" / "cluster" / "kubeconfig"))
        try:
            releases = client.list(SECRETS, "stash", label_selector="owner=helm,name=stash")
            pods = client.list(PODS, "stash", label_selector="app.kubernetes.io/component=operator")
        finally:
            client.close()
    finally:
        DevCluster(tmp_path / "demo" / "cluster", progress=lambda _: None).down()
    text = "\n".join(lines)
    assert "the operator, as a user installs it: helm upgrade --install stash charts/stash" in text
    assert [s["metadata"]["labels"]["status"] for s in releases["items"]] == ["deployed"]
    (pod,) = pods["items"]
    assert pod["status"]["phase"] == "Running"
    assert all(s["ready"] for s in pod["status"]["containerStatuses"])
    assert outcome.succeeded, text
    assert [(t["ref"]["name"], t["phase"]) for t in outcome.session["status"]["targets"]] == [
        ("web", "Succeeded"),
        ("api", "Succeeded"),
        ("shared-data", "Succeeded"),
    ]
