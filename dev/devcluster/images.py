"""The dev node's container images, made on this machine: no registry is reachable.

- **base**: a Debian rootfs made by ``mmdebstrap`` (python3, pip, ca-certificates) and packed by
  ``buildah from scratch``, tagged with the name the Dockerfile's ``FROM`` asks for;
- **pause**: the sandbox image, a static C program that sleeps until signalled;
- **app**: a stand-in for the samples' application images (``nginx``, ``busybox``): the base
  with ``sleep infinity`` as its command;
- **pushgateway**: Debian's Prometheus Pushgateway on the base (the operator pod's third
  container);
- **restic**: the stand-in for ``restic/restic:<version>``, which the Dockerfile copies restic
  from: the pinned restic built from the Go module proxy (``devcluster.build``), at the path the
  official image has it, so the image runs the very binary the tests run;
- **stash**: the project's image, built by ``buildah bud`` from the unchanged Dockerfile.

Each image is cached as a docker-archive under the cache root, keyed by a hash of what went into
it (package lists, the sources, the Dockerfile and the files it copies), and imported into the
node's containerd. A change of any input builds that image (and those built on it) again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from devcluster.build import BuildError, cache_root, ensure_binaries

Progress = Callable[[str], None]

# Bump when the way an image is made changes (the inputs alone would not say so).
RECIPE = "1"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-pip", "python-is-python3", "ca-certificates")
# The Dockerfile's FROM; buildah normalises short names to docker.io/library/.
BASE_NAME = "docker.io/library/python:3.11-slim-bookworm"
PROJECT = Path(__file__).resolve().parents[2]  # dev/devcluster/ -> the repository
# What the Dockerfile copies: the build context that decides the project image's content.
CONTEXT = ("Dockerfile", "pyproject.toml", "README.md")
CONTEXT_PACKAGES = (
    "api",
    "kube",
    "certs",
    "engine",
    "pods",
    "agent",
    "webhook",
    "controller",
    "cli",
)
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")

PAUSE_C = r"""
#include <signal.h>
#include <unistd.h>
static void done(int sig) { (void)sig; _exit(0); }
int main(void) {
    signal(SIGINT, done);
    signal(SIGTERM, done);
    for (;;) pause();
}
"""


@dataclass(frozen=True)
class Image:
    """One built image: its reference (as pods name it) and its archive."""

    name: str
    archive: Path


@dataclass(frozen=True)
class Images:
    base: Image
    pause: Image
    app: Image
    pushgateway: Image
    stash: Image

    def all(self) -> tuple[Image, ...]:
        return (self.base, self.pause, self.app, self.pushgateway, self.stash)


def _digest(*parts: bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(hashlib.sha256(part).digest())
    return hasher.hexdigest()[:12]


def _tree_bytes(paths: Iterable[Path]) -> bytes:
    """The content of files (sorted, with their relative names), skipping caches."""
    chunks: list[bytes] = []
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            chunks.append(str(path.relative_to(PROJECT)).encode() + b"\0" + path.read_bytes())
    return b"\0\0".join(chunks)


def context_digest() -> str:
    """The hash of what the Dockerfile builds from: a change there builds the image again."""
    paths = [PROJECT / p for p in CONTEXT] + [PROJECT / p for p in CONTEXT_PACKAGES]
    return _digest(RECIPE.encode(), _tree_bytes(paths))


class Builder:
    """Builds the images with buildah, storage under the cache root; shows progress."""

    def __init__(self, root: Path | None = None, progress: Progress = print) -> None:
        self.root = (root or cache_root()) / "images"
        self.progress = progress

    # -- buildah ------------------------------------------------------------------------------

    def _buildah(self, *args: str, what: str, stream: bool = False) -> str:
        tool = shutil.which("buildah")
        if tool is None:
            raise BuildError("buildah is not installed: apt-get install buildah (scripts/setup)")
        command = [
            tool,
            "--root",
            str(self.root / "storage"),
            "--runroot",
            str(self.root / "run"),
            "--storage-driver",
            "vfs",
            *args,
        ]
        return _run(command, what, self.progress if stream else None)

    def _committed(self, name: str, archive: Path, build: Callable[[], None]) -> Image:
        """The archive of ``name``; built (and committed into buildah's storage) when missing."""
        if archive.is_file():
            return Image(name, archive)
        archive.parent.mkdir(parents=True, exist_ok=True)
        build()
        partial = archive.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        self._buildah("push", name, f"docker-archive:{partial}:{name}", what=f"exporting {name}")
        partial.rename(archive)
        return Image(name, archive)

    def _ensure_in_storage(self, image: Image) -> None:
        """Images built on another image need it in buildah's storage (a cache may hold only
        the archive)."""
        listed = self._buildah("images", "--noheading", "--format", "{{.Name}}:{{.Tag}}", what="")
        if image.name not in listed.split():
            # The archive carries the image's name: pulling it restores the same reference.
            self._buildah("pull", f"docker-archive:{image.archive}", what=f"loading {image.name}")

    # -- the images ---------------------------------------------------------------------------

    def base(self) -> Image:
        key = _digest(RECIPE.encode(), SUITE.encode(), " ".join(BASE_PACKAGES).encode())
        archive = self.root / f"base-{key}.tar"

        def build() -> None:
            with tempfile.TemporaryDirectory(dir=self.root) as tmp:
                rootfs = Path(tmp) / "rootfs.tar"
                self.progress(f"building the base image {BASE_NAME} with mmdebstrap (once)")
                mmdebstrap = shutil.which("mmdebstrap")
                if mmdebstrap is None:
                    raise BuildError("mmdebstrap is not installed: apt-get install mmdebstrap")
                _run(
                    [
                        mmdebstrap,
                        "--variant=minbase",
                        "--include=" + ",".join(BASE_PACKAGES),
                        # Debian marks its Python externally managed (PEP 668); the
                        # Dockerfile's `pip install` needs a plain interpreter, like the
                        # python image's.
                        "--customize-hook=rm -f $1/usr/lib/python3*/EXTERNALLY-MANAGED",
                        "--customize-hook=rm -rf $1/var/lib/apt/lists/* $1/var/cache/apt/*",
                        SUITE,
                        str(rootfs),
                        MIRROR,
                    ],
                    "mmdebstrap",
                    self.progress,
                )
                container = self._buildah("from", "scratch", what="buildah from").strip()
                try:
                    mount = self._buildah("mount", container, what="buildah mount").strip()
                    _run(["tar", "-xf", str(rootfs), "-C", mount], "unpacking the rootfs")
                    self._buildah(
                        "config",
                        "--env",
                        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        "--env",
                        "LANG=C.UTF-8",
                        "--cmd",
                        "python3",
                        container,
                        what="buildah config",
                    )
                    self._buildah("commit", container, BASE_NAME, what="buildah commit")
                finally:
                    self._buildah("rm", container, what="buildah rm")

        return self._committed(BASE_NAME, archive, build)

    def pause(self) -> Image:
        key = _digest(RECIPE.encode(), PAUSE_C.encode())
        name = f"localhost/stash-dev/pause:{key}"

        def build() -> None:
            self.progress("building the pause image (a static C program)")
            with tempfile.TemporaryDirectory(dir=self.root) as tmp:
                source = Path(tmp) / "pause.c"
                source.write_text(PAUSE_C)
                binary = Path(tmp) / "pause"
                _run(["gcc", "-static", "-O2", "-o", str(binary), str(source)], "gcc pause.c")
                self._one_binary(name, binary, "/pause")

        return self._committed(name, self.root / f"pause-{key}.tar", build)

    def _one_binary(self, name: str, binary: Path, path: str) -> None:
        """Commit ``name``: an image of nothing but ``binary`` at ``path``, its entrypoint."""
        container = self._buildah("from", "scratch", what="buildah from").strip()
        try:
            self._buildah("copy", container, str(binary), path, what="buildah copy")
            self._buildah(
                "config", "--entrypoint", json.dumps([path]), container, what="buildah config"
            )
            self._buildah("commit", container, name, what="buildah commit")
        finally:
            self._buildah("rm", container, what="buildah rm")

    def _on_base(
        self, base: Image, name: str, archive: Path, configure: Callable[[str], None]
    ) -> Image:
        def build() -> None:
            self._ensure_in_storage(base)
            container = self._buildah("from", "--pull=never", base.name, what="buildah from")
            container = container.strip()
            try:
                configure(container)
                self._buildah("commit", container, name, what="buildah commit")
            finally:
                self._buildah("rm", container, what="buildah rm")

        return self._committed(name, archive, build)

    def app(self, base: Image) -> Image:
        key = _digest(RECIPE.encode(), base.name.encode(), base.archive.name.encode())
        name = f"localhost/stash-dev/app:{key}"

        def configure(container: str) -> None:
            self.progress("building the stand-in application image (the base, sleeping)")
            self._buildah("config", "--cmd", "sleep infinity", container, what="buildah config")

        return self._on_base(base, name, self.root / f"app-{key}.tar", configure)

    def pushgateway(self, base: Image) -> Image:
        binary = shutil.which("prometheus-pushgateway")
        if binary is None:
            raise BuildError("prometheus-pushgateway is not installed (scripts/setup does)")
        # It prints its version on stderr: "pushgateway, version 1.5.1 (branch: ...".
        printed = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, check=False
        ).stderr.split()
        version = printed[2] if len(printed) > 2 else "unknown"
        key = _digest(RECIPE.encode(), base.archive.name.encode(), Path(binary).read_bytes())
        name = f"localhost/stash-dev/pushgateway:{version}-{key}"

        def configure(container: str) -> None:
            self.progress(f"building the Pushgateway image (Debian's {version})")
            self._buildah("copy", container, binary, "/bin/pushgateway", what="buildah copy")
            self._buildah(
                "config",
                "--entrypoint",
                '["/bin/pushgateway"]',
                "--cmd",
                "",
                "--user",
                "65534:65534",
                container,
                what="buildah config",
            )

        return self._on_base(base, name, self.root / f"pushgateway-{key}.tar", configure)

    def restic(self, binary: Path, version: str) -> Image:
        key = _digest(RECIPE.encode(), binary.read_bytes())
        name = f"docker.io/restic/restic:{version.removeprefix('v')}"

        def build() -> None:
            self.progress(f"building the restic {version} image (the pinned build, from scratch)")
            self._one_binary(name, binary, "/usr/bin/restic")

        return self._committed(name, self.root / f"restic-{key}.tar", build)

    def stash(self, base: Image, restic: Image) -> Image:
        key = _digest(
            context_digest().encode(), base.archive.name.encode(), restic.archive.name.encode()
        )
        name = f"docker.io/library/stash-py:dev-{key}"

        def build() -> None:
            self._ensure_in_storage(base)
            self._ensure_in_storage(restic)
            self.progress(
                "building the project's image from the Dockerfile with buildah "
                "(about a minute; again whenever the sources change)"
            )
            with tempfile.TemporaryDirectory(dir=self.root) as tmp:
                # TLS to the package registries is signed by this machine's CA: mount its
                # bundle for the build only; nothing of it lands in the image.
                pip_conf = Path(tmp) / "pip.conf"
                pip_conf.write_text("[global]\ncert = /run/stash-build/ca.crt\n")
                volumes = ["--volume", f"{pip_conf}:/etc/pip.conf:ro"]
                if HOST_CA.is_file():
                    volumes += ["--volume", f"{HOST_CA}:/run/stash-build/ca.crt:ro"]
                self._buildah(
                    "bud",
                    "--pull=never",
                    "--isolation=chroot",
                    "--layers=false",
                    *volumes,
                    "--tag",
                    name,
                    "--file",
                    str(PROJECT / "Dockerfile"),
                    str(PROJECT),
                    what="buildah bud (the project's Dockerfile)",
                    stream=True,
                )

        image = self._committed(name, self.root / f"stash-{key}.tar", build)
        self._prune("stash-", "docker.io/library/stash-py:dev-", image)
        return image

    def _prune(self, archive_prefix: str, name_prefix: str, keep: Image) -> None:
        """Drop earlier builds of an image (each source change makes one, ~0.5 GB)."""
        for old in self.root.glob(f"{archive_prefix}*.tar"):
            if old != keep.archive:
                old.unlink(missing_ok=True)
        listed = self._buildah("images", "--noheading", "--format", "{{.Name}}:{{.Tag}}", what="")
        for name in listed.split():
            if name.startswith(name_prefix) and name != keep.name:
                self._buildah("rmi", "--force", name, what=f"removing {name}")

    def all(self) -> Images:
        self.root.mkdir(parents=True, exist_ok=True)
        base = self.base()
        binaries = ensure_binaries(progress=self.progress)
        restic = self.restic(binaries.restic, binaries.versions.restic)
        return Images(
            base=base,
            pause=self.pause(),
            app=self.app(base),
            pushgateway=self.pushgateway(base),
            stash=self.stash(base, restic),
        )


def _run(command: list[str], what: str, progress: Progress | None = None) -> str:
    """Run ``command``; with ``progress``, a line every few seconds while it runs."""
    env = {**os.environ, "BUILDAH_ISOLATION": "chroot"}
    if progress is None:
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
            raise BuildError(f"{what} failed:\n{tail}")
        return done.stdout
    started = last = time.monotonic()
    lines: list[str] = []
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as proc:
        for line in proc.stdout or ():
            lines.append(line.rstrip())
            now = time.monotonic()
            if now - last >= 5:
                last = now
                step = next((x for x in reversed(lines) if x.startswith("STEP")), lines[-1])
                progress(f"  {what}: {now - started:.0f}s, {step[:100]}")
        code = proc.wait()
    if code != 0:
        raise BuildError(f"{what} failed:\n" + "\n".join(lines[-20:]))
    progress(f"  {what}: done in {time.monotonic() - started:.0f}s")
    return "\n".join(lines)
