"""``stash webhook`` (the mutating admission webhook) and ``stash certs`` (its certificates)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from api.constants import WEBHOOK_NAME
from cli.arguments import (
    DEFAULT_IMAGE,
    DEFAULT_NAMESPACE,
    log_format_argument,
    retired_pushgateway_argument,
)


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


def add_commands(sub: Any) -> None:
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
    retired_pushgateway_argument(hook)
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
    log_format_argument(hook)
    hook.set_defaults(func=cmd_webhook)

    certs = sub.add_parser("certs", help="webhook certificates")
    certs.add_argument("action", choices=["bootstrap", "local"])
    certs.add_argument("--namespace", default=DEFAULT_NAMESPACE)
    certs.add_argument("--service", default=WEBHOOK_NAME)
    certs.add_argument("--webhook-config", action="append", help="MWC to write the CA into")
    certs.add_argument("--dir", help="also write tls.crt, tls.key, ca.crt here")
    certs.add_argument("--renew", action="store_true", help="local: issue a new certificate")
    certs.add_argument("--kubeconfig")
    certs.set_defaults(func=cmd_certs)
