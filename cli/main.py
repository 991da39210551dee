"""The ``stash`` command: one binary, one subcommand per role (like Stash's own)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api.constants import WEBHOOK_NAME
from cli import logs
from cli.table import print_table
from controller.defaults import SIDECAR_GRACE, WORKERS

# Each command imports what it uses when it runs: a sidecar (``run-backup``) or a Job step does
# not load the webhook's server, the operator, the dev cluster or certificate code.
if TYPE_CHECKING:
    from api.hosts import Identity
    from engine.host_backup import HostJob
    from engine.host_restore import HostRestore
    from engine.job_steps import StepOptions
    from engine.restic import Restic
    from kube import Client

DEFAULT_IMAGE = os.environ.get("STASH_IMAGE", "stash-py:latest")
DEFAULT_NAMESPACE = os.environ.get("POD_NAMESPACE", "stash")
DEFAULT_PUSHGATEWAY = os.environ.get("STASH_PUSHGATEWAY_URL", "")
PUSHGATEWAY_HELP = "Pushgateway for metrics (env STASH_PUSHGATEWAY_URL; empty: no metrics)"


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _stop_on_signals() -> threading.Event:
    """An event set by SIGTERM (the kubelet stopping the pod) or SIGINT."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


def cmd_crds(args: argparse.Namespace) -> int:
    import yaml

    from api.crd import all_crds

    crds = all_crds()
    if args.output_dir is None:
        sys.stdout.write(yaml.safe_dump_all(crds, sort_keys=False))
        return 0
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for crd in crds:
        path = out / f"{crd['metadata']['name']}.yaml"
        path.write_text(yaml.safe_dump(crd, sort_keys=False))
        files.append(path.name)
        print(path)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(files),
    }
    (out / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
    return 0


def cmd_dev_cluster(args: argparse.Namespace) -> int:
    from devcluster import Versions, ensure_binaries
    from devcluster.manager import DevCluster, default_state_dir

    dev = DevCluster(Path(args.dir) if args.dir else default_state_dir(), progress=_progress)
    if args.action == "build":
        bins = ensure_binaries(Versions.from_environment(), progress=_progress)
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


def cmd_webhook(args: argparse.Namespace) -> int:
    from webhook.server import WebhookOptions
    from webhook.server import run as run_webhook

    run_webhook(
        WebhookOptions(
            image=args.image,
            host=args.host,
            port=args.port,
            cert_dir=Path(args.cert_dir),
            cert_source=args.certs,
            namespace=args.namespace,
            service=args.service,
            register_url=args.register_url,
            failure_policy=args.failure_policy,
            kubeconfig=args.kubeconfig,
            log_format=args.log_format or os.environ.get("STASH_LOG_FORMAT", ""),
            client_ca_file=Path(args.client_ca_file) if args.client_ca_file else None,
            health_port=args.health_port,
        )
    )
    return 0


def cmd_operator(args: argparse.Namespace) -> int:
    from controller.operator import Operator, OperatorOptions
    from kube import Client

    client = Client.from_environment(args.kubeconfig)
    stop = _stop_on_signals()
    operator = Operator(
        client,
        OperatorOptions(
            image=args.image,
            namespace=args.namespace,
            leader_elect=not args.no_leader_elect,
            identity=args.identity or "",
            pushgateway_url=args.pushgateway_url,
            health_port=args.health_port,
            pushgateway_read_port=args.pushgateway_read_port,
            sidecar_grace=args.sidecar_grace,
            pod_name=os.environ.get("POD_NAME", ""),
            workers=args.workers,
        ),
    )
    try:
        operator.run(stop)
    finally:
        client.close()
    return 0 if stop.is_set() else 1  # the Lease was lost: exit, let Kubernetes restart us


def cmd_create_backupsession(args: argparse.Namespace) -> int:
    from controller.sessions import create_session
    from kube import Client

    client = Client.from_environment(args.kubeconfig)
    try:
        session = create_session(
            client, args.invoker_kind, args.invoker_name, args.namespace, uid=args.invoker_uid
        )
    finally:
        client.close()
    print(f"backupsession {session['metadata']['namespace']}/{session['metadata']['name']}")
    return 0


BACKUP_KINDS = ("BackupBatch", "BackupConfiguration")
RESTORE_KINDS = ("RestoreSession", "RestoreBatch")


def _host_job(args: argparse.Namespace) -> HostJob:
    from engine.host_backup import HostJob

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
    from engine.host_restore import HostRestore

    return HostRestore(
        namespace=args.namespace,
        invoker_kind=args.invoker_kind,
        invoker_name=args.invoker_name or args.restoresession,
        target_kind=args.target_kind,
        target_name=args.target_name,
        hostname=args.hostname,
    )


def _restore_step(client: Client, args: argparse.Namespace) -> int:
    from engine import job_steps

    job, opts = _host_restore(args), _step_options(args)
    step = os.environ.get("STASH_CONTAINER", args.command)  # the Job's container: hooks run here
    if args.command == "restore-dump":
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
    from engine.job_steps import StepOptions

    return StepOptions(
        output_dir=Path(args.output_dir),
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
    )


def _step_fields(args: argparse.Namespace) -> dict[str, str]:
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

    with log_fields(**_step_fields(args)):
        return _job_step(args)


def _job_step(args: argparse.Namespace) -> int:
    from engine import job_steps
    from kube import Client

    client = Client.from_environment(args.kubeconfig)
    try:
        opts = _step_options(args)
        if args.restoresession and args.command == "update-status":
            return job_steps.update_restore_status(client, _host_restore(args), opts)
        if not args.backupsession or args.invoker_kind not in BACKUP_KINDS:
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
            return job_steps.backup_dump(client, job, args.dump_command, args.filename, opts)
        return job_steps.update_status(client, job, opts)
    finally:
        client.close()


def cmd_run_hook(args: argparse.Namespace) -> int:
    from engine.batch_hook import run_batch_hook, run_restore_batch_hook
    from kube import Client

    client = Client.from_environment(args.kubeconfig)
    try:
        if args.restorebatch:
            return run_restore_batch_hook(client, args.namespace, args.restorebatch, args.hook)
        return run_batch_hook(client, args.namespace, args.backupsession, args.hook)
    finally:
        client.close()


def cmd_wipe_out(args: argparse.Namespace) -> int:
    from engine.wipe import wipe_in_pod
    from kube import Client

    client = Client.from_environment(args.kubeconfig)
    try:
        return wipe_in_pod(client, args.namespace, args.repository, args.termination_log)
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
    from engine.restore_init import InitOptions, RestoreInit
    from kube import Client

    me = _pod_identity(args)
    client = Client.from_environment(args.kubeconfig)
    options = InitOptions(
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
    )
    try:
        return RestoreInit(client, me, options).run(_stop_on_signals())
    finally:
        client.close()


def cmd_run_backup(args: argparse.Namespace) -> int:
    from engine.agent import AgentOptions, SidecarAgent
    from kube import Client

    me = _pod_identity(args)
    client = Client.from_environment(args.kubeconfig)
    stop = _stop_on_signals()
    options = AgentOptions(
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        state_dir=Path(args.state_dir),
    )
    try:
        SidecarAgent(client, me, options).run(stop)
    finally:
        client.close()
    return 0


def _open_repository(client: Client, args: argparse.Namespace) -> Restic:
    from engine.host_backup import load_repository, open_repository

    repo_ns = args.repository_namespace or args.namespace
    repository, secret = load_repository(client, args.repository, repo_ns)
    return open_repository(repository, secret, Path(args.cache_dir) if args.cache_dir else None)


def cmd_repository(args: argparse.Namespace) -> int:
    """restore, restore-dump, snapshots, unlock: commands on one Repository."""
    from api.tags import SnapshotOwner
    from engine import job_steps
    from engine.logfields import log_fields
    from engine.restore import RestoreTarget, restore_dump, restore_paths
    from kube import Client

    client = Client.from_environment(args.kubeconfig)
    try:
        if args.command in ("restore", "restore-dump") and args.restoresession:
            with log_fields(**_step_fields(args)):  # a restore Job's step: its invoker's rules
                return _restore_step(client, args)
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
            what = RestoreTarget(args.target_kind, args.target_name, args.hostname, args.snapshot)
            if args.command == "restore-dump":
                snap = restore_dump(restic, what, args.filename, args.restore_command)
            else:
                include = job_steps.split_list(args.paths)
                snap = restore_paths(restic, what, args.target_dir, include)
            print(f"restored snapshot {snap.short_id} of {args.target_kind}/{args.target_name}")
            return 0
    finally:
        client.close()


def cmd_demo(args: argparse.Namespace) -> int:
    from devcluster import demo

    state = Path(args.dir) if args.dir else demo.default_state_dir()
    if args.down:
        demo.down(state)
        return 0
    return demo.run(
        state, keep=args.keep, say=lambda line: print(line, flush=True), installer=args.install
    )


def cmd_certs(args: argparse.Namespace) -> int:
    from certs.bootstrap import CertificateSpec, bootstrap, service_dns_names
    from certs.files import ensure_local_files, write_serving_files
    from kube import Client

    if args.action == "local":
        ensure_local_files(Path(args.dir), renew=args.renew)
        print(Path(args.dir))
        return 0
    client = Client.from_environment(args.kubeconfig)
    try:
        spec = CertificateSpec(
            namespace=args.namespace,
            ca_secret=f"{args.service}-ca",
            tls_secret=f"{args.service}-tls",
            dns_names=service_dns_names(args.service, args.namespace),
        )
        ca, pair = bootstrap(client, spec, args.webhook_config or [WEBHOOK_NAME])
        if args.dir:
            write_serving_files(Path(args.dir), pair, ca.cert_pem)
        print(
            f"CA in Secret {spec.namespace}/{spec.ca_secret}; serving certificate in "
            f"{spec.namespace}/{spec.tls_secret}, valid until {pair.not_after().isoformat()}"
        )
    finally:
        client.close()
    return 0


def _repository_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE)
    parser.add_argument("--repository", required=True, help="the Repository's name")
    parser.add_argument("--repository-namespace", help="default: --namespace")
    parser.add_argument("--cache-dir", default="", help="restic cache (default: --no-cache)")
    parser.add_argument("--kubeconfig")


