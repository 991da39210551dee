"""Run the webhook: invoker informers feeding the index, TLS with reload, uvicorn.

Certificates come from one of three sources:
- ``files``: read ``tls.crt``/``tls.key`` from ``cert_dir`` (cert-manager, or any other issuer);
- ``self-signed``: a CA and serving certificate kept in Secrets, renewed before expiry, the CA
  written into the webhook configuration (``certs.bootstrap``), files written to ``cert_dir``;
- ``local``: a throwaway CA and certificate for loopback, made in ``cert_dir`` (development).

With ``client_ca_file`` the webhook's port answers only clients with a certificate that CA
signed (the API server's); ``health_port`` then serves the probes and metrics over plain HTTP.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import uvicorn

from api.constants import WEBHOOK_NAME, WEBHOOK_PATH
from certs.bootstrap import CertificateKeeper, CertificateSpec, service_dns_names
from certs.files import CA_FILE, CERT_FILE, KEY_FILE, ensure_local_files
from kube import Client
from kube.informer import Informer
from kube.types import INVOKER_TYPES, NAMESPACES, REPOSITORIES, RESTORE_INVOKER_TYPES
from pods.invokers import SidecarIndex
from pods.sidecar import SidecarSettings
from webhook.app import WebhookApp, create_app, create_probe_app
from webhook.connections import KEEP_ALIVE, GuardedProtocol, loop_factory
from webhook.registration import FailurePolicy, register, webhook_configuration
from webhook.tls import CertificateReloader

log = logging.getLogger(__name__)

CertSource = Literal["files", "self-signed", "local"]
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MMAP_THRESHOLD = 256 * 1024


def bound_heap() -> bool:
    """Give every allocation over 256 KiB its own mapping, returned to the system when freed.

    glibc raises its mmap threshold each time a large block is freed, so after one 3 MiB body
    the next ones came from the heap, whose fragments were kept: over 10,000 hostile requests
    the webhook grew from 59 to 89 MB and stayed there. A fixed threshold keeps it flat (60 MB
    measured). False where the C library is not glibc.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return bool(libc and libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1)
    except (OSError, AttributeError):
        return False


@dataclass(frozen=True)
class WebhookOptions:
    image: str
    host: str = "0.0.0.0"  # noqa: S104 - in a pod the Service reaches it on the pod IP
    port: int = 8443
    cert_dir: Path = Path("/var/run/stash/certs")
    cert_source: CertSource = "files"
    namespace: str = "stash"
    service: str = "stash-webhook"
    register_url: str | None = None
    failure_policy: FailurePolicy = "Ignore"
    kubeconfig: str | None = None
    log_format: str = ""  # and this: text or json
    # Require a client certificate this CA signed: the API server's (docs/security.md).
    client_ca_file: Path | None = None
    health_port: int | None = None  # /healthz, /readyz, /metrics over plain HTTP


class InvokerCache:
    """Informers over BackupBatches, BackupConfigurations, RestoreSessions, RestoreBatches and
    Repositories (their local backends are mounted into the sidecar and stash-init), kept in a
    SidecarIndex."""

    def __init__(self, client: Client, index: SidecarIndex) -> None:
        self.index = index
        self.informers = [
            Informer(
                client,
                rt,
                on_replace=functools.partial(index.replace, kind=rt.kind),
                on_upsert=index.upsert,
                on_delete=index.delete,
            )
            for rt in (*INVOKER_TYPES.values(), *RESTORE_INVOKER_TYPES.values())
        ]
        self.informers.append(
            Informer(
                client,
                REPOSITORIES,
                on_replace=index.replace_repositories,
                on_upsert=index.upsert_repository,
                on_delete=index.delete_repository,
            )
        )
        self.informers.append(  # the tenant boundary's policies: grants, privileges, levels
            Informer(
                client,
                NAMESPACES,
                on_replace=index.replace_namespaces,
                on_upsert=index.upsert_namespace,
                on_delete=index.delete_namespace,
            )
        )

    def start(self) -> InvokerCache:
        for informer in self.informers:
            informer.start()
        return self

    def stop(self) -> None:
        for informer in self.informers:
            informer.stop()

    def synced(self) -> bool:
        return all(i.synced.is_set() for i in self.informers)


