"""``stash operator``, ``stash crds`` and the commands that create BackupSessions
(``create-backupsession``, run by the trigger CronJob, and ``trigger``, run by a person)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from cli.arguments import (
    DEFAULT_IMAGE,
    DEFAULT_NAMESPACE,
    duration,
    log_format_argument,
    stop_on_signals,
)
from controller.runtime.defaults import (
    DEFAULT_SESSION_TIMEOUT,
    SIDECAR_GRACE,
    STALL_AFTER,
    WORKERS,
)

DEFAULT_PUSHGATEWAY = os.environ.get("STASH_PUSHGATEWAY_URL", "")
PUSHGATEWAY_HELP = "Pushgateway for metrics (env STASH_PUSHGATEWAY_URL; empty: no metrics)"


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


def cmd_operator(args: argparse.Namespace) -> int:
    from controller.operator import Operator, OperatorOptions
    from controller.sessions.targets import DefaultDeadline
    from kube import Client

    client = Client.from_environment(args.kubeconfig)
    stop = stop_on_signals()
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
            default_deadline=DefaultDeadline(args.default_session_timeout, args.stall_after),
            pod_name=os.environ.get("POD_NAME", ""),
            workers=args.workers,
            verify_backups=args.verify_backups == "true",
        ),
    )
    try:
        operator.run(stop)
    finally:
        client.close()
    return 0 if stop.is_set() else 1  # the Lease was lost: exit, let Kubernetes restart us


def cmd_create_backupsession(args: argparse.Namespace) -> int:
    from kube import Client
    from kube.sessions import create_session

    client = Client.from_environment(args.kubeconfig)
    try:
        session = create_session(
            client, args.invoker_kind, args.invoker_name, args.namespace, uid=args.invoker_uid
        )
    finally:
        client.close()
    print(f"backupsession {session['metadata']['namespace']}/{session['metadata']['name']}")
    return 0


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
    operator.add_argument(
        "--verify-backups",
        choices=["true", "false"],
        default="true",
        help="verify each backup invoker's newest successful session by restoring it into "
        "scratch space (docs/guides/verification.md); an invoker's annotation "
        "stash.appscode.com/verify overrides it (default %(default)s)",
    )
    operator.add_argument(
        "--default-session-timeout",
        type=duration,
        default=DEFAULT_SESSION_TIMEOUT,
        help="the deadline of a session whose invoker sets no timeOut; past it, a session "
        "whose hosts still make progress goes on (default %(default)s)",
    )
    operator.add_argument(
        "--stall-after",
        type=float,
        default=STALL_AFTER,
        help="past the default deadline, seconds without progress from any host that fail "
        "the session as stalled (default %(default)s)",
    )
    operator.add_argument("--identity", help="leader-election identity (default: host + random)")
    operator.add_argument(
        "--workers",
        type=int,
        default=WORKERS,
        help="reconciles run at once per controller (default %(default)s)",
    )
    log_format_argument(operator)
    operator.set_defaults(func=cmd_operator)


def add_commands(sub: Any) -> None:
    crds = sub.add_parser("crds", help="print the CustomResourceDefinitions (or write them)")
    crds.add_argument("--output-dir", help="write one YAML file per CRD here")
    crds.set_defaults(func=cmd_crds)
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
