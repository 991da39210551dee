"""The programs that run in users' pods, one command each: ``run-backup`` (the ``stash``
sidecar), ``restore-init`` (``stash-init``), the backup and restore Jobs' steps (``backup-pvc``,
``backup-dump``, ``update-status``), ``run-hook`` (the hook Job), ``wipe-out`` (the wipe Job),
``finish-session`` (the finish Job), ``verify-backup`` (the verification Job) and
``restore-preview`` (``kubectl stash restore --preview``'s Job).

Each command imports what it uses when it runs: a sidecar or a Job step loads none of the
webhook's server, the operator or certificate code (the import contracts in pyproject.toml).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api.constants import BACKUP_INVOKER_KINDS, RESTORE_INVOKER_KINDS
from cli.arguments import (
    DEFAULT_NAMESPACE,
    log_format_argument,
    retired_pushgateway_argument,
    stop_on_signals,
)

if TYPE_CHECKING:
    from agent.host_backup import HostJob
    from agent.host_restore import HostRestore
    from agent.job_steps import StepOptions
    from api.hosts import Identity
    from kube import Client


def _host_job(args: argparse.Namespace) -> HostJob:
    from agent.host_backup import HostJob

    return HostJob(
        namespace=args.namespace,
        session=args.backupsession,
        invoker_kind=args.invoker_kind,
        invoker_name=args.invoker_name,
        target_kind=args.target_kind,
        target_name=args.target_name,
        hostname=args.hostname,
    )


def _host_restore(args: argparse.Namespace) -> HostRestore:
    from agent.host_restore import HostRestore

    return HostRestore(
        namespace=args.namespace,
        invoker_kind=args.invoker_kind,
        invoker_name=args.invoker_name or args.restoresession,
        target_kind=args.target_kind,
        target_name=args.target_name,
        hostname=args.hostname,
    )


def run_restore_step(client: Client, args: argparse.Namespace) -> int:
    from agent import job_steps

    job, opts = _host_restore(args), _step_options(args)
    step = os.environ.get("STASH_CONTAINER", args.command)  # the Job's container: hooks run here
    if args.command == "restore-dump":
        job_steps.lend_password(args.password_env)
        return job_steps.restore_dump_step(
            client,
            job,
            args.filename,
            args.restore_command,
            opts,
            step=step,
            snapshot=args.snapshot,
        )
    return job_steps.restore_step(client, job, args.target_dir, opts, step)


def _step_options(args: argparse.Namespace) -> StepOptions:
    from agent.job_steps import StepOptions

    return StepOptions(
        output_dir=Path(args.output_dir),
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
    )


def step_fields(args: argparse.Namespace) -> dict[str, str]:
    """What a Job step's log lines are about."""
    return {
        "namespace": args.namespace,
        "invoker": f"{args.invoker_kind}/{args.invoker_name or args.restoresession}",
        "session": getattr(args, "backupsession", "") or "",
        "target": f"{args.target_kind}/{args.target_name}",
        "host": args.hostname,
    }


def cmd_job_step(args: argparse.Namespace) -> int:
    from engine.logfields import log_fields

    with log_fields(**step_fields(args)):
        return _job_step(args)


def _job_step(args: argparse.Namespace) -> int:
    from agent import job_steps
    from kube import Client

    client = Client.from_environment(args.kubeconfig)
    try:
        opts = _step_options(args)
        if args.restoresession and args.command == "update-status":
            return job_steps.update_restore_status(client, _host_restore(args), opts)
        if not args.backupsession or args.invoker_kind not in BACKUP_INVOKER_KINDS:
            raise ValueError(
                f"{args.command}: --backupsession and a backup --invoker-kind are needed"
            )
        job = _host_job(args)
        if args.command == "backup-pvc":
            return job_steps.backup_pvc(
                client,
                job,
                job_steps.split_list(args.paths),
                job_steps.split_list(args.exclude),
                opts,
            )
        if args.command == "backup-dump":
            job_steps.lend_password(args.password_env)
            return job_steps.backup_dump(client, job, args.dump_command, args.filename, opts)
        return job_steps.update_status_step(client, job, opts)
    finally:
        client.close()


def cmd_run_hook(args: argparse.Namespace) -> int:
    from agent.run_hook import run_batch_hook, run_restore_batch_hook
    from kube import Client

    client = Client.from_environment(args.kubeconfig)
    try:
        if args.restorebatch:
            return run_restore_batch_hook(client, args.namespace, args.restorebatch, args.hook)
        return run_batch_hook(client, args.namespace, args.backupsession, args.hook)
    finally:
        client.close()


def cmd_wipe_out(args: argparse.Namespace) -> int:
    from agent.wipe_out import wipe_in_pod
    from kube import Client

    client = Client.from_environment(args.kubeconfig)
    try:
        return wipe_in_pod(client, args.namespace, args.repository, args.termination_log)
    finally:
        client.close()