def prepare_certificates(options: WebhookOptions, client: Client) -> bytes:
    """Make sure ``cert_dir`` holds a serving certificate; return the CA bundle."""
    if options.cert_source == "local":
        host = (
            options.register_url.split("//", 1)[-1].split(":", 1)[0]
            if options.register_url
            else "127.0.0.1"
        )
        ips = (host,) if host.replace(".", "").isdigit() else ("127.0.0.1",)
        return ensure_local_files(options.cert_dir, ("localhost",), ips)
    if options.cert_source == "self-signed":
        keeper = CertificateKeeper(
            client,
            CertificateSpec(
                namespace=options.namespace,
                ca_secret=f"{options.service}-ca",
                tls_secret=f"{options.service}-tls",
                dns_names=service_dns_names(options.service, options.namespace),
            ),
            options.cert_dir,
            webhook_configs=(WEBHOOK_NAME,),
        )
        keeper.converge()
        keeper.start()
    ca_file = options.cert_dir / CA_FILE
    return ca_file.read_bytes() if ca_file.exists() else b""


def build_server(
    options: WebhookOptions, client: Client
) -> tuple[list[uvicorn.Server], InvokerCache]:
    """The webhook's server and, with a health port, the probes' (first the webhook's)."""
    ca_bundle = prepare_certificates(options, client)
    reloader = CertificateReloader(
        options.cert_dir / CERT_FILE,
        options.cert_dir / KEY_FILE,
        client_ca_file=options.client_ca_file,
    )
    if not reloader.load():
        raise RuntimeError(f"no usable certificate in {options.cert_dir}: {reloader.last_error}")
    cache = InvokerCache(client, SidecarIndex(options.namespace)).start()
    app = create_app(
        cache.index,
        SidecarSettings(
            image=options.image,
            log_format=options.log_format,
        ),
        cache_synced=cache.synced,
        reloader=reloader,
    )
    if options.register_url:
        register(
            client,
            webhook_configuration(
                operator_namespace=options.namespace,
                url=options.register_url.rstrip("/") + WEBHOOK_PATH,
                ca_bundle=ca_bundle,
                failure_policy=options.failure_policy,
            ),
        )
        log.info("registered %s at %s", WEBHOOK_NAME, options.register_url)
    servers = [uvicorn.Server(serving_config(app, options.host, options.port, reloader))]
    if options.health_port is not None:
        probes = create_probe_app(app, cache_synced=cache.synced, reloader=reloader)
        servers.append(
            uvicorn.Server(
                uvicorn.Config(
                    probes,
                    host=options.host,
                    port=options.health_port,
                    log_level="warning",
                    log_config=None,
                    access_log=False,
                    lifespan="off",
                )
            )
        )
    return servers, cache


def serving_config(
    app: WebhookApp, host: str, port: int, reloader: CertificateReloader
) -> uvicorn.Config:
    """How the webhook's port is served: TLS from ``reloader``, a deadline on every request
    head and a cap on connections (``webhook.connections``)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_context_factory=lambda _config, _default: reloader.context,
        http=GuardedProtocol,
        timeout_keep_alive=int(KEEP_ALIVE),
        log_level="warning",
        log_config=None,  # its lines go through ours (text or JSON), not a format of its own
        access_log=False,
        timeout_graceful_shutdown=10,
    )


def serve(servers: list[uvicorn.Server]) -> None:
    """Serve until the first server ends, on uvicorn's own loop (uvloop where installed), as
    Server.run would choose it, with a deadline on TLS handshakes (webhook.connections)."""
    factory = loop_factory(servers[0].config.get_loop_factory())
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_serve(servers))


async def _serve(servers: list[uvicorn.Server]) -> None:
    """Serve until the first server ends (a signal ends each), then end the others."""
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)


def run(options: WebhookOptions) -> None:
    bound_heap()
    client = Client.from_environment(options.kubeconfig)
    servers, cache = build_server(options, client)
    scheme = "mutual TLS (client certificates of the given CA only)"
    log.info(
        "serving %s on https://%s:%d%s",
        WEBHOOK_PATH,
        options.host,
        options.port,
        f", {scheme}" if options.client_ca_file else "",
    )
    if options.health_port is not None:
        log.info("probes and metrics on http://%s:%d", options.host, options.health_port)
    try:
        serve(servers)
    finally:
        cache.stop()
        client.close()
