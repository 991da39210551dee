"""The ``stash`` command: one binary, one subcommand per role (like Stash's own)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from api.crd import all_crds
from devcluster import BuildError, StartError, Versions, ensure_binaries
from devcluster.manager import DevCluster, default_state_dir
from kube import KubeError


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_crds(args: argparse.Namespace) -> int:
    crds = all_crds()
    if args.output_dir is None:
        sys.stdout.write(yaml.safe_dump_all(crds, sort_keys=False))
        return 0
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for crd in crds:
        path = out / f"{crd['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(crd, sort_keys=False))
        print(path)
    return 0


def cmd_dev_cluster(args: argparse.Namespace) -> int:
    dev = DevCluster(Path(args.dir), progress=_progress)
    if args.action == "build":
        bins = ensure_binaries(Versions.from_environment(), progress=_progress)
        for path in (bins.etcd, bins.kube_apiserver, bins.kube_controller_manager, bins.kubectl):
            print(path)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stash", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    crds = sub.add_parser("crds", help="print the CustomResourceDefinitions (or write them)")
    crds.add_argument("--output-dir", help="write one YAML file per CRD here")
    crds.set_defaults(func=cmd_crds)

    dev = sub.add_parser("dev-cluster", help="a local control plane for development and tests")
    dev.add_argument("action", choices=["up", "down", "env", "status", "build"])
    dev.add_argument("--dir", default=str(default_state_dir()), help="state directory")
    dev.add_argument("--no-crds", action="store_true", help="do not install the CRDs on `up`")
    dev.set_defaults(func=cmd_dev_cluster)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (BuildError, StartError, KubeError) as exc:
        print(f"stash {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
