"""`perennial serve`: the champion over HTTP (FastAPI on uvicorn), bound to 127.0.0.1 by default.

    POST /predict   one row (JSON object) or many (JSON list) -> score, label, version, alias
                    (?explain=true: and each row's top three reasons, feature and SHAP value)
    GET  /health    200 once a champion is loaded, else 503 (the only route open without the
                    bearer token, when PERENNIAL_SERVE_TOKEN is set)
    GET  /version   the served versions
    GET  /metrics   Prometheus text: requests, error responses, latency histogram, served
                    versions, swap failures; and what monitoring last saw (the champion's
                    judged metric, labelled by its name: tasks/watch/monitor_metrics.py)
    GET  /docs, /openapi.json   only with `serve.docs: true` (and the token, when one is set)

A request may carry `X-Request-Key`: the same key is always scored by the same arm (A/B with
`serve.challenger_share`). The work is in `tasks.serve.serving`; this module only wires HTTP to it.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NoReturn

import orjson
from fastapi import FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import ValidationError

from tasks.core.config import PerennialConfig
from tasks.core.storage import open_storage
from tasks.registry.client import CHALLENGER, CHAMPION
from tasks.registry.metrics import one_per_row
from tasks.serve.native_scoring import ServedModel
from tasks.serve.serving import AliasPoller, Arms, ModelSlot, route
from tasks.watch.live import LiveSampler
from tasks.watch.monitor_metrics import MonitoringCollector

log = logging.getLogger("perennial.serve")

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
TOKEN_VARIABLE = "PERENNIAL_SERVE_TOKEN"

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class ServeMetrics:
    """The service's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "perennial_serve_requests",
            "Prediction requests by arm and HTTP status.",
            ["alias", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "perennial_serve_request_seconds",
            "Time to check and score a prediction request, in the service.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rows = Counter(
            "perennial_serve_rows", "Rows scored, by arm.", ["alias"], registry=self.registry
        )
        self.version = Gauge(
            "perennial_serve_model_version",
            "Registered version served by each arm (0: none).",
            ["alias"],
            registry=self.registry,
        )
        self.errors = Counter(
            "perennial_serve_error_responses",
            "Responses with an error status (4xx, 5xx) on any route, by route and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.swap_failures = Counter(
            "perennial_serve_swap_failures",
            "Versions that failed to load or warm up and were not swapped in.",
            ["alias"],
            registry=self.registry,
        )

    def served(self, arms: Arms) -> None:
        for alias, model in ((CHAMPION, arms.champion), (CHALLENGER, arms.challenger)):
            self.version.labels(alias).set(int(model.version) if model else 0)


class ErrorCounter:
    """ASGI middleware that counts every error response (4xx, 5xx) by route and status, 500s
    from an unhandled exception included: those never pass a handler's own counting. Routes are
    the app's route paths ("other" for any path it has no route for), so a scan of made-up
    paths cannot grow the metrics without bound."""

    def __init__(self, app: Any, metrics: ServeMetrics, routes: frozenset[str]) -> None:
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        route = path if path in self.routes else "other"
        status: list[int] = []

        async def send_counted(message: Any) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
                if message["status"] >= 400:
                    self.metrics.errors.labels(route, str(message["status"])).inc()
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        except Exception:
            if not status:  # no response started: the server answers 500
                self.metrics.errors.labels(route, "500").inc()
            raise


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _refusal(error: ValidationError) -> Response:
    """422 naming each field (and row index, for a list) as FastAPI does: loc starts at body."""
    detail = [
        {
            "loc": ["body", *item["loc"]],
            "field": ".".join(str(part) for part in item["loc"]) or "(body)",
            "msg": item["msg"],
            "type": item["type"],
        }
        for item in error.errors(include_url=False, include_input=False)
    ]
    return _json({"detail": detail}, 422)


