"""Build etcd, the Kubernetes binaries, rclone and restic from the Go module proxy.

A throwaway Go module requires ``k8s.io/kubernetes`` at the chosen version and replaces each
staging module (the list comes from that version's own go.mod) with its published ``v0.Y.Z``;
etcd is built the same way from ``go.etcd.io/etcd/server/v3``. Binaries are cached per version
outside the checkout; Go's own module and build caches make a rebuild of a new version quick.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "v1.37.2"
ETCD_VERSION = "v3.7.3"
# rclone serves restic's REST protocol and S3 on loopback: the tests' rest and S3 backends
# (restic's own rest-server is not on the module proxy this project can reach).
RCLONE_VERSION = "v1.76.0"
# The one restic of the project: the tests, the demo and the image (its Dockerfile copies it
# from the restic/restic image of this version; the dev node's stand-in is this build).
RESTIC_VERSION = "v0.18.1"
# Helm: the chart (charts/stash) is linted, rendered and installed with it.
HELM_VERSION = "v3.22.0"
# k8s.io/kubernetes v1.37 declares `go 1.26.0`.
MIN_GO = (1, 26)

Progress = Callable[[str], None]

KUBE_COMMANDS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kubectl",
)


class BuildError(RuntimeError):
    """The binaries could not be built; the message says why and what to do."""


@dataclass(frozen=True)
class Versions:
    kubernetes: str = KUBERNETES_VERSION
    etcd: str = ETCD_VERSION
    rclone: str = RCLONE_VERSION
    restic: str = RESTIC_VERSION
    helm: str = HELM_VERSION

    @classmethod
    def from_environment(cls) -> Versions:
        return cls(
            kubernetes=os.environ.get("STASH_KUBERNETES_VERSION", KUBERNETES_VERSION),
            etcd=os.environ.get("STASH_ETCD_VERSION", ETCD_VERSION),
            rclone=os.environ.get("STASH_RCLONE_VERSION", RCLONE_VERSION),
            restic=os.environ.get("STASH_RESTIC_VERSION", RESTIC_VERSION),
            helm=os.environ.get("STASH_HELM_VERSION", HELM_VERSION),
        )


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubelet: Path
    kubectl: Path
    rclone: Path
    restic: Path
    helm: Path
    versions: Versions


def cache_root() -> Path:
    """Where binaries are cached: $STASH_DEV_CACHE, else $XDG_CACHE_HOME/stash-dev."""
    explicit = os.environ.get("STASH_DEV_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "stash-dev"


def cached_binaries(versions: Versions, root: Path | None = None) -> Binaries:
    root = root or cache_root()
    kube_bin = root / f"kubernetes-{versions.kubernetes}" / "bin"
    etcd_bin = root / f"etcd-{versions.etcd}" / "bin"
    return Binaries(
        etcd=etcd_bin / "etcd",
        kube_apiserver=kube_bin / "kube-apiserver",
        kube_controller_manager=kube_bin / "kube-controller-manager",
        kube_scheduler=kube_bin / "kube-scheduler",
        kubelet=kube_bin / "kubelet",
        kubectl=kube_bin / "kubectl",
        rclone=root / f"rclone-{versions.rclone}" / "bin" / "rclone",
        restic=root / f"restic-{versions.restic}" / "bin" / "restic",
        helm=root / f"helm-{versions.helm}" / "bin" / "helm",
        versions=versions,
    )


def ensure_binaries(
    versions: Versions | None = None, progress: Progress = print, root: Path | None = None
) -> Binaries:
    """Return the cached binaries, building whichever are missing."""
    versions = versions or Versions.from_environment()
    root = root or cache_root()
    bins = cached_binaries(versions, root)
    kube = [
        bins.kube_apiserver,
        bins.kube_controller_manager,
        bins.kube_scheduler,
        bins.kubelet,
        bins.kubectl,
    ]
    if all(p.is_file() for p in [*kube, bins.etcd, bins.rclone, bins.restic, bins.helm]):
        return bins
    root.mkdir(parents=True, exist_ok=True)
    with _lock(root / ".build.lock", progress):
        if not bins.etcd.is_file():
            _build_etcd(versions.etcd, bins.etcd.parent, progress)
        if not all(p.is_file() for p in kube):
            _build_kubernetes(versions.kubernetes, bins.kube_apiserver.parent, progress)
        if not bins.rclone.is_file():
            _build_rclone(versions.rclone, bins.rclone.parent, progress)
        if not bins.restic.is_file():
            _build_restic(versions.restic, bins.restic.parent, progress)
        if not bins.helm.is_file():
            _build_helm(versions.helm, bins.helm.parent, progress)
    return bins


def ensure_restic(versions: Versions | None = None, progress: Progress = print) -> Path:
    """The pinned restic, built when missing (only it: a unit-test run needs no Kubernetes)."""
    versions = versions or Versions.from_environment()
    root = cache_root()
    binary = cached_binaries(versions, root).restic
    if not binary.is_file():
        root.mkdir(parents=True, exist_ok=True)
        with _lock(root / ".build.lock", progress):
            if not binary.is_file():
                _build_restic(versions.restic, binary.parent, progress)
    return binary


def use_pinned_restic(progress: Progress = print) -> Path:
    """Put the pinned restic first on this process's PATH (children inherit it): what runs
    ``restic`` on this machine (the tests, the demo's look into the repository, the benchmark)
    then runs the version the image carries, never a distribution's older one."""
    binary = ensure_restic(progress=progress)
    directory = str(binary.parent)
    entries = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != directory]
    os.environ["PATH"] = os.pathsep.join([directory, *entries])
    return binary


