"""RemoteBackend: the Backend (desktop/core/backend.py) that runs jobs on a Sfumato server over HTTP.

It speaks desktop/core/remote_protocol.py with the stdlib's http.client (no new dependency). A job's NDJSON
stream is read on a small reader thread, so the calling thread sees a cancel within a tenth of a second: it
shuts the connection (that is the cancel: the server stops the engine within one step) and raises Cancelled.
A stream that ends without its last line (the server's worker died) is tried once more, saying so; a server
that cannot be reached is one sentence. Nothing waits forever: connect and read timeouts (the server sends a
line at least every few seconds while it works).
"""

from __future__ import annotations

import http.client
import json
import queue
import socket
import ssl
import threading
from urllib.parse import urlsplit

from desktop.core import remote_protocol as protocol
from desktop.core.backend import CurrentCall, Job, ModelDescriptor, Result
from desktop.core.errors import Cancelled, SfumatoError
from desktop.core.progress import TaskState

RETRY_STATUS = "The server's worker stopped; trying again..."
MAX_LINE = 1024**3  # one event line: a result is a PNG in base64, 4096x4096 noise is about 90 MB
_EOF = object()


class ServerUnreachable(SfumatoError):
    """The server did not answer: not running, a wrong address, or a network in the way."""


class _Broken(Exception):
    """The stream ended without its last line."""


class _Raise:
    """An error of the reader thread, for the follower to raise."""

    def __init__(self, error: BaseException):
        self.error = error


class _Link:
    """The connection a reader thread opened, for the follower to shut; once closed, a late one is refused."""

    def __init__(self):
        self._lock = threading.Lock()
        self._connection: http.client.HTTPConnection | None = None
        self._closed = False

    def hold(self, connection: http.client.HTTPConnection) -> bool:
        with self._lock:
            if self._closed:
                connection.close()
                return False
            self._connection = connection
            return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connection, self._connection = self._connection, None
        if connection is not None:
            _shut(connection.sock)
            connection.close()


