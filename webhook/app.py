"""The webhook's HTTP edge: a FastAPI app built by a factory (no module-level state).

``POST /mutate/pods`` answers AdmissionReviews; every error is mapped to HTTP here and only
here: a body we cannot read as an AdmissionReview gets 4xx with a message, anything that goes
wrong after that is answered ``allowed: true`` with a warning (fail open), never a 500.
``/healthz``, ``/readyz`` and ``/metrics`` serve the probes and Prometheus — on the webhook's
port, and on a plain-HTTP health port (``create_probe_app``) where the webhook's port requires
the API server's client certificate, which neither the kubelet nor Prometheus has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import orjson
from fastapi import FastAPI, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from api.admission import AdmissionRequest, AdmissionResponse
from api.constants import WEBHOOK_PATH
from engine.logfields import log_fields
from pods.invokers import SidecarIndex
from pods.sidecar import SidecarSettings
from webhook.errors import BodyTimeout, BodyTooLarge, WebhookError
from webhook.mutation import handle, rolled_for_restores
from webhook.review import parse_review
from webhook.tls import CertificateReloader

log = logging.getLogger(__name__)

MAX_BODY = 3 * 1024 * 1024  # the API server's own request limit is 3 MiB
# The API server gives a webhook at most 30 s for the whole call; a body still arriving after
# this long is a stalled or hostile client, whose connection is cut.
BODY_TIMEOUT = 10.0
# A pod rolled for a restore the index has not seen yet: wait this long for the index (polled,
# on the event loop: a flood of such pods waits side by side, each answered within the wait
# plus its own work, well below the registration's 5 s timeout) ...
RESTORE_WAIT = 2.0
RESTORE_POLL = 0.02
# ... then refuse the pod, so that its ReplicaSet creates it again moments later and it gets
# stash-init, for at most this long after a pod first named the restore; after that, admit it
# without and say so. The cost of a false alarm: a restore deleted before this process
# started is never seen, so the first pods of a workload restored long ago wait this long once
# after a webhook restart (its pod template keeps the restore's uid). A watch lags far less.
RESTORE_HOLD = 15.0
JSON_TYPE = "application/json"


@dataclass
class WebhookMetrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    _children: dict[str, tuple[Counter, Histogram]] = field(default_factory=dict)

    @classmethod
    def create(cls) -> WebhookMetrics:
        registry = CollectorRegistry()
        requests = Counter(
            "stash_webhook_requests",
            "Admission requests by outcome (mutated, allowed, bad_request, error)",
            ["outcome"],
            registry=registry,
        )
        latency = Histogram(
            "stash_webhook_request_duration_seconds",
            "Time to answer an admission request, by outcome",
            ["outcome"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=registry,
        )
        return cls(registry, requests, latency)

    def observe(self, outcome: str, started: float) -> None:
        children = self._children.get(outcome)
        if children is None:  # resolve each label set once: labels() is a locked lookup
            children = self._children[outcome] = (
                self.requests.labels(outcome),
                self.latency.labels(outcome),
            )
        children[0].inc()
        children[1].observe(time.perf_counter() - started)


def _certificate_metrics(registry: CollectorRegistry, reloader: CertificateReloader) -> None:
    expiry = Gauge(
        "stash_webhook_certificate_expiry_timestamp_seconds",
        "When the serving certificate expires (Unix time)",
        registry=registry,
    )
    expiry.set_function(lambda: reloader.not_after.timestamp() if reloader.not_after else 0.0)
    loads = Gauge(
        "stash_webhook_certificate_loads",
        "Serving certificates loaded since start (the first one included)",
        registry=registry,
    )
    loads.set_function(lambda: float(reloader.reloads))


class ClientGone(Exception):
    """The client disconnected before sending the whole body."""


class AdmissionEndpoint:
    """``POST /mutate/pods`` as a bare ASGI app: the hot path skips the framework machinery
    (dependency injection, validation) it does not use. Errors are mapped here, in one place.
    """

    def __init__(
        self,
        index: SidecarIndex,
        settings: SidecarSettings,
        metrics: WebhookMetrics,
        max_body: int,
        body_timeout: float = BODY_TIMEOUT,
        *,
        restore_wait: float = RESTORE_WAIT,
        restore_hold: float = RESTORE_HOLD,
    ) -> None:
        self.index = index
        self.settings = settings
        self.metrics = metrics
        self.max_body = max_body
        self.body_timeout = body_timeout
        self.restore_wait = restore_wait
        self.restore_hold = restore_hold

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        try:
            review = parse_review(await self._read(scope, receive))
        except ClientGone:
            return
        except WebhookError as exc:
            self.metrics.observe("bad_request", started)
            # A refused request may have left body bytes unread: the connection is closed.
            await _send(send, exc.status_code, _status(exc.status_code, str(exc)), close=True)
            return
        with log_fields(namespace=review.namespace, pod=review.name, request=review.uid):
            response, outcome = await self._admit(review)
        body = orjson.dumps(response.to_review(review.api_version))
        self.metrics.observe(outcome, started)
        await _send(send, 200, body)

    async def _admit(self, review: AdmissionRequest) -> tuple[AdmissionResponse, str]:
        """The answer to a parsed review and its outcome. Every step after parsing is inside
        this one guard: whatever goes wrong, the pod is admitted unchanged with a warning
        (fail open), never a 5xx."""
        try:
            held = await self._catch_up(review)
            if held is not None:
                return held, "held"
            response = handle(review, self.index, self.settings)
            return response, "mutated" if response.patch else "allowed"
        except Exception as exc:  # a bug here must never block a deployment
            log.exception(
                "admission of %s/%s failed; admitting unchanged",
                review.namespace,
                review.name or "(generated name)",
            )
            warning = f"stash webhook failed ({type(exc).__name__}); pod admitted unchanged"
            return AdmissionResponse(uid=review.uid, warnings=(warning,)), "error"

    async def _catch_up(self, review: AdmissionRequest) -> AdmissionResponse | None:
        """A pod rolled for a restore the index has not seen yet (the operator saw it first
        and re-rolled the workload) would start without stash-init. Wait briefly for the index
        (on the event loop, no thread per pod); then refuse the pod, which its ReplicaSet
        creates again, for up to ``restore_hold`` after a pod first named the restore; after
        that admit it with the restores known (the answer: None) and say so."""
        unseen = self.index.unseen_restores(rolled_for_restores(review))
        if not unseen:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.restore_wait
        while unseen and loop.time() < deadline:
            await asyncio.sleep(RESTORE_POLL)
            unseen = self.index.unseen_restores(unseen)
        if not unseen:
            return None
        now = time.monotonic()
        held_for = now - self.index.unseen_since(unseen, now)
        who = f"{review.namespace}/{review.name or '(generated name)'}"
        if held_for < self.restore_hold:
            log.info("pod %s waits for restore(s) %s: refused for now", who, ",".join(unseen))
            return AdmissionResponse(
                uid=review.uid,
                allowed=False,
                code=429,
                message=(
                    f"the pod was rolled for restore(s) {','.join(unseen)}, which the stash "
                    f"webhook has not seen yet: refused so that it is created again with "
                    f"stash-init (for at most {self.restore_hold:g} s)"
                ),
            )
        self.index.give_up_restores(unseen)
        log.warning(
            "pod %s was rolled for restore(s) %s, not seen in %g s; admitting it with the "
            "restores known",
            who,
            ",".join(unseen),
            held_for,
        )
        return None

    async def _read(self, scope: Scope, receive: Receive) -> bytes:
        try:
            async with asyncio.timeout(self.body_timeout):
                return await self._read_body(scope, receive)
        except TimeoutError:
            raise BodyTimeout(f"the body did not arrive within {self.body_timeout:g} s") from None

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                raise BodyTooLarge(
                    f"body of {value.decode()} bytes exceeds the {self.max_body}-byte limit"
                )
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise BodyTooLarge(f"body exceeds the {self.max_body}-byte limit")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _send(send: Send, status: int, body: bytes, close: bool = False) -> None:
    headers = [
        (b"content-type", JSON_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _status(code: int, message: str) -> bytes:
    return orjson.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "code": code,
            "message": message,
        }
    )


class WebhookApp:
    """The webhook's ASGI app: ``POST /mutate/pods`` goes straight to its endpoint (the hot
    path: no router, no middleware stack, which cost as much as the admission itself), every
    other request, and the lifespan, to the FastAPI app of probes and metrics (``site``)."""

    def __init__(self, endpoint: AdmissionEndpoint, site: FastAPI) -> None:
        self.endpoint = endpoint
        self.site = site

    @property
    def metrics(self) -> WebhookMetrics:
        return self.endpoint.metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == WEBHOOK_PATH
            and scope.get("method") == "POST"
        ):
            await self.endpoint(scope, receive, send)
        else:
            await self.site(scope, receive, send)


def create_app(
    index: SidecarIndex,
    settings: SidecarSettings,
    *,
    cache_synced: Callable[[], bool] = lambda: True,
    reloader: CertificateReloader | None = None,
    metrics: WebhookMetrics | None = None,
    max_body: int = MAX_BODY,
    body_timeout: float = BODY_TIMEOUT,
    restore_wait: float = RESTORE_WAIT,
    restore_hold: float = RESTORE_HOLD,
) -> WebhookApp:
    metrics = metrics or WebhookMetrics.create()
    if reloader is not None:
        _certificate_metrics(metrics.registry, reloader)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(reloader.watch()) if reloader else None
        try:
            yield
        finally:
            if task:
                task.cancel()

    app = FastAPI(
        title="stash webhook", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )

    endpoint = AdmissionEndpoint(
        index,
        settings,
        metrics,
        max_body,
        body_timeout,
        restore_wait=restore_wait,
        restore_hold=restore_hold,
    )
    # (reached through WebhookApp only for another method: FastAPI answers 405)
    app.router.routes.append(Route(WEBHOOK_PATH, endpoint, methods=["POST"]))

    _probe_routes(app, metrics, reloader, cache_synced)
    return WebhookApp(endpoint, app)


def create_probe_app(
    app: WebhookApp,
    *,
    cache_synced: Callable[[], bool] = lambda: True,
    reloader: CertificateReloader | None = None,
) -> FastAPI:
    """The probes and metrics of ``app`` alone, for the plain-HTTP health port."""
    probes = FastAPI(title="stash webhook probes", docs_url=None, redoc_url=None, openapi_url=None)
    _probe_routes(probes, app.metrics, reloader, cache_synced)
    return probes


def _probe_routes(
    app: FastAPI,
    metrics: WebhookMetrics,
    reloader: CertificateReloader | None,
    cache_synced: Callable[[], bool],
) -> None:
    @app.get("/healthz")
    async def healthz() -> Response:
        return Response("ok", media_type="text/plain")

    @app.get("/readyz")
    async def readyz() -> Response:
        problem = reloader.problem() if reloader else None
        if problem is None and not cache_synced():
            problem = "invoker cache not synced yet"
        if problem:
            return Response(problem, status_code=503, media_type="text/plain")
        return Response("ok", media_type="text/plain")

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
