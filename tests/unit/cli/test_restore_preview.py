"""Where a preview finds each host's live data: a PVC target's claim, a Deployment's and a
StatefulSet's claims (per ordinal), and a clear refusal for data only a pod can reach."""

from __future__ import annotations

from typing import Any

import pytest

from api.objects import JSON
from cli.restore_preview import PreviewError, hosts_of, render, repository_of
from engine.preview import Group, Preview
from kube import NotFound, ResourceType


class Objects:
    """What a user's client would GET, by kind and name."""

    def __init__(self, *objs: JSON) -> None:
        self.objs = {(o["kind"], o["metadata"]["name"]): o for o in objs}

    def get(self, rt: ResourceType, name: str, namespace: str | None = None) -> JSON:
        try:
            return self.objs[(rt.kind, name)]
        except KeyError:
            raise NotFound(f"{rt.kind} {name} not found", 404) from None


def workload(kind: str, name: str, volumes: list[JSON], **spec: Any) -> JSON:
    return {
        "kind": kind,
        "metadata": {"name": name, "namespace": "demo"},
        "spec": {**spec, "template": {"spec": {"volumes": volumes}}},
    }


def restore(target: JSON, kind: str = "RestoreSession") -> JSON:
    return {
        "kind": kind,
        "metadata": {"name": "back", "namespace": "demo"},
        "spec": {"repository": {"name": "repo"}, "target": target},
    }


def test_a_pvc_target_is_its_claim_mounted_where_the_restore_mounts_it() -> None:
    target = {
        "ref": {"kind": "PersistentVolumeClaim", "name": "data"},
        "volumeMounts": [{"name": "data", "mountPath": "/var/data"}],
        "rules": [{"snapshots": ["abcd1234"], "paths": ["/var/data/a"]}],
    }
    (host,) = hosts_of(Objects(), restore(target), "demo")  # type: ignore[arg-type]
    assert host.host == "host-0"
    assert host.snapshot == "abcd1234"
    assert host.paths == ("/var/data/a",)
    assert host.volumes[0]["persistentVolumeClaim"]["claimName"] == "data"
    assert host.mounts == ({"name": "target", "mountPath": "/var/data"},)


def test_a_statefulset_is_previewed_per_ordinal_from_its_claim_templates() -> None:
    sts = workload(
        "StatefulSet",
        "db",
        [{"name": "config", "configMap": {"name": "c"}}],
        replicas=2,
        volumeClaimTemplates=[{"metadata": {"name": "data"}}],
    )
    target = {
        "ref": {"kind": "StatefulSet", "name": "db"},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    hosts = hosts_of(Objects(sts), restore(target), "demo")  # type: ignore[arg-type]
    assert [(h.name, h.host) for h in hosts] == [
        ("stash-preview-back-0-0", "host-0"),
        ("stash-preview-back-0-1", "host-1"),
    ]
    claims = [h.volumes[0]["persistentVolumeClaim"]["claimName"] for h in hosts]
    assert claims == ["data-db-0", "data-db-1"]


def test_data_only_a_pod_can_reach_is_refused_in_words() -> None:
    web = workload("Deployment", "web", [{"name": "data", "emptyDir": {}}])
    target = {
        "ref": {"kind": "Deployment", "name": "web"},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    with pytest.raises(PreviewError, match="volume data is a emptyDir"):
        hosts_of(Objects(web), restore(target), "demo")  # type: ignore[arg-type]
    daemons = {"ref": {"kind": "DaemonSet", "name": "agent"}}
    with pytest.raises(PreviewError, match="DaemonSet agent"):
        hosts_of(Objects(), restore(daemons), "demo")  # type: ignore[arg-type]
    missing = {"ref": {"kind": "Deployment", "name": "gone"}}
    with pytest.raises(PreviewError, match="Deployment demo/gone not found"):
        hosts_of(Objects(), restore(missing), "demo")  # type: ignore[arg-type]


def test_each_member_of_a_restore_batch_is_previewed() -> None:
    batch = {
        "kind": "RestoreBatch",
        "metadata": {"name": "back"},
        "spec": {
            "members": [
                {"target": {"ref": {"kind": "PersistentVolumeClaim", "name": "a"}}},
                {"target": {"ref": {"kind": "PersistentVolumeClaim", "name": "b"}, "alias": "x"}},
            ]
        },
    }
    hosts = hosts_of(Objects(), batch, "demo")  # type: ignore[arg-type]
    assert [(h.name, h.target_name, h.host) for h in hosts] == [
        ("stash-preview-back-0", "a", "host-0"),
        ("stash-preview-back-1", "b", "x"),
    ]
    assert hosts[0].mounts == ({"name": "target", "mountPath": "/stash-data"},)


def test_a_repository_of_another_namespace_cannot_be_previewed() -> None:
    body = restore({"ref": {"kind": "PersistentVolumeClaim", "name": "a"}})
    body["spec"]["repository"] = {"name": "shared", "namespace": "backups"}
    with pytest.raises(PreviewError, match="only a pod of backups can"):
        repository_of(Objects(), body, "demo")  # type: ignore[arg-type]


def test_what_a_preview_found_is_printed_per_host() -> None:
    (host,) = hosts_of(
        Objects(),  # type: ignore[arg-type]
        restore({"ref": {"kind": "PersistentVolumeClaim", "name": "data"}}),
        "demo",
    )
    found = Preview(
        "PersistentVolumeClaim/data",
        "host-0",
        "abcd1234",
        "2026-12-07T10:00:00",
        add=Group(30, 300, [f"/d/{i}" for i in range(25)]),
        overwrite=Group(1, 6, ["/d/a"]),
    )
    text = render([found], [host])
    assert (
        "PersistentVolumeClaim/data host host-0, snapshot abcd1234 (2026-12-07T10:00:00):" in text
    )
    assert "  would add         30 file(s), 300 bytes: /d/0, /d/1" in text
    assert text.splitlines()[1].endswith("/d/24 and 5 more")
    assert "  would leave alone 0 file(s), 0 bytes" in text
    assert "kubectl logs -n demo job/stash-preview-back-0" in text
    failed = render([Preview("PersistentVolumeClaim/data", "host-0", error="no snapshot")], [host])
    assert failed == "PersistentVolumeClaim/data host host-0: cannot preview: no snapshot"