def cmd_verify_backup(args: argparse.Namespace) -> int:
    from agent.verify_backup import VerifyRequest, verify_in_pod
    from engine.logfields import log_fields
    from kube import Client

    request = VerifyRequest(
        namespace=args.namespace,
        invoker_kind=args.invoker_kind,
        invoker_name=args.invoker_name,
        session=args.backupsession,
        max_bytes=args.max_bytes,
        scratch=Path(args.scratch_dir),
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
    )
    client = Client.from_environment(args.kubeconfig)
    try:
        with log_fields(namespace=args.namespace, session=args.backupsession):
            return verify_in_pod(client, request, args.termination_log)
    finally:
        client.close()


def cmd_restore_preview(args: argparse.Namespace) -> int:
    from agent.restore_preview import PreviewRequest, preview_in_pod
    from pods.preview import REPOSITORY_ENV

    request = PreviewRequest(
        namespace=args.namespace,
        target_kind=args.target_kind,
        target_name=args.target_name,
        host=args.host,
        snapshot=args.snapshot,
        paths=tuple(p for p in args.paths.split(",") if p),
        target_dir=args.target_dir,
    )
    return preview_in_pod(
        os.environ.get(REPOSITORY_ENV, ""), Path(args.secret_dir), request, args.termination_log
    )


def cmd_finish_session(args: argparse.Namespace) -> int:
    from agent import job_steps
    from agent.host_backup import HostJob
    from engine.logfields import log_fields
    from kube import Client

    job = HostJob(
        args.namespace, args.backupsession, args.invoker_kind, args.invoker_name, "", "", ""
    )
    client = Client.from_environment(args.kubeconfig)
    try:
        with log_fields(namespace=args.namespace, session=args.backupsession):
            return job_steps.finish_step(client, job, _step_options(args))
    finally:
        client.close()


def _pod_identity(args: argparse.Namespace) -> Identity:
    """The pod a sidecar or stash-init runs in (the downward API) and the workload it serves."""
    from api.hosts import Identity

    me = Identity(
        namespace=os.environ.get("POD_NAMESPACE", DEFAULT_NAMESPACE),
        target_kind=args.target_kind,
        target_name=args.target_name,
        pod_name=os.environ.get("POD_NAME", ""),
        node_name=os.environ.get("NODE_NAME", ""),
    )
    if not me.pod_name:
        raise ValueError("POD_NAME is not set (the downward API's metadata.name)")
    return me


def cmd_restore_init(args: argparse.Namespace) -> int:
    from agent.restore_init import InitOptions, RestoreInit
    from kube import Client

    me = _pod_identity(args)
    client = Client.from_environment(args.kubeconfig)
    options = InitOptions(
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
    )
    try:
        return RestoreInit(client, me, options).run(stop_on_signals())
    finally:
        client.close()


def cmd_run_backup(args: argparse.Namespace) -> int:
    from agent.run_backup import AgentOptions, SidecarAgent
    from kube import Client

    me = _pod_identity(args)
    client = Client.from_environment(args.kubeconfig)
    stop = stop_on_signals()
    options = AgentOptions(
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        state_dir=Path(args.state_dir),
    )
    try:
        SidecarAgent(client, me, options).run(stop)
    finally:
        client.close()
    return 0