@contextlib.contextmanager
def _lock(path: Path, progress: Progress) -> Iterator[None]:
    with path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"another build holds {path}; waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- Go helpers ---------------------------------------------------------------------------------


def _go() -> str:
    go = shutil.which("go")
    if not go:
        raise BuildError(
            "Go is not installed or not on PATH. The local control plane is built from source "
            f"with Go >= {MIN_GO[0]}.{MIN_GO[1]} (https://go.dev/dl/; Debian: golang-go from "
            "backports). Alternatively put prebuilt etcd, kube-apiserver, kube-controller-manager "
            f"and kubectl into {cache_root()}/<component>-<version>/bin/."
        )
    out = subprocess.run(
        [go, "env", "GOVERSION"], capture_output=True, text=True, check=False
    ).stdout.strip()
    match = re.match(r"go(\d+)\.(\d+)", out)
    if not match or (int(match[1]), int(match[2])) < MIN_GO:
        raise BuildError(
            f"Go {out or '(unknown version)'} is too old to build Kubernetes "
            f"{KUBERNETES_VERSION}: it needs Go >= {MIN_GO[0]}.{MIN_GO[1]}."
        )
    return go


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    # Never switch toolchains behind the user's back; -mod=mod lets go.mod be completed.
    env.setdefault("GOTOOLCHAIN", "local")
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -mod=mod -buildvcs=false").strip()
    env.setdefault("CGO_ENABLED", "0")
    return env


