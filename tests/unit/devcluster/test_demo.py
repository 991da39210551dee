"""What the demo changes of the samples and the manifests for the dev cluster, as data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from devcluster.demo import SAMPLES, install_overlay, localize
from devcluster.images import Image, Images
from tests.manifests import load_all

IMAGES = Images(
    base=Image("docker.io/library/python:3.11-slim-bookworm", Path("/c/base.tar")),
    pause=Image("localhost/stash-dev/pause:1", Path("/c/pause.tar")),
    app=Image("localhost/stash-dev/app:2", Path("/c/app.tar")),
    pushgateway=Image("localhost/stash-dev/pushgateway:1.5.1-3", Path("/c/pg.tar")),
    stash=Image("docker.io/library/stash-py:dev-4", Path("/c/stash.tar")),
)


def _samples() -> list[dict[str, Any]]:
    return [o for path in sorted(SAMPLES.glob("*.yaml")) for o in load_all(path)]


def test_the_samples_get_the_stand_in_image_and_node_paths_and_nothing_else() -> None:
    node = Path("/state/node")
    out = localize(_samples(), IMAGES, node, "demo")
    by_kind = {(o["kind"], o["metadata"]["name"]): o for o in out}
    images = [
        c["image"]
        for o in out
        if o["kind"] == "Deployment"
        for c in o["spec"]["template"]["spec"]["containers"]
    ]
    assert images == [IMAGES.app.name, IMAGES.app.name]
    repo = by_kind[("Repository", "local-repo")]
    local = repo["spec"]["backend"]["local"]
    assert local["mountPath"] == "/safe/data"  # the pods' path is the sample's
    assert local["hostPath"]["path"] == "/state/node/repository"
    volume = by_kind[("PersistentVolume", "demo-shared-data")]
    assert volume["spec"]["claimRef"] == {"namespace": "demo", "name": "shared-data"}
    assert all(
        o["metadata"].get("namespace") == "demo" for o in out if o["kind"] != "PersistentVolume"
    )
    batch = next(o for o in out if o["kind"] == "BackupBatch")
    original = next(o for o in _samples() if o["kind"] == "BackupBatch")
    assert batch["spec"] == original["spec"]


def test_the_install_overlay_points_manifests_at_the_built_images(tmp_path: Path) -> None:
    overlay = install_overlay(IMAGES, tmp_path / "install")
    doc = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    assert (overlay / doc["resources"][0]).resolve() == (SAMPLES.parent).resolve()
    assert {"name": "stash-py", "newName": "docker.io/library/stash-py", "newTag": "dev-4"} in doc[
        "images"
    ]
    patch = yaml.safe_load(doc["patches"][0]["patch"])
    assert patch["spec"]["replicas"] == 1
    assert patch["spec"]["strategy"]["type"] == "Recreate"
    operator = patch["spec"]["template"]["spec"]["containers"][0]
    assert "args" not in operator  # manifests' own: the Pushgateway on the pod's loopback
    assert operator["env"] == [{"name": "STASH_IMAGE", "value": IMAGES.stash.name}]


def test_the_install_overlay_makes_the_webhook_answer_only_the_api_servers_certificate(
    tmp_path: Path,
) -> None:
    ca = tmp_path / "webhook-client-ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    overlay = install_overlay(IMAGES, tmp_path / "install", ca)
    doc = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    (component,) = doc["components"]
    assert (overlay / component).resolve() == (SAMPLES.parent / "webhook" / "client-auth")
    (generated,) = doc["configMapGenerator"]
    assert generated["name"] == "stash-webhook-client-ca"
    assert (overlay / "client-ca.crt").read_text() == ca.read_text()