def _host_job_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments every backup step receives (see controller.jobs.builtin_tasks)."""
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE)
    parser.add_argument("--backupsession", default="", help="the BackupSession (backup steps)")
    parser.add_argument(
        "--restoresession",
        default="",
        help="update-status of a restore Job: the RestoreSession or RestoreBatch",
    )
    parser.add_argument(
        "--invoker-kind", choices=[*BACKUP_INVOKER_KINDS, *RESTORE_INVOKER_KINDS], required=True
    )
    parser.add_argument("--invoker-name", required=True)
    parser.add_argument("--target-kind", required=True)
    parser.add_argument("--target-name", required=True)
    parser.add_argument("--hostname", default="host-0")
    parser.add_argument("--repository", help="the Repository (read from the invoker if unset)")
    parser.add_argument("--repository-namespace")
    parser.add_argument("--output-dir", default="/tmp/output")  # noqa: S108 - the pod's emptyDir
    parser.add_argument("--cache-dir", default="", help="restic cache (default: --no-cache)")
    retired_pushgateway_argument(parser)
    parser.add_argument("--kubeconfig")


def add_commands(sub: Any) -> None:
    sidecar = sub.add_parser("run-backup", help="the stash sidecar: back up this pod's workload")
    sidecar.add_argument("--target-kind", required=True)
    sidecar.add_argument("--target-name", required=True)
    sidecar.add_argument("--cache-dir", default="", help="restic cache (default: --no-cache)")
    retired_pushgateway_argument(sidecar)
    sidecar.add_argument(
        "--state-dir",
        default="/tmp/stash-state",  # noqa: S108 - the pod's tmp-dir emptyDir
        help="remembers started backups across container restarts",
    )
    sidecar.add_argument("--kubeconfig")
    log_format_argument(sidecar)
    sidecar.set_defaults(func=cmd_run_backup)

    init = sub.add_parser(
        "restore-init", help="the stash-init container: restore this pod's workload first"
    )
    init.add_argument("--target-kind", required=True)
    init.add_argument("--target-name", required=True)
    init.add_argument("--cache-dir", default="", help="restic cache (default: --no-cache)")
    retired_pushgateway_argument(init)
    init.add_argument("--kubeconfig")
    log_format_argument(init)
    init.set_defaults(func=cmd_restore_init)

    hook = sub.add_parser(
        "run-hook", help="hook Job: run a BackupBatch's or RestoreBatch's own pre/post hook"
    )
    which = hook.add_mutually_exclusive_group(required=True)
    which.add_argument("--backupsession", help="a BackupBatch's hook, for this session")
    which.add_argument("--restorebatch", help="this RestoreBatch's own hook")
    hook.add_argument(
        "--hook", required=True, choices=["preBackup", "postBackup", "preRestore", "postRestore"]
    )
    hook.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", DEFAULT_NAMESPACE))
    hook.add_argument("--kubeconfig")
    hook.set_defaults(func=cmd_run_hook)

    _add_operator_job_commands(sub)

    for command, text in (
        ("backup-pvc", "backup Job step: back up the mounted paths"),
        ("backup-dump", "backup Job step: back up a dump command's output (databases)"),
        ("update-status", "backup Job step: record the result, push metrics"),
    ):
        step = sub.add_parser(command, help=text)
        _host_job_arguments(step)
        if command == "backup-pvc":
            step.add_argument("--paths", required=True, help="comma-separated paths")
            step.add_argument("--exclude", default="", help="comma-separated patterns")
        if command == "backup-dump":
            step.add_argument("--dump-command", required=True, help="writes the dump to stdout")
            step.add_argument("--filename", required=True, help="the dump's name in the snapshot")
            step.add_argument(
                "--password-env",
                default="",
                help="the variable the dump tool reads its password from (PGPASSWORD…): set from "
                "an AppBinding target's Secret unless already set",
            )
        step.set_defaults(func=cmd_job_step)


def _add_operator_job_commands(sub: Any) -> None:
    """The programs of the operator's own Jobs: wipe, finish, verification."""
    wipe = sub.add_parser(
        "wipe-out", help="wipe Job: delete a wipeOut Repository's data from its backend"
    )
    wipe.add_argument("--repository", required=True, help="the Repository's name")
    wipe.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", DEFAULT_NAMESPACE))
    wipe.add_argument("--termination-log", default="/dev/termination-log")
    wipe.add_argument("--kubeconfig")
    wipe.set_defaults(func=cmd_wipe_out)

    finish = sub.add_parser(
        "finish-session",
        help="finish Job: a session's retention and integrity check, when its last host died",
    )
    finish.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", DEFAULT_NAMESPACE))
    finish.add_argument("--backupsession", required=True)
    finish.add_argument("--invoker-kind", choices=BACKUP_INVOKER_KINDS, required=True)
    finish.add_argument("--invoker-name", required=True)
    finish.add_argument("--output-dir", default="/tmp/output")  # noqa: S108 - the pod's emptyDir
    finish.add_argument("--cache-dir", default="", help="restic cache (default: --no-cache)")
    finish.add_argument("--kubeconfig")
    finish.set_defaults(func=cmd_finish_session)

    verify = sub.add_parser(
        "verify-backup",
        help="verification Job: restore a session's snapshots into scratch space and prove them",
    )
    verify.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", DEFAULT_NAMESPACE))
    verify.add_argument("--backupsession", required=True)
    verify.add_argument("--invoker-kind", choices=BACKUP_INVOKER_KINDS, required=True)
    verify.add_argument("--invoker-name", required=True)
    verify.add_argument("--max-bytes", type=int, default=1 << 30, help="what it may restore")
    verify.add_argument("--scratch-dir", required=True, help="emptied before and after each")
    verify.add_argument("--cache-dir", default="", help="restic cache (default: --no-cache)")
    verify.add_argument("--termination-log", default="/dev/termination-log")
    verify.add_argument("--kubeconfig")
    verify.set_defaults(func=cmd_verify_backup)

    preview = sub.add_parser(
        "restore-preview",
        help="preview Job (kubectl stash restore --preview): what a restore would change",
    )
    preview.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", DEFAULT_NAMESPACE))
    preview.add_argument("--target-kind", required=True)
    preview.add_argument("--target-name", required=True)
    preview.add_argument("--host", required=True, help="the restic host whose snapshot")
    preview.add_argument("--snapshot", default="latest")
    preview.add_argument("--paths", default="", help="comma-separated: only these")
    preview.add_argument("--target-dir", default="/", help="where the restore would write")
    preview.add_argument("--secret-dir", required=True, help="the storage Secret, mounted")
    preview.add_argument("--termination-log", default="/dev/termination-log")
    preview.set_defaults(func=cmd_restore_preview)