def _run_go(args: list[str], cwd: Path, what: str) -> str:
    proc = subprocess.run(
        [_go(), *args], cwd=cwd, env=_go_env(), capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        hint = ""
        if "proxy" in tail or "dial tcp" in tail or "no such host" in tail:
            hint = "\nThe Go module proxy could not be reached: check GOPROXY and the network."
        raise BuildError(f"{what} failed (go {' '.join(args)}):\n{tail}{hint}")
    return proc.stdout


def _go_build(
    module_dir: Path, packages: list[str], out_dir: Path, ldflags: str, progress: Progress
) -> None:
    """``go build -v`` with a progress line every few seconds, then an atomic install."""
    listing = _run_go(["list", "-deps", *packages], module_dir, "listing packages")
    total = max(1, len(listing.splitlines()))
    staging = out_dir.parent / (out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    cmd = [_go(), "build", "-v", "-trimpath", "-ldflags", ldflags, "-o", f"{staging}/", *packages]
    started = last = time.monotonic()
    done = 0
    tail: list[str] = []
    with subprocess.Popen(
        cmd,
        cwd=module_dir,
        env=_go_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        for line in proc.stderr or ():
            done += 1
            tail = [*tail[-14:], line.rstrip()]
            now = time.monotonic()
            if now - last >= 5:
                last = now
                pct = min(99, 100 * done // total)
                progress(f"  compiled {done}/{total} packages ({pct}%), {now - started:.0f}s")
        code = proc.wait()
    if code != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise BuildError("go build failed:\n" + "\n".join(tail))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    progress(f"  built in {time.monotonic() - started:.0f}s -> {out_dir}")


def _write_module(module_dir: Path, name: str, requires: str, replaces: list[str]) -> None:
    module_dir.mkdir(parents=True, exist_ok=True)
    gomod = f"module {name}\n\ngo {MIN_GO[0]}.{MIN_GO[1]}.0\n\nrequire {requires}\n"
    if replaces:
        gomod += "\nreplace (\n" + "".join(f"\t{r}\n" for r in replaces) + ")\n"
    if (module_dir / "go.mod").is_file() and (module_dir / "go.mod").read_text() == gomod:
        return
    (module_dir / "go.mod").write_text(gomod)
    (module_dir / "go.sum").unlink(missing_ok=True)


# -- etcd -------------------------------------------------------------------------------------


def _build_etcd(version: str, out_dir: Path, progress: Progress) -> None:
    progress(f"building etcd {version} from the Go module proxy (once; cached in {out_dir})")
    module_dir = out_dir.parent / "module"
    _write_module(module_dir, "stashdev/etcd", f"go.etcd.io/etcd/server/v3 {version}", [])
    _run_go(["mod", "download", "go.etcd.io/etcd/server/v3"], module_dir, "downloading etcd")
    _run_go(["mod", "tidy"], module_dir, "resolving etcd's dependencies")
    _go_build(module_dir, ["go.etcd.io/etcd/server/v3"], out_dir, "-s -w", progress)
    # `go build` names the binary after the module path ("server"); users know it as etcd.
    for built in out_dir.iterdir():
        if built.name != "etcd":
            built.rename(out_dir / "etcd")


def _build_rclone(version: str, out_dir: Path, progress: Progress) -> None:
    progress(f"building rclone {version} from the Go module proxy (once; cached in {out_dir})")
    module_dir = out_dir.parent / "module"
    _write_module(module_dir, "stashdev/rclone", f"github.com/rclone/rclone {version}", [])
    _run_go(["mod", "download", "github.com/rclone/rclone"], module_dir, "downloading rclone")
    _run_go(["mod", "tidy"], module_dir, "resolving rclone's dependencies")
    _go_build(module_dir, ["github.com/rclone/rclone"], out_dir, "-s -w", progress)


def _build_command(
    name: str, module: str, version: str, *, package: str, out_dir: Path, progress: Progress
) -> None:
    """Build one command (``package``) of a Go module at an explicit version (the proxy's
    @latest listing may resolve to an old release) through a throwaway module."""
    progress(f"building {name} {version} from the Go module proxy (once; cached in {out_dir})")
    module_dir = out_dir.parent / "module"
    _write_module(module_dir, f"stashdev/{name}", f"{module} {version}", [])
    (module_dir / "tools.go").write_text(
        f'//go:build tools\n\npackage tools\n\nimport _ "{package}"\n'
    )
    _run_go(["mod", "download", module], module_dir, f"downloading {name}")
    _run_go(["mod", "tidy"], module_dir, f"resolving {name}'s dependencies")
    _go_build(module_dir, [package], out_dir, "-s -w", progress)


def _build_helm(version: str, out_dir: Path, progress: Progress) -> None:
    helm = "helm.sh/helm/v3"
    _build_command(
        "helm", helm, version, package=f"{helm}/cmd/helm", out_dir=out_dir, progress=progress
    )


def _build_restic(version: str, out_dir: Path, progress: Progress) -> None:
    restic = "github.com/restic/restic"
    _build_command(
        "restic",
        restic,
        version,
        package=f"{restic}/cmd/restic",
        out_dir=out_dir,
        progress=progress,
    )


# -- Kubernetes ---------------------------------------------------------------------------------


def staging_modules(kubernetes_gomod: str) -> list[str]:
    """The staging modules a k8s.io/kubernetes go.mod replaces with ``./staging/...``."""
    return re.findall(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", kubernetes_gomod, re.M)


def _build_kubernetes(version: str, out_dir: Path, progress: Progress) -> None:
    progress(
        f"building Kubernetes {version} ({', '.join(KUBE_COMMANDS)}) from "
        f"the Go module proxy: several minutes the first time, cached in {out_dir}"
    )
    module_dir = out_dir.parent / "module"
    module_dir.mkdir(parents=True, exist_ok=True)
    progress("  downloading k8s.io/kubernetes and reading its staging modules")
    info = _run_go(
        ["mod", "download", "-json", f"k8s.io/kubernetes@{version}"],
        module_dir,
        f"downloading k8s.io/kubernetes {version}",
    )
    gomod_path = re.search(r'"GoMod":\s*"([^"]+)"', info)
    if not gomod_path:
        raise BuildError(f"go mod download printed no go.mod path for k8s.io/kubernetes {version}")
    staging_version = "v0." + version.removeprefix("v1.")
    replaces = [
        f"{m} => {m} {staging_version}"
        for m in staging_modules(Path(gomod_path[1]).read_text())
        if not m.startswith("k8s.io/sample-")  # examples, not published, never imported
    ]
    _write_module(module_dir, "stashdev/kubernetes", f"k8s.io/kubernetes {version}", replaces)
    (module_dir / "tools.go").write_text(
        "//go:build tools\n\npackage tools\n\nimport (\n"
        + "".join(f'\t_ "k8s.io/kubernetes/cmd/{c}"\n' for c in KUBE_COMMANDS)
        + ")\n"
    )
    progress("  resolving dependencies (go mod tidy)")
    _run_go(["mod", "tidy"], module_dir, "resolving Kubernetes' dependencies")
    minor = version.removeprefix("v").split(".")[1]
    ldflags = " ".join(
        [
            "-s -w",
            f"-X k8s.io/component-base/version.gitVersion={version}",
            "-X k8s.io/component-base/version.gitMajor=1",
            f"-X k8s.io/component-base/version.gitMinor={minor}",
            "-X k8s.io/component-base/version.gitTreeState=clean",
            f"-X k8s.io/client-go/pkg/version.gitVersion={version}",
        ]
    )
    packages = [f"k8s.io/kubernetes/cmd/{c}" for c in KUBE_COMMANDS]
    _go_build(module_dir, packages, out_dir, ldflags, progress)
