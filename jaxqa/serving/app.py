"""The HTTP side of `jaxqa serve`: Starlette routes on uvicorn. `POST /v1/answer` reads the body (at most
--max_request_bytes), checks it (`schema`), hands it to the worker (`batcher`) and awaits the answer without
holding the event loop; `GET /health` says whether the programs are compiled; `GET /metrics` is Prometheus'.
Every refusal is a JSON {"error", "field"} with a 4xx; SIGTERM (or Ctrl-C) stops accepting connections,
answers every request already received, stops the worker and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jaxqa.data.features import check_window
from jaxqa.serving import schema
from jaxqa.serving.batcher import Batcher, InternalError, NotReady
from jaxqa.serving.metrics import Metrics
from jaxqa.serving.schema import RequestError


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it passes `limit` bytes, declared or read."""
    declared = request.headers.get("content-length", "")
    too_large = RequestError(413, "body", f"more than this server's --max_request_bytes {limit}; send less per "
                                          "request")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def http_error(_request: Request, err: HTTPException) -> Response:
    """404, 405: JSON like every other refusal."""
    return JSONResponse({"error": f"{err.detail}; the routes are POST /v1/answer, GET /health, GET /metrics",
                         "field": None}, err.status_code, err.headers)


def build_app(batcher: Batcher, metrics: Metrics, limits: schema.Limits, *, max_request_bytes: int,
              about: dict) -> Starlette:
    """The app; `about` (model, settings) is shown by /health."""

    async def answer(request: Request) -> Response:
        metrics.in_progress.inc()
        started, future = time.perf_counter(), None
        batcher.arriving += 1  # the worker may wait for it to join the next batch
        try:
            query = schema.parse(await read_body(request, max_request_bytes), limits)
            future = batcher.submit(query)
            body = await asyncio.wrap_future(future)
        except RequestError as err:
            return refuse(err.kind, err.status, err.body())
        except NotReady as err:
            return refuse("not_ready", 503, {"error": str(err), "field": None}, {"Retry-After": "1"})
        except InternalError as err:
            return refuse("internal", 500, {"error": f"internal error, not the request's: {err}", "field": None})
        finally:
            metrics.in_progress.dec()
            if future is None:  # refused before it was queued
                batcher.arriving -= 1
        metrics.requests.inc()
        metrics.latency.observe(time.perf_counter() - started)
        return JSONResponse(body)

    def refuse(kind: str, status: int, body: dict, headers: dict | None = None) -> Response:
        metrics.errors.labels(kind).inc()
        return JSONResponse(body, status, headers)

    async def health(_request: Request) -> Response:
        if batcher.ready.is_set():
            return JSONResponse({"status": "ready", "programs": batcher.programs, **about})
        return JSONResponse({"status": "compiling", **about}, 503)

    async def show_metrics(_request: Request) -> Response:
        return Response(metrics.text(), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        batcher.start()  # compiles first; /health says ready after
        yield
        await asyncio.to_thread(batcher.close)  # uvicorn has answered every request received by now

    routes = [Route("/v1/answer", answer, methods=["POST"]), Route("/health", health, methods=["GET"]),
              Route("/metrics", show_metrics, methods=["GET"])]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})


def run(app: Starlette, host: str, port: int) -> int:
    """Serve until SIGTERM or SIGINT, then drain (uvicorn waits for every request it received) and return 0."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, access_log=False, lifespan="on",
                                           timeout_graceful_shutdown=None))
    # uvicorn raises the signal it stopped on again once it is done; caught here, so the exit is a clean 0.
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if server.started else 1


def serve(qa, *, model: str, host: str, port: int, max_batch_size: int, max_wait_ms: float, max_request_bytes: int,
          max_passages: int) -> int:
    """`jaxqa serve`: `qa` (a `QuestionAnswerer` whose batch size is `max_batch_size`) behind HTTP on host:port."""
    check_window(qa.settings["max_seq_length"], qa.settings["doc_stride"], qa.settings["max_query_length"], qa.tokenizer)
    metrics = Metrics()
    batcher = Batcher(qa, metrics, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms)
    limits = schema.Limits(qa.predictor.max_seq_length, qa.n_best_size, max_passages,
                           qa.tokenizer.num_special_tokens_to_add(pair=True))
    about = {"model": str(model), **qa.settings, "max_answer_length": qa.predictor.max_answer_length,
             "null_score_diff_threshold": qa.null_score_diff_threshold, "max_batch_size": max_batch_size,
             "max_wait_ms": max_wait_ms}
    return run(build_app(batcher, metrics, limits, max_request_bytes=max_request_bytes, about=about), host, port)
