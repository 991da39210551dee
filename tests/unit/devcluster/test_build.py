"""Building the control plane: staging modules, the cache, and clear errors."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from devcluster import build
from devcluster.build import BuildError, Versions, cached_binaries, ensure_binaries, staging_modules

GOMOD = """module k8s.io/kubernetes

go 1.26.0

require (
\tk8s.io/api v0.0.0
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/apimachinery => ./staging/src/k8s.io/apimachinery
\tk8s.io/cri-streaming => ./staging/src/k8s.io/cri-streaming
)
"""


def test_staging_modules_are_read_from_the_kubernetes_go_mod() -> None:
    assert staging_modules(GOMOD) == ["k8s.io/api", "k8s.io/apimachinery", "k8s.io/cri-streaming"]


def _fake_binaries(root: Path, versions: Versions) -> None:
    bins = cached_binaries(versions, root)
    for path in (
        bins.etcd,
        bins.kube_apiserver,
        bins.kube_controller_manager,
        bins.kube_scheduler,
        bins.kubelet,
        bins.kubectl,
        bins.rclone,
        bins.restic,
        bins.helm,
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_cached_binaries_are_used_without_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    versions = Versions("v1.99.0", "v3.99.0")
    _fake_binaries(tmp_path, versions)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    bins = ensure_binaries(versions, progress=lambda _: None, root=tmp_path)
    assert bins.kube_apiserver == tmp_path / "kubernetes-v1.99.0" / "bin" / "kube-apiserver"
    assert bins.etcd == tmp_path / "etcd-v3.99.0" / "bin" / "etcd"


def test_a_missing_go_toolchain_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(BuildError, match="Go is not installed or not on PATH"):
        ensure_binaries(Versions("v1.99.0", "v3.99.0"), progress=lambda _: None, root=tmp_path)


def test_an_old_go_toolchain_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "go").write_text("#!/bin/sh\necho go1.21.4\n")
    (fake / "go").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:/usr/bin:/bin")
    with pytest.raises(BuildError, match=r"go1\.21\.4 is too old .* needs Go >= 1\.26"):
        ensure_binaries(Versions("v1.99.0", "v3.99.0"), progress=lambda _: None, root=tmp_path)


def test_the_cache_lives_outside_the_checkout_and_can_be_moved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STASH_DEV_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/var/cache/me")
    assert build.cache_root() == Path("/var/cache/me/stash-dev")
    monkeypatch.setenv("STASH_DEV_CACHE", "/opt/k8s")
    assert build.cache_root() == Path("/opt/k8s")


def test_versions_can_be_chosen_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STASH_KUBERNETES_VERSION", "v1.36.3")
    assert Versions.from_environment() == Versions("v1.36.3", build.ETCD_VERSION)
