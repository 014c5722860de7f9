"""`perennial serve`: the champion over HTTP (FastAPI on uvicorn), bound to 127.0.0.1 by default.

    POST /predict   one row (JSON object) or many (JSON list) -> score, label, version, alias
                    (?explain=true: and each row's top three reasons, feature and SHAP value)
    POST /invocations   MLflow's scoring protocol, as `mlflow models serve` answers it
    /v2/...         the Open Inference Protocol (KServe v2): health, model metadata, infer
    GET  /health    200 once a champion is loaded, else 503 (open without the bearer token,
                    with /ping, /v2/health/live and /v2/health/ready, when PERENNIAL_SERVE_TOKEN
                    is set)
    GET  /version   the served versions
    GET  /metrics   Prometheus text: requests by protocol, error responses, latency histogram,
                    served versions, swap failures, the live-sample backlog, and the pipeline's
                    state (registry champion, last training, realized and estimated metric)
    GET  /docs, /openapi.json   only with `serve.docs: true` (and the token, when one is set)

A request may carry `X-Request-Key`: the same key is always scored by the same arm (A/B with
`serve.challenger_share`). Every scoring protocol takes the same path (`serve` in `create_app`):
token, size limit, the champion's schema, routing, scoring, live sampling and metrics; the
protocols (`tasks/serve/protocols.py`) only read their payloads and write their answers. The work
is in `tasks.serve`; this module only wires HTTP to it.
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
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from pydantic import ValidationError

from tasks.core.config import PerennialConfig
from tasks.core.storage import open_storage
from tasks.registry.client import CHALLENGER, CHAMPION
from tasks.registry.metrics import one_per_row
from tasks.serve.mlflow_scoring import MLFLOW
from tasks.serve.native_scoring import ServedModel
from tasks.serve.open_inference import OPEN_INFERENCE, model_metadata
from tasks.serve.protocols import (
    PREDICT,
    Refused,
    Reply,
    Scored,
    ScoringProtocol,
    too_many_rows,
)
from tasks.serve.serving import AliasPoller, Arms, ModelSlot, route
from tasks.watch.live import LiveSampler
from tasks.watch.pipeline_state import PipelineWatcher

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
            "Scoring requests by arm, HTTP status and protocol (predict, invocations, v2).",
            ["alias", "status", "protocol"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "perennial_serve_request_seconds",
            "Time to check and score a scoring request, in the service (every protocol).",
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
        for alias in (CHAMPION, CHALLENGER):  # at 0 from the start: rules read their increase
            self.swap_failures.labels(alias)

    def served(self, arms: Arms) -> None:
        for alias, model in ((CHAMPION, arms.champion), (CHALLENGER, arms.challenger)):
            self.version.labels(alias).set(int(model.version) if model else 0)


class LiveSampleCollector:
    """The live sampler's backlog (rows waiting to be written) and the rows it had to drop,
    read at each scrape."""

    def __init__(self, sampler: LiveSampler) -> None:
        self.sampler = sampler

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Any:
        yield GaugeMetricFamily(
            "perennial_serve_live_backlog_rows",
            "Sampled live rows waiting to be written to storage.",
            value=self.sampler.backlog,
        )
        yield CounterMetricFamily(
            "perennial_serve_live_dropped_rows",
            "Sampled live rows dropped because storage stayed unavailable.",
            value=self.sampler.dropped,
        )


class ErrorCounter:
    """ASGI middleware that counts every error response (4xx, 5xx) by route and status, 500s
    from an unhandled exception included: those never pass a handler's own counting. Routes are
    the app's route templates (`/v2/models/{name}/infer`; "other" for any path it has no route
    for), so a scan of made-up paths cannot grow the metrics without bound."""

    def __init__(self, app: Any, metrics: ServeMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: list[int] = []

        def route() -> str:  # the router records the route it matched in the scope
            return str(getattr(scope.get("route"), "path", None) or "other")

        async def send_counted(message: Any) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
                if message["status"] >= 400:
                    self.metrics.errors.labels(route(), str(message["status"])).inc()
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        except Exception:
            if not status:  # no response started: the server answers 500
                self.metrics.errors.labels(route(), "500").inc()
            raise


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _response(reply: Reply) -> Response:
    return Response(
        reply.body,
        status_code=reply.status,
        media_type=reply.media_type,
        headers=reply.headers or None,
    )


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


def _token_check(token: str | None) -> Any:
    """A check of `Authorization: Bearer <token>` (PERENNIAL_SERVE_TOKEN; served mode generates
    one): None lets a request through, else the refusal to send, in the shape of the protocol
    asked (`/predict`'s by default). No token: no check."""
    expected = f"Bearer {token}".encode() if token else None

    def refused(request: Request, protocol: ScoringProtocol = PREDICT) -> Response | None:
        if expected is None:
            return None
        given = request.headers.get("authorization", "").encode()
        if hmac.compare_digest(given, expected):
            return None
        return _response(protocol.refusal(401, "missing or wrong bearer token"))

    return refused


def create_app(
    config: PerennialConfig,
    poller: AliasPoller | None = None,
    sampler: LiveSampler | None = None,
    pipeline: PipelineWatcher | None = None,
) -> FastAPI:
    """The service for a dataset. The first alias check happens at startup, before the first
    request; then a background thread polls every `serve.poll_seconds`. Tests may pass their
    own poller (e.g. one that never starts its thread), live sampler (e.g. with a clock) and
    pipeline watcher; a test that brings its own poller gets no pipeline watcher unless it
    passes one (the watcher reads the real registry). Sampled rows (`serve.live_sample_rate`)
    are written to storage in the background and at shutdown."""
    metrics = ServeMetrics()
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
        pipeline = pipeline or PipelineWatcher(config, sampler.storage)
    metrics.registry.register(LiveSampleCollector(sampler))
    if pipeline is not None:
        metrics.registry.register(pipeline)
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
        if pipeline is not None:
            pipeline.start()
        try:
            yield
        finally:
            poller.stop()
            sampler.stop()  # writes what is still buffered
            if pipeline is not None:
                pipeline.stop()

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
    app.state.sampler, app.state.pipeline = sampler, pipeline

    def unknown_model(name: str | None) -> str | None:
        if name is None or name == config.model_name:
            return None
        return f"unknown model {name!r}: this server serves {config.model_name!r}"

    def pinned_arm(arms: Arms, version: str | None) -> ServedModel | str | None:
        """The arm serving `version` (a client may pin one), or why there is none."""
        if version is None:
            return None
        for model in (arms.champion, arms.challenger):
            if model is not None and model.version == version:
                return model
        served = [f"v{m.version}" for m in (arms.champion, arms.challenger) if m is not None]
        return f"v{version} of {config.model_name} is not served (serving {', '.join(served)})"

    # One path for every protocol. Async with no awaits but the body: scoring a few rows takes
    # tens of microseconds, less than a hop to the thread pool would.
    async def serve(
        request: Request,
        protocol: ScoringProtocol,
        name: str | None = None,
        version: str | None = None,
    ) -> Response:
        started = time.perf_counter()

        def counted(reply: Reply, alias: str = "none", timed: bool = False) -> Response:
            metrics.requests.labels(alias, str(reply.status), protocol.name).inc()
            if timed:
                metrics.latency.observe(time.perf_counter() - started)
            return _response(reply)

        if (refusal := refused(request, protocol)) is not None:
            metrics.requests.labels("none", "401", protocol.name).inc()
            return refusal
        if (unknown := unknown_model(name)) is not None:
            return counted(protocol.refusal(404, unknown))
        arms = slot.arms  # read once: a swap during this request does not touch it
        if arms.champion is None or arms.schema is None:
            return counted(protocol.refusal(503, f"{config.model_name} has no champion loaded yet"))
        pinned = pinned_arm(arms, version)
        if isinstance(pinned, str):
            return counted(protocol.refusal(404, pinned))
        body = await _limited_body(request, max_body)
        if body is None:
            return counted(
                protocol.refusal(
                    413,
                    f"request body over {config.serve.max_body_kb} KiB (serve.max_body_kb): "
                    "send fewer rows per request",
                )
            )
        try:
            rows, context = protocol.read(
                body, request.headers, request.query_params, arms.schema, arms.champion
            )
        except ValidationError as error:
            # Refused before routing: a refusal belongs to no arm.
            if too_many_rows(error):
                return counted(
                    protocol.refusal(
                        413,
                        f"request carries more than {config.serve.max_rows} rows "
                        "(serve.max_rows): split it into several requests",
                    )
                )
            return counted(protocol.invalid(error), timed=True)
        except Refused as refusal_of_payload:
            reply = protocol.refusal(refusal_of_payload.status, refusal_of_payload.message)
            return counted(reply, timed=True)
        request_key = request.headers.get("x-request-key")
        model = pinned or route(arms, share, request_key) or arms.champion
        try:
            scores = model.score(rows)
            sampler.offer(rows, one_per_row(scores), model, request_key)
            answers = model.answers(scores, threshold)  # the one place an answer is built
            scored = Scored(config.model_name, model, rows, scores, answers, threshold)
            reply = protocol.answer(scored, context)
        except Exception:  # counted by its arm, like every answer it gives; logged with its cause
            log.exception("scoring %d rows with v%s failed", len(rows), model.version)
            failed = protocol.refusal(500, f"v{model.version} failed to score this request")
            return counted(failed, model.alias, timed=True)
        metrics.rows.labels(model.alias).inc(len(rows))
        return counted(reply, model.alias, timed=True)

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        return await serve(request, PREDICT)

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        return await serve(request, MLFLOW)

    # The path's name and version are read from the request, not declared as parameters:
    # FastAPI would validate them on every request, a cost /predict does not pay.
    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(request: Request) -> Response:
        path = request.path_params
        return await serve(request, OPEN_INFERENCE, path["name"], path.get("version"))

    def v2_reply(status: int, payload: Any) -> Response:
        if status >= 400:
            return _response(OPEN_INFERENCE.refusal(status, str(payload)))
        return _json(payload, status)

    def v2_model(request: Request, name: str, version: str | None, ready: bool) -> Response:
        """Model metadata, or its readiness (`ready`), as the Open Inference Protocol says."""
        if (refusal := refused(request, OPEN_INFERENCE)) is not None:
            return refusal
        if (unknown := unknown_model(name)) is not None:
            return v2_reply(404, unknown)
        arms = slot.arms
        if arms.champion is None or arms.schema is None:
            return v2_reply(503, f"{config.model_name} has no champion loaded yet")
        pinned = pinned_arm(arms, version)
        if isinstance(pinned, str):
            return v2_reply(404, pinned)
        if ready:
            return v2_reply(200, {"name": name, "ready": True})
        served = [pinned] if pinned else [m for m in (arms.champion, arms.challenger) if m]
        return v2_reply(200, model_metadata(config.model_name, arms.schema, served))

    @app.get("/v2/health/live")
    async def v2_live() -> Response:
        return v2_reply(200, {"live": True})

    @app.get("/v2/health/ready")
    async def v2_ready() -> Response:
        if slot.arms.champion is None:
            return v2_reply(503, f"{config.model_name} has no champion loaded yet")
        return v2_reply(200, {"ready": True})

    @app.get("/v2")
    async def v2_server(request: Request) -> Response:
        if (refusal := refused(request, OPEN_INFERENCE)) is not None:
            return refusal
        from importlib.metadata import version as installed

        return v2_reply(
            200,
            {
                "name": "perennial",
                "version": installed("perennial"),
                "extensions": ["binary_tensor_data"],
            },
        )

    @app.get("/v2/models/{name}")
    async def v2_metadata(request: Request, name: str) -> Response:
        return v2_model(request, name, None, ready=False)

    @app.get("/v2/models/{name}/versions/{version}")
    async def v2_version_metadata(request: Request, name: str, version: str) -> Response:
        return v2_model(request, name, version, ready=False)

    @app.get("/v2/models/{name}/ready")
    async def v2_model_ready(request: Request, name: str) -> Response:
        return v2_model(request, name, None, ready=True)

    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def v2_version_ready(request: Request, name: str, version: str) -> Response:
        return v2_model(request, name, version, ready=True)

    @app.get("/health")
    @app.get("/ping")  # MLflow's scoring server answers both: its clients wait on /ping
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

    app.add_middleware(ErrorCounter, metrics=metrics)
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
