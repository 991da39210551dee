"""The webhook's HTTP edge: a FastAPI app built by a factory (no module-level state).

``POST /mutate/pods`` answers AdmissionReviews; every error is mapped to HTTP here and only
here: a body we cannot read as an AdmissionReview gets 4xx with a message, anything that goes
wrong after that is answered ``allowed: true`` with a warning (fail open), never a 500.
``/healthz``, ``/readyz`` and ``/metrics`` serve the probes and Prometheus.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from fastapi import FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from api.admission import AdmissionResponse
from api.constants import WEBHOOK_PATH
from engine.invokers import SidecarIndex
from engine.sidecar import SidecarSettings
from webhook.errors import BodyTooLarge, WebhookError
from webhook.mutation import handle
from webhook.review import parse_review
from webhook.tls import CertificateReloader

log = logging.getLogger(__name__)

MAX_BODY = 3 * 1024 * 1024  # the API server's own request limit is 3 MiB
JSON_TYPE = "application/json"


@dataclass
class WebhookMetrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram

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
        self.requests.labels(outcome).inc()
        self.latency.labels(outcome).observe(time.perf_counter() - started)


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


async def _read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"body of {declared} bytes exceeds the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body exceeds the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _status(code: int, message: str) -> Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "message": message,
    }
    return Response(json.dumps(body), status_code=code, media_type=JSON_TYPE)


def create_app(
    index: SidecarIndex,
    settings: SidecarSettings,
    *,
    cache_synced: Callable[[], bool] = lambda: True,
    reloader: CertificateReloader | None = None,
    metrics: WebhookMetrics | None = None,
    max_body: int = MAX_BODY,
) -> FastAPI:
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
    app.state.metrics = metrics

    @app.post(WEBHOOK_PATH)
    async def mutate_pods(request: Request) -> Response:
        started = time.perf_counter()
        try:
            review = parse_review(await _read_capped(request, max_body))
        except WebhookError as exc:
            metrics.observe("bad_request", started)
            return _status(exc.status_code, str(exc))
        try:
            response = handle(review, index, settings)
            outcome = "mutated" if response.patch else "allowed"
        except Exception as exc:  # fail open: a bug here must never block a deployment
            log.exception(
                "admission of %s/%s failed; admitting unchanged",
                review.namespace,
                review.name or "(generated name)",
            )
            response = AdmissionResponse(
                uid=review.uid,
                warnings=(f"stash webhook failed ({type(exc).__name__}); pod admitted unchanged",),
            )
            outcome = "error"
        body = json.dumps(response.to_review(review.api_version), separators=(",", ":"))
        metrics.observe(outcome, started)
        return Response(body, media_type=JSON_TYPE)

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

    return app
