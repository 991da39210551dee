"""Benchmark a BackupBatch session beside the restic work it needs (DESIGN.md section 6, issue 15
part 2). Run: .venv/bin/python bench/session.py

A fresh local control plane and Pushgateway; the operator and one ``stash run-backup`` sidecar
per Deployment member run as processes on this machine (as in their pods: the sidecar's own
cache and state directories, its Lease), backing up small directories into a local Repository
with ``keepLast: 3``. Each round changes one file per member, then alternately:

- **session**: a BackupSession is created (as the trigger CronJob does) and timed until it is
  Succeeded with retention applied and integrity verified;
- **floor**: the same restic work run directly on a repository of the same history: the
  members' ``restic backup`` in parallel, then one ``restic forget`` over all of them and one
  ``restic check``.

Also counted (a ``restic`` wrapper first on the sidecars' PATH): restic starts per session, for
the timed batch and for a batch of ``--wide`` members, where they must be its backups plus a
constant. Targets: session <= 1.5x the floor; starts = members + constant.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api import constants as c  # noqa: E402
from api.tenancy import HOST_PATH, PRIVILEGES_ANNOTATION  # noqa: E402
from bench.controller import install_stash  # noqa: E402
from devcluster import ControlPlane, ensure_binaries  # noqa: E402
from devcluster.build import use_pinned_restic  # noqa: E402
from devcluster.services import Service, pushgateway  # noqa: E402
from kube import Client  # noqa: E402
from kube.sessions import new_session  # noqa: E402
from kube.types import BACKUP_SESSIONS  # noqa: E402
from tests.factories import batch, member  # noqa: E402

NAMESPACE = "bench"
PASSWORD = "bench-session-pw"  # noqa: S105 - a throwaway repository
KEEP_LAST = 3
TARGET_RATIO = 1.5
WRAPPER = """#!/bin/sh
echo "$(date +%T.%N) $*" >> "{log}.times"
echo "$*" >> "{log}"
exec "{real}" "$@"
"""


def _workloads(count: int, prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": f"{prefix}-{i}", "namespace": NAMESPACE},
            "spec": {
                "replicas": 0,  # no node here: the sidecars run as processes
                "selector": {"matchLabels": {"app": f"{prefix}-{i}"}},
                "template": {
                    "metadata": {"labels": {"app": f"{prefix}-{i}"}},
                    "spec": {
                        "containers": [{"name": "app", "image": "app"}],
                        "volumes": [{"name": "data", "emptyDir": {}}],
                    },
                },
            },
        }
        for i in range(count)
    ]


def _make_data(root: Path, files: int = 200) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (root / f"f{i:03d}.bin").write_bytes(os.urandom(4096))


class Bench:
    def __init__(self, work: Path, plane: ControlPlane, gateway: Service, restic: Path) -> None:
        self.work, self.plane, self.gateway = work, plane, gateway
        self.client = Client.from_kubeconfig(str(plane.kubeconfig))
        self.restic = restic
        self.procs: list[subprocess.Popen[bytes]] = []
        self.starts_log = work / "restic-starts.log"
        wrapper_dir = work / "wrapped"
        wrapper_dir.mkdir()
        wrapper = wrapper_dir / "restic"
        wrapper.write_text(WRAPPER.format(log=self.starts_log, real=restic))
        wrapper.chmod(0o755)
        self.env = {
            **os.environ,
            "PATH": f"{wrapper_dir}:{os.environ['PATH']}",
            "KUBECONFIG": str(plane.kubeconfig),
            "POD_NAMESPACE": NAMESPACE,
            "STASH_LOG_LEVEL": "INFO",
            "STASH_PUSHGATEWAY_URL": gateway.url,
        }

    def install(self) -> None:
        install_stash(self.client)
        self.client.create(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                # the local Repository is on the node: as an admin allows it (api.tenancy)
                "metadata": {"name": NAMESPACE, "annotations": {PRIVILEGES_ANNOTATION: HOST_PATH}},
            }
        )
        self.client.create(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "repo-secret", "namespace": NAMESPACE},
                "stringData": {"RESTIC_PASSWORD": PASSWORD},
            }
        )
        for name in ("repo", "wide-repo"):
            self.client.create(
                {
                    "apiVersion": c.V1ALPHA1,
                    "kind": "Repository",
                    "metadata": {"name": name, "namespace": NAMESPACE},
                    "spec": {
                        "backend": {
                            "storageSecretName": "repo-secret",
                            "local": {
                                "mountPath": str(self.work / name),
                                "hostPath": {"path": str(self.work / name)},
                            },
                        }
                    },
                }
            )

    def start(self, log: str, args: list[str], **env: str) -> None:
        out = (self.work / f"{log}.log").open("wb")
        self.procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "cli.main", *args],
                cwd=ROOT,
                env={**self.env, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        )

    def batch(self, name: str, prefix: str, count: int, repository: str) -> list[Path]:
        """A BackupBatch over ``count`` Deployments, each with a sidecar process; their data."""
        for obj in _workloads(count, prefix):
            self.client.create(obj)
        dirs = [self.work / "data" / f"{prefix}-{i}" for i in range(count)]
        members = []
        for i, data in enumerate(dirs):
            _make_data(data)
            one = member("Deployment", f"{prefix}-{i}", mounts=(("data", str(data)),))
            members.append(one)
        invoker = batch(
            name,
            NAMESPACE,
            *members,
            repository={"name": repository},
            retentionPolicy={"name": f"keep-last-{KEEP_LAST}", "keepLast": KEEP_LAST},
        )
        self.client.create(invoker)
        for i in range(count):
            pod = f"{prefix}-{i}"
            self.start(
                pod,
                [
                    "run-backup",
                    "--target-kind=Deployment",
                    f"--target-name={pod}",
                    f"--cache-dir={self.work / 'cache' / pod}",
                    f"--state-dir={self.work / 'state' / pod}",
                    f"--pushgateway-url={self.gateway.url}",
                ],
                POD_NAME=f"{pod}-6d4cf8b9c7-x2k9q",
            )
        for i in range(count):  # each watching and leading its Deployment's Lease
            self._wait_log(f"{prefix}-{i}", "watching")
        return dirs

    def _wait_log(self, name: str, words: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        path = self.work / f"{name}.log"
        while words not in path.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} never said {words!r}: {path.read_text()[-2000:]}")
            time.sleep(0.01)

    def session(self, invoker: str) -> tuple[float, Counter[str]]:
        """Create a session; seconds until it is Succeeded with retention and check recorded,
        and the restic commands it started."""
        uid = self.client.get(
            self.client.resource_type(c.V1BETA1, "BackupBatch"), invoker, NAMESPACE
        )["metadata"]["uid"]
        self.starts_log.write_text("")
        body = new_session("BackupBatch", invoker, uid, NAMESPACE, unix_seconds=int(time.time()))
        started = time.monotonic()
        created = self.client.create(body)
        name = created["metadata"]["name"]
        while True:
            status = self.client.get(BACKUP_SESSIONS, name, NAMESPACE).get("status") or {}
            done = {x["type"] for x in status.get("conditions") or [] if x.get("status") == "True"}
            if status.get("phase") in ("Failed", "Skipped"):
                batches = self.client.resource_type(c.V1BETA1, "BackupBatch")
                why = self.client.get(batches, invoker, NAMESPACE).get("status")
                raise RuntimeError(f"session {name}: {json.dumps(status)[:2000]}; {invoker}: {why}")
            wanted = {c.RETENTION_POLICY_APPLIED, c.REPOSITORY_INTEGRITY_VERIFIED}
            if status.get("phase") == "Succeeded" and wanted <= done:
                elapsed = time.monotonic() - started
                break
            if time.monotonic() - started > 300:
                raise RuntimeError(f"session {name} still {status.get('phase')}")
            time.sleep(0.02)
        time.sleep(1)  # a started restic has logged itself by now
        starts: Counter[str] = Counter()
        for line in self.starts_log.read_text().splitlines():
            words = [w for w in line.split() if not w.startswith("-")]
            starts[words[0] if words else "?"] += 1
        return elapsed, starts

    def floor(self, dirs: list[Path], repo: Path) -> float:
        """The restic work of one session, run directly: backups in parallel, one forget, one
        check."""
        env = {**os.environ, "RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD": PASSWORD}

        def run(*args: str) -> None:
            subprocess.run(
                [str(self.restic), *args], env=env, check=True, capture_output=True, timeout=300
            )

        def back_up(data: Path) -> None:
            cache = self.work / "floor-cache" / data.name
            run("backup", "--cache-dir", str(cache), "--host", "host-0", "--json",
                "--tag", f"target:Deployment/{data.name}", str(data))  # fmt: skip

        started = time.monotonic()
        with ThreadPoolExecutor(len(dirs)) as pool:
            list(pool.map(back_up, dirs))
        run("forget", "--cache-dir", str(self.work / "floor-cache" / "forget"),
            "--keep-last", str(KEEP_LAST), "--group-by", "host,paths,tags", "--json")  # fmt: skip
        run("check", "--cache-dir", str(self.work / "floor-cache" / "check"))
        return time.monotonic() - started

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(30)
        self.client.close()


def _touch(dirs: list[Path], round_: int) -> None:
    for data in dirs:
        (data / f"f{round_ % 200:03d}.bin").write_bytes(os.urandom(4096))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--wide", type=int, default=20, help="members of the restic-count batch")
    parser.add_argument("--keep", action="store_true", help="keep the logs and repositories")
    args = parser.parse_args()

    restic = use_pinned_restic(progress=lambda _: None)
    work = Path(tempfile.mkdtemp(prefix="stash-bench-session-"))
    plane = ControlPlane(work / "cp", ensure_binaries(), progress=lambda _: None)
    plane.start()
    gateway = pushgateway(work / "pushgateway")
    bench = Bench(work, plane, gateway, restic)
    sessions: list[float] = []
    floors: list[float] = []
    starts: list[Counter[str]] = []
    try:
        bench.install()
        bench.start("operator", ["operator", "--no-leader-elect", "--image", "stash-py:bench"])
        dirs = bench.batch("nightly", "web", args.members, "repo")
        floor_repo = work / "floor-repo"
        subprocess.run(
            [str(restic), "init"],
            env={**os.environ, "RESTIC_REPOSITORY": str(floor_repo), "RESTIC_PASSWORD": PASSWORD},
            check=True,
            capture_output=True,
        )
        for round_ in range(KEEP_LAST + 1):  # warm up: both repositories at keepLast + 1
            _touch(dirs, round_)
            bench.session("nightly")
            bench.floor(dirs, floor_repo)
        for run in range(args.runs):
            _touch(dirs, KEEP_LAST + 1 + run)
            order = ("session", "floor") if run % 2 == 0 else ("floor", "session")
            for side in order:
                if side == "session":
                    took, counted = bench.session("nightly")
                    sessions.append(took)
                    starts.append(counted)
                else:
                    floors.append(bench.floor(dirs, floor_repo))
            print(
                f"run {run + 1}: session {sessions[-1]:.2f}s, floor {floors[-1]:.2f}s, "
                f"restic starts {dict(starts[-1])}",
                flush=True,
            )
        wide_dirs = bench.batch("wide", "wide", args.wide, "wide-repo")
        wide: list[Counter[str]] = []
        for round_ in range(2):
            _touch(wide_dirs, round_)
            wide.append(bench.session("wide")[1])
        print(f"wide batch ({args.wide} members), second session: {dict(wide[-1])}", flush=True)
    finally:
        bench.stop()
        gateway.stop()
        plane.stop()
        if args.keep:
            print(f"logs and repositories kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    _table(args, sessions, floors, starts[-1], wide[-1])


def _table(
    args: argparse.Namespace,
    sessions: list[float],
    floors: list[float],
    timed: Counter[str],
    wide: Counter[str],
) -> None:
    session, floor = statistics.median(sessions), statistics.median(floors)
    print()
    print(f"| measure (median of {args.runs}) | session | floor | ratio | target |")
    print("|---|---:|---:|---:|---|")
    print(
        f"| {args.members} members: creation to Succeeded (s) | {session:.2f} | {floor:.2f} "
        f"| {session / floor:.2f}x | <= {TARGET_RATIO}x |"
    )
    for label, members, counted in (
        (f"{args.members} members", args.members, timed),
        (f"{args.wide} members", args.wide, wide),
    ):
        total = sum(counted.values())
        print(
            f"| {label}: restic starts per session | {total} | {members} backups | "
            f"+{total - members} | backups + a constant |"
        )
    print()
    print("restic commands per session:", {"timed": dict(timed), "wide": dict(wide)})


if __name__ == "__main__":
    main()