class RemoteBackend:
    def __init__(self, url: str, token: str | None = None, connect_timeout: float = 5.0, read_timeout: float = 60.0):
        parts = urlsplit(url if "://" in url else f"http://{url}")
        try:
            parts.port  # noqa: B018 - raises on a port that is no port
        except ValueError:
            raise SfumatoError(f"{url!r} has no valid port; write it as http://host:port, the port a number from 1 "
                               "to 65535.") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SfumatoError(f"{url!r} is not a server address; write it as http://host:port.")
        if parts.username is not None or parts.password is not None:
            raise SfumatoError("Write the server address without a name or password in it (http://host:port); a "
                               "reverse proxy's secret goes in the token field.")
        self.url = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self._parts = parts
        self._token = token or None
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self._call = CurrentCall()
        self.slots = 1  # jobs the server runs at once (its replicas), read by start(): the worker sends that many

    # -- the Backend protocol

    def start(self, state: TaskState) -> str:
        health = self._json("GET", "/health")
        count = health.get("replicas", 1) if isinstance(health, dict) else 1
        self.slots = count if isinstance(count, int) and 1 <= count <= 1024 else 1
        return f"server at {self.url}" + (f" ({self.slots} replicas)" if self.slots > 1 else "")

    def models(self) -> list[ModelDescriptor]:
        data = self._json("GET", "/models")
        listed = data.get("models") if isinstance(data, dict) else None
        if not isinstance(listed, list):
            raise protocol.ProtocolError(f"The server at {self.url} sent no list of models; is it a Sfumato server?")
        return [protocol.read_model(item) for item in listed if isinstance(item, dict)]

    def load(self, ref: str, state: TaskState) -> ModelDescriptor:
        with self._call.running(state):
            found = self._stream("/load", json.dumps({"model": ref}).encode("utf-8"), state, "model")
        return protocol.read_model(found[0])

    def run(self, job: Job, state: TaskState) -> list[Result]:
        body = protocol.encode_job(job)
        if len(body) > protocol.MAX_BODY:
            raise protocol.ServerRefused(protocol.too_large(len(body)))
        with self._call.running(state):
            found = self._stream("/run", body, state, "result")
        return [protocol.decode_result(event, job) for event in found]

    def use_folders(self, folders: list[str]) -> None:
        """The server looks in its own folders."""

    def cancel(self) -> None:
        self._call.cancel()

    def close(self) -> None:
        """Nothing is held between calls."""

    # -- HTTP

    def _stream(self, path: str, body: bytes, state: TaskState, wanted: str) -> list[dict]:
        """POST `body` and follow its NDJSON stream: the `wanted` events, once `done` comes. A broken stream is
        tried once more."""
        for attempt in range(2):
            try:
                return self._follow(path, body, state, wanted)
            except _Broken:
                if attempt == 0:
                    state.status(RETRY_STATUS)
        raise SfumatoError(f"The server at {self.url} stopped twice before finishing the job; look at the "
                           "server's log, then try again.")

    def _follow(self, path: str, body: bytes, state: TaskState, wanted: str) -> list[dict]:
        """The request is sent and its answer read on a reader thread, so a cancel is heard at once even while
        the server has not answered yet (a proxy holding the request while every replica is busy)."""
        lines: queue.Queue = queue.Queue()
        link = _Link()
        threading.Thread(target=self._send_and_read, args=(path, body, link, lines), daemon=True,
                         name="sfumato-remote-reader").start()
        found, step = [], 0
        try:
            while True:
                if state.cancelled():
                    raise Cancelled(step)
                try:
                    line = lines.get(timeout=0.1)
                except queue.Empty:
                    continue
                if line is _EOF:
                    raise _Broken()
                if isinstance(line, _Raise):  # the server refused the request, or cannot be reached
                    raise line.error
                if isinstance(line, socket.timeout):
                    raise SfumatoError(f"The server at {self.url} said nothing for {self.read_timeout:g} s; look "
                                       "at the server's log, then try again.")
                if isinstance(line, bytes) and len(line) >= MAX_LINE:
                    raise SfumatoError(f"The server at {self.url} sent a result over {MAX_LINE // 2**20} MiB; ask "
                                       "for smaller pictures.")
                if isinstance(line, Exception) or not line.endswith(b"\n"):  # reset, or cut in the middle of a line
                    raise _Broken()
                if not line.strip():
                    continue
                event = protocol.decode_event(line)
                kind = event["event"]
                if kind == "status":
                    state.status(str(event.get("text", "")))
                elif kind == "step":
                    step = int(event.get("step", 0))
                    state.step(step, int(event.get("total", 0)), protocol.decode_preview(event.get("preview")))
                elif kind == wanted:
                    found.append(event)
                elif kind == "done":
                    return found
                elif kind == "cancelled":
                    raise Cancelled(step)
                elif kind == "error":
                    protocol.raise_error(event)
        finally:
            link.close()  # the cancel, when the job is not over; the server's end of a finished one

    def _send_and_read(self, path: str, body: bytes, link: _Link, lines: queue.Queue) -> None:
        try:
            connection, response = self._request("POST", path, body, link)
        except Exception as error:  # noqa: BLE001 - the follower raises it, unless it has gone (a cancel)
            lines.put(_Raise(error))
            return
        _read_lines(response, lines)

    def _json(self, method: str, path: str) -> object:
        connection, response = self._request(method, path)
        try:
            return json.loads(response.read())
        except (OSError, http.client.HTTPException) as error:
            raise self._unreachable(error) from None
        except ValueError:
            raise protocol.ProtocolError(f"The server at {self.url} did not answer in JSON; is it a Sfumato "
                                         "server?") from None
        finally:
            connection.close()

    def _request(self, method: str, path: str, body: bytes | None = None, link: _Link | None = None):
        """Send a request; the connection and its response (200), or the server's refusal raised. With `link`,
        the connection is handed to it once connected, so the follower can shut it (and it is shut at once when
        the follower has already gone)."""
        parts = self._parts
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=self.connect_timeout,
                                                     context=ssl.create_default_context())
        else:
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.connect_timeout)
        headers = {"Content-Type": "application/json", "Accept": protocol.NDJSON}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            connection.connect()
            if link is not None and not link.hold(connection):
                raise Cancelled(0)  # the follower went while this connected: send nothing
            connection.sock.settimeout(self.read_timeout)
            connection.request(method, parts.path.rstrip("/") + path, body=body, headers=headers)
            response = connection.getresponse()
            if response.status == 200:
                return connection, response
            text = response.read(64 * 1024)
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise self._unreachable(error) from None
        connection.close()
        try:
            event = protocol.decode_event(text.splitlines()[0] if text else b"")
        except (protocol.ProtocolError, IndexError):
            raise protocol.ServerRefused(f"The server at {self.url} answered {response.status} "
                                         f"{response.reason}; is it a Sfumato server?") from None
        protocol.raise_error(event)

    def _unreachable(self, error: BaseException) -> ServerUnreachable:
        if isinstance(error, ConnectionRefusedError):
            why = "nothing answers there"
        elif isinstance(error, (socket.timeout, TimeoutError)):
            why = "it did not answer in time"
        elif isinstance(error, socket.gaierror):
            why = "there is no such host"
        else:
            why = str(error) or type(error).__name__
        return ServerUnreachable(f"The Sfumato server at {self.url} cannot be reached ({why}): check that it is "
                                 "running and that the address, the port and the network between are right.")


def _read_lines(response: http.client.HTTPResponse, lines: queue.Queue) -> None:
    try:
        while line := response.readline(MAX_LINE):
            lines.put(line)
        lines.put(_EOF)
    except Exception as error:  # a reset, a timeout, a shut socket: the follower decides what it means
        lines.put(error)


def _shut(sock: socket.socket | None) -> None:
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
