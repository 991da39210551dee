"""Commands on one Repository, for a person or a restore Job: ``snapshots``, ``unlock`` (stale
locks only), ``restore`` and ``restore-dump`` (ad hoc, or a restore Job's step with
``--restoresession``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api.constants import RESTORE_INVOKER_KINDS
from cli.agent import run_restore_step, step_fields
from cli.arguments import DEFAULT_NAMESPACE, retired_pushgateway_argument
from cli.table import print_table

if TYPE_CHECKING:
    from engine.restic import Restic
    from kube import Client


def _open_repository(client: Client, args: argparse.Namespace) -> Restic:
    from agent.host_backup import load_repository, open_repository

    repo_ns = args.repository_namespace or args.namespace
    repository, secret = load_repository(client, args.repository, repo_ns)
    return open_repository(repository, secret, Path(args.cache_dir) if args.cache_dir else None)


def cmd_repository(args: argparse.Namespace) -> int:
    """restore, restore-dump, snapshots, unlock: commands on one Repository."""
    from agent import job_steps
    from api.tags import SnapshotOwner
    from engine.logfields import log_fields
    from engine.restore import RestoreSource, restore_dump, restore_paths
    from kube import Client

    client = Client.from_environment(args.kubeconfig)
    try:
        if args.command in ("restore", "restore-dump") and args.restoresession:
            with log_fields(**step_fields(args)):  # a restore Job's step: its invoker's rules
                return run_restore_step(client, args)
        with _open_repository(client, args) as restic:
            if args.command == "snapshots":
                # A shared Repository holds each namespace's snapshots apart (api.tags).
                owner = SnapshotOwner(args.namespace, args.repository_namespace or args.namespace)
                rows = [
                    [
                        s.short_id,
                        s.time[:19].replace("T", " "),
                        s.hostname,
                        ",".join(s.tags),
                        ",".join(s.paths),
                    ]
                    for s in restic.snapshots(host=args.host or None)
                    if args.all_owners or owner.owns(s.tags)
                ]
                print_table(["ID", "TIME", "HOST", "TAGS", "PATHS"], rows)
                return 0
            if args.command == "unlock":
                removed = restic.unlock_stale()
                count = "stale locks" if removed is None else f"{removed} stale lock(s)"
                print(f"removed {count}; live locks were kept")
                return 0
            what = RestoreSource(args.target_kind, args.target_name, args.hostname, args.snapshot)
            if args.command == "restore-dump":
                snap = restore_dump(restic, what, args.filename, args.restore_command)
            else:
                include = job_steps.split_list(args.paths)
                snap = restore_paths(restic, what, args.target_dir, include)
            print(f"restored snapshot {snap.short_id} of {args.target_kind}/{args.target_name}")
            return 0
    finally:
        client.close()


def _repository_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE)
    parser.add_argument("--repository", required=True, help="the Repository's name")
    parser.add_argument("--repository-namespace", help="default: --namespace")
    parser.add_argument("--cache-dir", default="", help="restic cache (default: --no-cache)")
    parser.add_argument("--kubeconfig")


def add_commands(sub: Any) -> None:
    snapshots = sub.add_parser("snapshots", help="list a Repository's snapshots")
    _repository_arguments(snapshots)
    snapshots.add_argument("--host", help="only this host's snapshots")
    snapshots.add_argument(
        "--all-owners",
        action="store_true",
        help="every namespace's snapshots (default: --namespace's only)",
    )
    unlock = sub.add_parser("unlock", help="remove a Repository's stale locks (never live ones)")
    _repository_arguments(unlock)
    for command, text in (
        ("restore", "restore a target's files (the pvc-restore Function)"),
        ("restore-dump", "stream a dump into a restore command (databases)"),
    ):
        restore = sub.add_parser(command, help=text)
        _repository_arguments(restore)
        restore.add_argument("--target-kind", required=True)
        restore.add_argument("--target-name", required=True)
        restore.add_argument("--hostname", default="host-0")
        restore.add_argument("--snapshot", default="latest")
        if command == "restore":
            restore.add_argument("--paths", default="", help="only these paths (comma-separated)")
            restore.add_argument("--target-dir", default="/", help="restore under this directory")
        else:
            restore.add_argument("--filename", required=True, help="the dump's name")
            restore.add_argument("--restore-command", required=True, help="reads the dump")
            restore.add_argument(
                "--password-env",
                default="",
                help="the variable the restore tool reads its password from (PGPASSWORD…): "
                "set from an AppBinding target's Secret unless already set",
            )
        # A restore Job's step (the pvc-restore Function): the invoker's rules choose the
        # snapshots, and the result is left in --output-dir for update-status.
        restore.add_argument(
            "--restoresession", default="", help="restore for this RestoreSession/RestoreBatch"
        )
        restore.add_argument(
            "--invoker-kind", choices=RESTORE_INVOKER_KINDS, default="RestoreSession"
        )
        restore.add_argument("--invoker-name", default="", help="default: --restoresession")
        restore.add_argument("--output-dir", default="/tmp/output")  # noqa: S108 - the emptyDir
        retired_pushgateway_argument(restore)
    for parser in sub.choices.values():
        if parser.get_default("func") is None:
            parser.set_defaults(func=cmd_repository)
