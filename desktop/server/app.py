"""The server's web app: a Backend's models and jobs over HTTP, in the protocol of desktop/core/remote_protocol.py.

    GET  /health   {"status": "ok", "replica": ..., "replicas": n}: n replicas serve this address (1 alone; under
                   Ray Serve, the deployment's running replicas), so a client can send n jobs at once
    GET  /models   {"models": [{ref, family, name, hash, kinds}, ...]}: the backend's catalogue, by name
    POST /load     {"model": name} -> NDJSON: status lines, then a model line (the loaded model with its hash)
    POST /run      a job (remote_protocol.encode_job) -> NDJSON: accepted, status, step, result..., done

One engine thread per app runs the jobs one at a time on the Backend, which it makes (`make_backend()`) and owns.
When the client goes away before a job ends (its cancel), the stream's cleanup sets the job's TaskState cancel
flag, so the engine stops within one step. With `token`, every route wants ``Authorization: Bearer <token>``
(compared in constant time) and answers 401 otherwise; a body over MAX_BODY gets 413. The pictures of at most
DECODES_AT_ONCE jobs are decoded at a time, server-wide. Which address it listens on
is the caller's business (127.0.0.1 unless told otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from desktop.core import remote_protocol as protocol
from desktop.core.backend import Backend
from desktop.core.errors import Cancelled, SfumatoError
from desktop.core.progress import TaskState

from .catalogue import Catalogue

log = logging.getLogger(__name__)
DECODES_AT_ONCE = 2  # jobs whose pictures are decoded at the same time, for the whole server (each up to ~0.7 GB)
HEARTBEAT_S = 5.0  # an `alive` line when the engine has said nothing for this long (a long load, a queue)
NDJSON = protocol.NDJSON


class Engine:
    """The one thread that owns the backend; jobs wait their turn."""

    def __init__(self, make_backend: Callable[[], Backend]):
        self._make = make_backend
        self._backend: Backend | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sfumato-engine")
        self._lock = threading.Lock()
        self._waiting = 0  # calls submitted and not finished

    @property
    def idle(self) -> bool:
        return self._waiting == 0

    def submit(self, call: Callable[[Backend], object]):
        with self._lock:
            self._waiting += 1

        def done(_future) -> None:
            with self._lock:
                self._waiting -= 1

        future = self._pool.submit(lambda: call(self._started()))
        future.add_done_callback(done)
        return future

    def _started(self) -> Backend:
        if self._backend is None:
            backend = self._make()
            backend.start(TaskState())
            self._backend = backend
        return self._backend

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._backend is not None:
            self._backend.close()


def create_app(make_backend: Callable[[], Backend], token: str | None = None, replica: str | None = None,
               max_body: int = protocol.MAX_BODY, replicas: Callable[[], int] | None = None) -> Starlette:
    engine = Engine(make_backend)
    decoder = ThreadPoolExecutor(max_workers=DECODES_AT_ONCE, thread_name_prefix="sfumato-decode")
    catalogue = Catalogue()
    replica = replica or f"{socket.gethostname()}:{os.getpid()}"

    def authorised(request: Request) -> Response | None:
        if not token:
            return None
        given = request.headers.get("authorization", "")
        if hmac.compare_digest(given.encode("utf-8", "replace"), f"Bearer {token}".encode()):
            return None
        return _refusal(401, "The server wants a token and this one is missing or wrong: set the token the "
                             "server was started with.")

    async def refresh() -> None:
        models = await asyncio.wrap_future(engine.submit(lambda backend: backend.models()))
        catalogue.update(models)

    async def resolved(decode: Callable[[protocol.Resolve], object]):
        """decode(resolve) with the catalogue; read again on a miss when the engine is free (a model added to
        the server's folders since)."""
        if catalogue.empty:
            await refresh()
        loop = asyncio.get_running_loop()
        try:  # off the event loop, and a few jobs at a time: a job's pictures take a while and memory to decode
            return await loop.run_in_executor(decoder, decode, catalogue.resolve)
        except protocol.UnknownModel:
            if not engine.idle:
                raise
            await refresh()
            return await loop.run_in_executor(decoder, decode, catalogue.resolve)

    async def health(request: Request) -> Response:
        if refused := authorised(request):
            return refused
        count = 1 if replicas is None else await asyncio.get_running_loop().run_in_executor(None, replicas)
        return JSONResponse({"status": "ok", "replica": replica, "replicas": max(1, int(count))})

    async def models(request: Request) -> Response:
        if refused := authorised(request):
            return refused
        try:
            if engine.idle or catalogue.empty:  # else the list as it was before the jobs, not one after them
                await refresh()
        except SfumatoError as error:
            return _refusal(503, str(error), type(error).__name__)
        return JSONResponse({"models": catalogue.listed()})

    async def body_of(request: Request) -> bytes | Response:
        if refused := authorised(request) or await _too_large(request, max_body):
            return refused
        try:
            body = await _read(request, max_body)
        except ClientDisconnect:
            return Response(status_code=400)
        return _refusal(413, protocol.too_large(limit=max_body)) if body is None else body

    async def load(request: Request) -> Response:
        body = await body_of(request)
        if isinstance(body, Response):
            return body
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            data = None
        name = data.get("model") if isinstance(data, dict) else None
        if not isinstance(name, str):
            return _refusal(400, 'Send {"model": "<name>"} as JSON to load a model.', "ProtocolError")
        try:
            ref = await resolved(lambda resolve: resolve(name, protocol.MODEL))
        except SfumatoError as error:
            return _refusal(400, str(error), type(error).__name__)
        return _stream(engine, replica, lambda backend, state: [protocol.model_event(backend.load(ref, state), name)])

    async def run(request: Request) -> Response:
        body = await body_of(request)
        if isinstance(body, Response):
            return body
        asked = {}  # the model's name as the client gave it, for the results' metadata

        def decode(resolve: protocol.Resolve):
            def remember(name: str, kind: str) -> str:
                asked.setdefault(kind, name)
                return resolve(name, kind)

            return protocol.decode_job(body, remember)

        try:
            job = await resolved(decode)
        except SfumatoError as error:
            return _refusal(400, str(error), type(error).__name__)

        def work(backend: Backend, state: TaskState) -> list[bytes]:
            return [protocol.result_event(result, asked) for result in backend.run(job, state)]

        return _stream(engine, replica, work)

    app = Starlette(routes=[Route("/health", health), Route("/models", models),
                            Route("/load", load, methods=["POST"]), Route("/run", run, methods=["POST"])],
                    lifespan=_closing(engine, decoder))
    app.state.engine = engine
    return app


def _closing(engine: Engine, decoder: ThreadPoolExecutor):
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        decoder.shutdown(wait=False, cancel_futures=True)
        await asyncio.get_running_loop().run_in_executor(None, engine.close)

    return lifespan


class _JobStream(StreamingResponse):
    """A StreamingResponse that calls `on_close` however it ends: finished, or cut off by the client."""

    def __init__(self, content, on_close: Callable[[], None]):
        super().__init__(content, media_type=NDJSON)
        self._on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        async def watch() -> None:  # the body is read: the next message is the client going away
            while (await receive())["type"] != "http.disconnect":
                pass
            self._on_close()

        watcher = asyncio.ensure_future(watch())
        try:
            await super().__call__(scope, receive, send)
        finally:
            watcher.cancel()
            self._on_close()


def _stream(engine: Engine, replica: str, work: Callable[[Backend, TaskState], list[bytes]]) -> Response:
    """Run `work` on the engine thread and stream its events: the lines it returns come after its status and
    step lines; then `done`, or `cancelled` / `error`."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    def put(line: bytes | None) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, line)

    state = TaskState(on_step=lambda i, n, preview: put(protocol.step_event(i, n, preview)),
                      on_status=lambda text: put(protocol.encode_event("status", text=text)))

    def job(backend: Backend) -> None:
        try:
            if state.cancelled():
                raise Cancelled(0)
            for line in work(backend, state):
                put(line)
            put(protocol.encode_event("done"))
        except Cancelled:
            put(protocol.encode_event("cancelled"))
        except Exception as error:  # every failure is a line for the client (error_event logs its traceback)
            put(protocol.error_event(error))
        finally:
            put(None)

    async def lines():
        yield protocol.encode_event("accepted", replica=replica)
        engine.submit(job)
        while True:
            try:
                line = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
            except asyncio.TimeoutError:
                yield protocol.encode_event("alive")
                continue
            if line is None:
                return
            yield line

    return _JobStream(lines(), on_close=state.cancel)  # a cancel after the end changes nothing


async def _too_large(request: Request, max_body: int) -> Response | None:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_body:
        return _refusal(413, protocol.too_large(int(length), max_body))
    return None


async def _read(request: Request, max_body: int) -> bytes | None:
    """The body, or None when it grows past max_body (a body sent without its length)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _refusal(status: int, message: str, kind: str = "ServerRefused") -> Response:
    return Response(protocol.encode_event("error", kind=kind, message=message), status_code=status,
                    media_type=NDJSON)

