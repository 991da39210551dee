"""``stash dev-cluster`` and ``stash demo``: the commands this package adds to ``stash`` where it
is installed (``scripts/setup``; never in the image or the product's wheel), through the
``stash.commands`` entry point."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_dev_cluster(args: argparse.Namespace) -> int:
    from devcluster import Versions, ensure_binaries
    from devcluster.manager import DevCluster, default_state_dir

    dev = DevCluster(Path(args.dir) if args.dir else default_state_dir(), progress=progress)
    if args.action == "build":
        bins = ensure_binaries(Versions.from_environment(), progress=progress)
        for path in (
            bins.etcd,
            bins.kube_apiserver,
            bins.kube_controller_manager,
            bins.kube_scheduler,
            bins.kubelet,
            bins.kubectl,
            bins.helm,
        ):
            print(path)
        for image in dev.images().all():
            print(f"{image.name} ({image.archive})")
        return 0
    if args.action == "up":
        plane = dev.up(crds=not args.no_crds)
        print(dev.describe(plane))
        return 0
    if args.action == "down":
        print("stopped" if dev.down() else "no dev cluster was running")
        return 0
    running = dev.running()
    if running is None:
        print("no dev cluster is running: start one with `stash dev-cluster up`", file=sys.stderr)
        return 1
    print(dev.env(running) if args.action == "env" else dev.describe(running), end="")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from devcluster import demo

    state = Path(args.dir) if args.dir else demo.default_state_dir()
    if args.down:
        demo.down(state)
        return 0
    return demo.run(
        state, keep=args.keep, say=lambda line: print(line, flush=True), installer=args.install
    )


def register(sub: Any) -> None:
    dev = sub.add_parser(
        "dev-cluster", help="a local cluster (control plane and a real node) for development"
    )
    dev.add_argument("action", choices=["up", "down", "env", "status", "build"])
    dev.add_argument("--dir", help="state directory (default: $XDG_STATE_HOME/stash/dev-cluster)")
    dev.add_argument("--no-crds", action="store_true", help="do not install the CRDs on `up`")
    dev.set_defaults(func=cmd_dev_cluster)

    demo_cmd = sub.add_parser("demo", help="the whole flow locally: cluster, operator, backups")
    demo_cmd.add_argument("--keep", action="store_true", help="leave everything running")
    demo_cmd.add_argument("--down", action="store_true", help="stop what --keep left running")
    demo_cmd.add_argument("--dir", help="state directory (default: $XDG_STATE_HOME/stash/demo)")
    demo_cmd.add_argument(
        "--install",
        choices=["kustomize", "helm"],
        default="kustomize",
        help="install the operator from manifests/ (kubectl apply -k) or charts/stash (helm)",
    )
    demo_cmd.set_defaults(func=cmd_demo)