async def _limited_body(request: Request, limit: int) -> bytes | None:
    """The body, or None once it passes `limit` bytes: a declared Content-Length is checked
    before anything is read, and a chunked body is counted as it streams in, so an oversized
    request costs at most `limit` bytes of memory and is never parsed."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(what: str) -> Response:
    return _json({"detail": what}, 413)


def _token_check(token: str | None) -> Any:
    """A check of `Authorization: Bearer <token>` (PERENNIAL_SERVE_TOKEN; served mode generates
    one): None lets a request through, else the refusal to send. No token: no check."""
    expected = f"Bearer {token}".encode() if token else None

    def refused(request: Request) -> Response | None:
        if expected is None:
            return None
        given = request.headers.get("authorization", "").encode()
        if hmac.compare_digest(given, expected):
            return None
        return _json({"detail": "missing or wrong bearer token"}, 401)

    return refused


def create_app(
    config: PerennialConfig,
    poller: AliasPoller | None = None,
    sampler: LiveSampler | None = None,
) -> FastAPI:
    """The service for a dataset. The first alias check happens at startup, before the first
    request; then a background thread polls every `serve.poll_seconds`. Tests may pass their
    own poller (e.g. one that never starts its thread) and live sampler (e.g. with a clock).
    Sampled rows (`serve.live_sample_rate`) are written to storage in the background and at
    shutdown."""
    metrics = ServeMetrics()
    # What monitoring last saw (the judged metric as a label: tasks/watch/monitor_metrics.py).
    metrics.registry.register(MonitoringCollector(config, open_storage(config.home)))
    if sampler is None:
        sampler = LiveSampler(config, open_storage(config.home))
    slot = poller.slot if poller else ModelSlot()
    if poller is None:
        poller = AliasPoller(
            config,
            slot,
            on_swap=metrics.served,
            on_failure=lambda alias, _version: metrics.swap_failures.labels(alias).inc(),
        )
    share, threshold = config.serve.challenger_share, config.serve.threshold
    refused = _token_check(os.environ.get(TOKEN_VARIABLE))
    max_body = config.serve.max_body_kb * 1024

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            poller.refresh()
        except Exception:  # the registry may be down at startup: keep trying in the thread
            log.exception("first check of the aliases of %s failed", config.model_name)
        metrics.served(slot.arms)
        poller.start()
        sampler.start()
        try:
            yield
        finally:
            poller.stop()
            sampler.stop()  # writes what is still buffered

    # FastAPI's own /docs, /redoc and /openapi.json are off: they would answer without the
    # token. `serve.docs: true` adds the two below, behind the token like every other route.
    app = FastAPI(
        title=f"perennial serve: {config.model_name}",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.slot, app.state.poller, app.state.metrics = slot, poller, metrics
    app.state.sampler = sampler

    # Async handlers with no awaits but the body: scoring a few rows takes tens of
    # microseconds, less than a hop to the thread pool would.
    @app.post("/predict")
    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        if (refusal := refused(request)) is not None:
            metrics.requests.labels("none", "401").inc()
            return refusal
        arms = slot.arms  # read once: a swap during this request does not touch it
        if arms.champion is None or arms.schema is None:
            metrics.requests.labels("none", "503").inc()
            return _json({"detail": f"{config.model_name} has no champion loaded yet"}, 503)
        body = await _limited_body(request, max_body)
        if body is None:
            metrics.requests.labels("none", "413").inc()
            return _too_large(
                f"request body over {config.serve.max_body_kb} KiB (serve.max_body_kb): "
                "send fewer rows per request"
            )
        try:
            rows = arms.schema.parse(body)
        except ValidationError as error:
            # Refused before routing: a refusal belongs to no arm.
            if any(item["type"] == "too_long" and not item["loc"] for item in error.errors()):
                metrics.requests.labels("none", "413").inc()
                return _too_large(
                    f"request carries more than {config.serve.max_rows} rows "
                    "(serve.max_rows): split it into several requests"
                )
            metrics.requests.labels("none", "422").inc()
            metrics.latency.observe(time.perf_counter() - started)
            return _refusal(error)
        request_key = request.headers.get("x-request-key")
        model = route(arms, share, request_key) or arms.champion
        try:
            return _scored(request, rows, model, request_key, started)
        except Exception:  # counted by its arm, like every answer it gives; logged with its cause
            log.exception("scoring %d rows with v%s failed", len(rows), model.version)
            metrics.requests.labels(model.alias, "500").inc()
            metrics.latency.observe(time.perf_counter() - started)
            return _json({"detail": f"v{model.version} failed to score this request"}, 500)

    def _scored(
        request: Request,
        rows: list[Any],
        model: ServedModel,
        request_key: str | None,
        started: float,
    ) -> Response:
        scores = model.score(rows)
        sampler.offer(rows, one_per_row(scores), model, request_key)
        predictions = [
            {**answer, "version": model.version, "alias": model.alias}
            for answer in model.answers(scores, threshold)
        ]
        if request.query_params.get("explain", "").lower() in ("true", "1"):
            for prediction, reasons in zip(predictions, model.reasons(rows), strict=True):
                prediction["reasons"] = reasons
        response = _json(
            {
                "model": config.model_name,
                "version": model.version,
                "alias": model.alias,
                "threshold": threshold,
                "predictions": predictions,
            }
        )
        metrics.requests.labels(model.alias, "200").inc()
        metrics.rows.labels(model.alias).inc(len(rows))
        metrics.latency.observe(time.perf_counter() - started)
        return response

    @app.get("/health")
    async def health() -> Response:
        champion = slot.arms.champion
        if champion is None:
            return _json({"status": "no champion loaded"}, 503)
        return _json({"status": "ok", "model": config.model_name, "champion": champion.version})

    @app.get("/version")
    async def version(request: Request) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        arms = slot.arms
        return _json(
            {
                "model": config.model_name,
                CHAMPION: arms.champion.version if arms.champion else None,
                CHALLENGER: arms.challenger.version if arms.challenger else None,
                "challenger_share": share if arms.challenger else 0.0,
            }
        )

    @app.get("/metrics")
    async def prometheus(request: Request) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if config.serve.docs:
        from fastapi.openapi.docs import get_swagger_ui_html

        @app.get("/openapi.json", include_in_schema=False)
        async def openapi(request: Request) -> Response:
            if (refusal := refused(request)) is not None:
                return refusal
            return _json(app.openapi())

        @app.get("/docs", include_in_schema=False)
        async def docs(request: Request) -> Response:
            if (refusal := refused(request)) is not None:
                return refusal
            return get_swagger_ui_html(openapi_url="/openapi.json", title=app.title)

    routes = frozenset(getattr(item, "path", "") for item in app.routes)
    app.add_middleware(ErrorCounter, metrics=metrics, routes=routes)
    return app


def refuse_open_bind(host: str, token: str | None) -> None:
    """Exit 1 with one line when `host` is beyond loopback and no token guards the service:
    every route but /health would answer anyone who can reach the port."""
    if host in LOOPBACK_HOSTS or token:
        return
    _refuse(
        f"refused: serving on {host} without {TOKEN_VARIABLE}: anyone who reaches the port "
        f"could score and read the metrics; set {TOKEN_VARIABLE} to a long random token "
        "(clients send `Authorization: Bearer <token>`) or bind --host 127.0.0.1"
    )


def _refuse(message: str) -> NoReturn:
    import sys

    print(message, file=sys.stderr)
    raise SystemExit(1)


def run(config: PerennialConfig, host: str, port: int) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM stop the poller and the server cleanly), on
    the host and port `perennial serve` was given (its options hold the defaults)."""
    import uvicorn

    refuse_open_bind(host, os.environ.get(TOKEN_VARIABLE))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # No access log: a line per request would cost more than scoring it.
    uvicorn.run(create_app(config), host=host, port=port, access_log=False, log_level="info")