def _add_repository_commands(sub: Any) -> None:
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
        # A restore Job's step (the pvc-restore Function): the invoker's rules choose the
        # snapshots, and the result is left in --output-dir for update-status.
        restore.add_argument(
            "--restoresession", default="", help="restore for this RestoreSession/RestoreBatch"
        )
        restore.add_argument("--invoker-kind", choices=RESTORE_KINDS, default="RestoreSession")
        restore.add_argument("--invoker-name", default="", help="default: --restoresession")
        restore.add_argument("--output-dir", default="/tmp/output")  # noqa: S108 - the emptyDir
        _retired_pushgateway_argument(restore)
    for parser in sub.choices.values():
        if parser.get_default("func") is None:
            parser.set_defaults(func=cmd_repository)


def _retired_pushgateway_argument(parser: argparse.ArgumentParser) -> None:
    """Accepted and ignored: pods and Functions made by earlier versions still pass it. Only
    the operator writes metrics now, from the status these programs record (docs/security.md)."""
    parser.add_argument("--pushgateway-url", default="", help=argparse.SUPPRESS)


def _host_job_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments every backup step receives (see controller.builtin_tasks)."""
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE)
    parser.add_argument("--backupsession", default="", help="the BackupSession (backup steps)")
    parser.add_argument(
        "--restoresession",
        default="",
        help="update-status of a restore Job: the RestoreSession or RestoreBatch",
    )
    parser.add_argument("--invoker-kind", choices=[*BACKUP_KINDS, *RESTORE_KINDS], required=True)
    parser.add_argument("--invoker-name", required=True)
    parser.add_argument("--target-kind", required=True)
    parser.add_argument("--target-name", required=True)
    parser.add_argument("--hostname", default="host-0")
    parser.add_argument("--repository", help="the Repository (read from the invoker if unset)")
    parser.add_argument("--repository-namespace")
    parser.add_argument("--output-dir", default="/tmp/output")  # noqa: S108 - the pod's emptyDir
    parser.add_argument("--cache-dir", default="", help="restic cache (default: --no-cache)")
    _retired_pushgateway_argument(parser)
    parser.add_argument("--kubeconfig")


def _add_backup_commands(sub: Any) -> None:
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

    sidecar = sub.add_parser("run-backup", help="the stash sidecar: back up this pod's workload")
    sidecar.add_argument("--target-kind", required=True)
    sidecar.add_argument("--target-name", required=True)
    sidecar.add_argument("--cache-dir", default="", help="restic cache (default: --no-cache)")
    _retired_pushgateway_argument(sidecar)
    sidecar.add_argument(
        "--state-dir",
        default="/tmp/stash-state",  # noqa: S108 - the pod's tmp-dir emptyDir
        help="remembers started backups across container restarts",
    )
    sidecar.add_argument("--kubeconfig")
    _log_format_argument(sidecar)
    sidecar.set_defaults(func=cmd_run_backup)

    init = sub.add_parser(
        "restore-init", help="the stash-init container: restore this pod's workload first"
    )
    init.add_argument("--target-kind", required=True)
    init.add_argument("--target-name", required=True)
    init.add_argument("--cache-dir", default="", help="restic cache (default: --no-cache)")
    _retired_pushgateway_argument(init)
    init.add_argument("--kubeconfig")
    _log_format_argument(init)
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

    wipe = sub.add_parser(
        "wipe-out", help="wipe Job: delete a wipeOut Repository's data from its backend"
    )
    wipe.add_argument("--repository", required=True, help="the Repository's name")
    wipe.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", DEFAULT_NAMESPACE))
    wipe.add_argument("--termination-log", default="/dev/termination-log")
    wipe.add_argument("--kubeconfig")
    wipe.set_defaults(func=cmd_wipe_out)

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
        step.set_defaults(func=cmd_job_step)


def _log_format_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        help="text (default) or json: one object per line with the work's fields "
        "(default: $STASH_LOG_FORMAT)",
    )


def _add_operator_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    operator = sub.add_parser("operator", help="run the operator's reconcilers")
    operator.add_argument("--kubeconfig", help="default: $KUBECONFIG, then in-cluster")
    operator.add_argument("--image", default=DEFAULT_IMAGE, help="image of CronJobs and Jobs")
    operator.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="namespace of the Lease")
    operator.add_argument("--no-leader-elect", action="store_true", help="single replica only")
    operator.add_argument("--pushgateway-url", default=DEFAULT_PUSHGATEWAY, help=PUSHGATEWAY_HELP)
    operator.add_argument("--health-port", type=int, help="serve /healthz and /readyz on this port")
    operator.add_argument(
        "--pushgateway-read-port",
        type=int,
        help="serve the Pushgateway's /metrics on this port, refusing every push: the "
        "operator alone writes to --pushgateway-url, the Pushgateway's loopback address",
    )
    operator.add_argument(
        "--sidecar-grace",
        type=float,
        default=SIDECAR_GRACE,
        help="seconds a sidecar target may go without a ready pod carrying the sidecar before "
        "it fails (default %(default)s)",
    )
    operator.add_argument("--identity", help="leader-election identity (default: host + random)")
    operator.add_argument(
        "--workers",
        type=int,
        default=WORKERS,
        help="reconciles run at once per controller (default %(default)s)",
    )
    _log_format_argument(operator)
    operator.set_defaults(func=cmd_operator)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stash", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    crds = sub.add_parser("crds", help="print the CustomResourceDefinitions (or write them)")
    crds.add_argument("--output-dir", help="write one YAML file per CRD here")
    crds.set_defaults(func=cmd_crds)

    dev = sub.add_parser(
        "dev-cluster", help="a local cluster (control plane and a real node) for development"
    )
    dev.add_argument("action", choices=["up", "down", "env", "status", "build"])
    dev.add_argument("--dir", help="state directory (default: $XDG_STATE_HOME/stash/dev-cluster)")
    dev.add_argument("--no-crds", action="store_true", help="do not install the CRDs on `up`")
    dev.set_defaults(func=cmd_dev_cluster)

    hook = sub.add_parser("webhook", help="serve the mutating admission webhook")
    hook.add_argument("--image", default=DEFAULT_IMAGE, help="image of the injected sidecar")
    hook.add_argument("--host", default="0.0.0.0", help="address to listen on")  # noqa: S104
    hook.add_argument("--port", type=int, default=8443)
    hook.add_argument("--cert-dir", default="/var/run/stash/certs", help="tls.crt, tls.key")
    hook.add_argument(
        "--certs",
        choices=["files", "self-signed", "local"],
        default="files",
        help="files: read cert-dir (cert-manager); self-signed: keep a CA in a Secret and "
        "renew; local: a throwaway loopback certificate (development)",
    )
    hook.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="the operator's namespace")
    hook.add_argument("--service", default=WEBHOOK_NAME, help="the webhook's Service name")
    _retired_pushgateway_argument(hook)
    hook.add_argument("--register-url", help="register the webhook at this base URL (local use)")
    hook.add_argument(
        "--client-ca-file",
        help="answer only clients whose certificate this CA signed: the API server's, given by "
        "its AdmissionConfiguration (docs/security.md); reloaded with the serving pair",
    )
    hook.add_argument(
        "--health-port",
        type=int,
        help="also serve /healthz, /readyz and /metrics over plain HTTP on this port (the "
        "kubelet and Prometheus have no client certificate)",
    )
    hook.add_argument("--failure-policy", choices=["Ignore", "Fail"], default="Ignore")
    hook.add_argument("--kubeconfig", help="default: $KUBECONFIG, then in-cluster")
    _log_format_argument(hook)
    hook.set_defaults(func=cmd_webhook)

    _add_operator_parser(sub)

    for command, text in (
        ("create-backupsession", "create this slot's BackupSession (run by the CronJob)"),
        ("trigger", "create a BackupSession now"),
    ):
        session = sub.add_parser(command, help=text)
        session.add_argument(
            "--invoker-kind", choices=["BackupBatch", "BackupConfiguration"], default="BackupBatch"
        )
        session.add_argument("--invoker-name", required=True)
        session.add_argument("--invoker-uid", help="skip reading the invoker (least privilege)")
        session.add_argument("--namespace", default=DEFAULT_NAMESPACE)
        session.add_argument("--kubeconfig")
        session.set_defaults(func=cmd_create_backupsession)

    _add_backup_commands(sub)
    _add_repository_commands(sub)

    certs = sub.add_parser("certs", help="webhook certificates")
    certs.add_argument("action", choices=["bootstrap", "local"])
    certs.add_argument("--namespace", default=DEFAULT_NAMESPACE)
    certs.add_argument("--service", default=WEBHOOK_NAME)
    certs.add_argument("--webhook-config", action="append", help="MWC to write the CA into")
    certs.add_argument("--dir", help="also write tls.crt, tls.key, ca.crt here")
    certs.add_argument("--renew", action="store_true", help="local: issue a new certificate")
    certs.add_argument("--kubeconfig")
    certs.set_defaults(func=cmd_certs)
    return parser


def _expected_errors() -> tuple[type[Exception], ...]:
    """What a command may fail with in the normal course (said in one line): bad input, the API
    server's refusals. Only of what the command loaded (the dev cluster's errors are
    RuntimeErrors)."""
    kube_errors = sys.modules.get("kube.errors")
    found: list[type[Exception]] = [ValueError, RuntimeError]
    if kube_errors is not None:
        found.append(kube_errors.KubeError)
    return tuple(found)


# Services: a crash prints its traceback into their log (interactive commands: one line).
LONG_RUNNING = frozenset({"operator", "webhook", "run-backup", "restore-init"})


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        logs.configure(getattr(args, "log_format", None))
    except ValueError as exc:
        build_parser().error(str(exc))
    if args.command == "certs" and args.action == "local" and not args.dir:
        build_parser().error("certs local needs --dir")
    try:
        code: int = args.func(args)
    except _expected_errors() as exc:
        print(f"stash {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug of ours
        if args.command in LONG_RUNNING:  # a crash of a service: its traceback, in its log
            logging.getLogger("stash").exception("stash %s crashed", args.command)
            return 70
        # An interactive command: one line here, the traceback at debug level.
        logging.getLogger("stash").debug("internal error", exc_info=True)
        print(
            f"stash {args.command}: internal error ({type(exc).__name__}: {exc}); "
            "STASH_LOG_LEVEL=DEBUG shows where",
            file=sys.stderr,
        )
        return 70
    return code


if __name__ == "__main__":
    sys.exit(main())
