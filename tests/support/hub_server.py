"""A local stand-in for the Hugging Face Hub, for tests that download.

It answers the requests that huggingface_hub (2.x, plain HTTP) makes in
``snapshot_download(repo_id, endpoint=server.url)``, from local folders:

    GET  /api/models/{repo}[/revision/{rev}]    model info: id, sha (the commit), siblings
    GET  /api/models/{repo}/tree/{rev}[/{dir}]  tree listing (``?recursive=true``): files with
                                                size and oid, LFS files also with lfs {oid, size,
                                                pointerSize}; folders as "directory" entries
    HEAD /{repo}/resolve/{rev}/{path}           file metadata
    GET  /{repo}/resolve/{rev}/{path}           file bytes

Small files are "git" files: 200 with ETag (the git blob sha1), Content-Length and
X-Repo-Commit. Weights (.safetensors, .ckpt, .bin, ...) are LFS files: /resolve answers
302 to the "CDN" with X-Linked-Etag (the sha256), X-Linked-Size and X-Repo-Commit, as
the Hub does. The CDN is a second listener on another 127.0.0.1 port, so it is another
origin (as cdn-lfs.hf.co is): the client takes the metadata from the 302 and GETs the
bytes from ``/cdn/{repo}/{sha256}``. File GETs honour ``Range: bytes=a-b`` (206 with
Content-Range; 416 when the range cannot be satisfied).

Errors carry the Hub's X-Error-Code: RepoNotFound, RevisionNotFound, EntryNotFound
(all 404). Nothing advertises Xet storage (no X-Xet-Hash header, no ``xet-auth`` link,
no ``xetHash`` in the tree), so clients use plain HTTP even with hf_xet installed.
Revisions: "main" and the repo's commit sha (a sha1 of its file list).

Test hooks:
    server.requests         every request (method, path, Range header, status, repo file,
                            body bytes sent), in arrival order
    server.chunk_size       file bytes are written in pieces of this size...
    server.chunk_delay      ...with this many seconds between pieces (a slow link)
    server.interrupt(...)   the next GET of a file stops after N bytes (clean close or reset)
    server.wait_idle()      wait until no response is being written (before counting bytes)
    server.errors           unexpected exceptions in the handlers (a test should see none)

It listens on 127.0.0.1 only, on ports the OS picks. Use it as a context manager; if a
test forgets to stop it, it stops by itself after ``lifetime`` seconds. Its threads are
named "hub-server-..." so a test can check that none is left.
"""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

LFS_SUFFIXES = {".safetensors", ".ckpt", ".bin", ".pt", ".pth", ".onnx", ".msgpack", ".h5", ".gguf"}
LFS_MIN_SIZE = 10 * 2**20
THREAD_PREFIX = "hub-server"


@dataclass(frozen=True)
class RepoFile:
    path: str
    data: bytes = field(repr=False)
    blob_id: str  # git sha1 of the file, or of its LFS pointer
    sha256: str | None  # set for LFS files only
    pointer_size: int | None

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def lfs(self) -> bool:
        return self.sha256 is not None


@dataclass(frozen=True)
class Repo:
    repo_id: str
    files: dict[str, RepoFile]
    sha: str


@dataclass
class Request:
    """One request as the server saw it."""

    method: str
    path: str  # URL path, percent-decoded, without the query
    range: str | None  # the Range header as sent
    server: str  # "hub" or "cdn"
    status: int = 0
    file: str | None = None  # the repo file a /resolve or CDN request was about
    bytes_sent: int = 0  # body bytes written for file GETs


@dataclass
class _Interrupt:
    after_bytes: int
    mode: str  # "close": FIN after the bytes; "reset": RST


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def scan_repo(repo_id: str, folder: Path) -> Repo:
    files: dict[str, RepoFile] = {}
    for source in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        path = source.relative_to(folder).as_posix()
        data = source.read_bytes()
        if source.suffix in LFS_SUFFIXES or len(data) >= LFS_MIN_SIZE:
            sha256 = hashlib.sha256(data).hexdigest()
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {len(data)}\n".encode()
            files[path] = RepoFile(path, data, _git_blob_id(pointer), sha256, len(pointer))
        else:
            files[path] = RepoFile(path, data, _git_blob_id(data), None, None)
    listing = json.dumps(sorted((f.path, f.blob_id) for f in files.values())).encode()
    return Repo(repo_id, files, hashlib.sha1(listing).hexdigest())


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single ``bytes=`` range, or None when it cannot be satisfied."""
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None
    first, _, last = spec.strip().partition("-")
    try:
        if not first:
            length = int(last)
            if length <= 0:
                return None
            return max(size - length, 0), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return None
    return start, min(end, size - 1)


class HubServer:
    def __init__(
        self,
        repos: dict[str, Path],
        *,
        chunk_size: int = 64 * 1024,
        chunk_delay: float = 0.0,
        lifetime: float = 60.0,
    ):
        self.repos = {repo_id: scan_repo(repo_id, Path(folder)) for repo_id, folder in repos.items()}
        self.chunk_size = chunk_size
        self.chunk_delay = chunk_delay
        self.lifetime = lifetime
        self.requests: list[Request] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._active = 0
        self._interrupts: dict[str, _Interrupt] = {}
        self._stopping = threading.Event()
        self._servers: list[_Server] = []
        self._serve_threads: list[threading.Thread] = []

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> HubServer:
        if self._servers:
            raise RuntimeError("the server is already started")
        self._servers = [_Server(self, "hub"), _Server(self, "cdn")]
        deadline = time.monotonic() + self.lifetime
        for server in self._servers:
            thread = threading.Thread(
                target=self._serve, args=(server, deadline), name=f"{THREAD_PREFIX}-{server.role}", daemon=True
            )
            thread.start()
            self._serve_threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._serve_threads:
            thread.join()
        for server in self._servers:
            server.close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _serve(self, server: _Server, deadline: float) -> None:
        while not self._stopping.is_set():
            if time.monotonic() > deadline:  # forgotten: stop by ourselves
                self._stopping.set()
                break
            server.handle_request()  # returns after server.timeout when nobody connects
        server.close()

    # -- addresses -----------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def cdn_url(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    # -- test hooks ----------------------------------------------------------

    def interrupt(self, file: str, after_bytes: int, mode: str = "close") -> None:
        """Make the next GET of `file`'s bytes stop after `after_bytes`.

        "close" ends the connection cleanly (the client sees a short body); "reset" aborts it
        with a TCP reset (the client sees a read error).
        """
        if mode not in ("close", "reset"):
            raise ValueError(mode)
        with self._lock:
            self._interrupts[file] = _Interrupt(after_bytes, mode)

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until no request is being answered (e.g. a body cut short by the client)."""
        with self._idle:
            if not self._idle.wait_for(lambda: self._active == 0, timeout):
                raise TimeoutError("the stand-in Hub is still answering a request")

    def file_requests(self, file: str | None = None, method: str | None = None) -> list[Request]:
        """Requests about repo files (/resolve and CDN), optionally for one file and method."""
        with self._lock:
            found = list(self.requests)
        return [
            r
            for r in found
            if r.file is not None and (file is None or r.file == file) and (method is None or r.method == method)
        ]

    def requested_files(self) -> set[str]:
        return {r.file for r in self.file_requests()}

    # -- used by the handler -------------------------------------------------

    def _begin(self, record: Request) -> None:
        with self._lock:
            self.requests.append(record)
            self._active += 1

    def _end(self) -> None:
        with self._idle:
            self._active -= 1
            self._idle.notify_all()

    def _take_interrupt(self, file: str) -> _Interrupt | None:
        with self._lock:
            return self._interrupts.pop(file, None)

    def _find_repo(self, segments: list[str]) -> tuple[Repo | None, list[str]]:
        """The repo named by the first one or two path segments, and the segments after it."""
        for count in (2, 1):
            repo = self.repos.get("/".join(unquote(s) for s in segments[:count]))
            if repo is not None and len(segments) >= count:
                return repo, segments[count:]
        return None, segments

    def _by_sha256(self, repo_id: str, sha256: str) -> RepoFile | None:
        repo = self.repos.get(repo_id)
        if repo is None:
            return None
        return next((f for f in repo.files.values() if f.sha256 == sha256), None)


class _Server(ThreadingHTTPServer):
    """One listener; each connection is served on its own named, tracked thread."""

    timeout = 0.05  # how long handle_request() waits for a connection

    def __init__(self, hub: HubServer, role: str):
        self.hub = hub
        self.role = role
        self._connections: set[socket.socket] = set()
        self._to_reset: set[socket.socket] = set()
        self._handlers: list[threading.Thread] = []
        self._tracking = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request, client_address) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"{THREAD_PREFIX}-{self.role}-connection",
            daemon=True,
        )
        with self._tracking:
            self._connections.add(request)
            self._handlers = [t for t in self._handlers if t.is_alive()] + [thread]
        thread.start()

    def reset_on_close(self, request: socket.socket) -> None:
        request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self._tracking:
            self._to_reset.add(request)

    def shutdown_request(self, request) -> None:
        with self._tracking:
            self._connections.discard(request)
            reset = request in self._to_reset
            self._to_reset.discard(request)
        if reset:
            self.close_request(request)  # no FIN first: SO_LINGER 0 makes close() send a RST
        else:
            super().shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, (ConnectionError, TimeoutError)):
            self.hub.errors.append(error)

    def close(self) -> None:
        """Stop listening, end open connections and wait for their threads."""
        self.socket.close()
        with self._tracking:
            connections = list(self._connections)
            handlers = list(self._handlers)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in handlers:
            if thread is not threading.current_thread():
                thread.join(timeout=5)
                if thread.is_alive():
                    self.hub.errors.append(RuntimeError(f"{thread.name} did not stop"))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "HubStandIn/1.0"
    timeout = 10  # an idle keep-alive connection is dropped after this long
    server: _Server

    def log_message(self, format, *args) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    # -- routing -------------------------------------------------------------

    def _dispatch(self) -> None:
        hub = self.server.hub
        split = urlsplit(self.path)
        self._record = Request(self.command, unquote(split.path), self.headers.get("Range"), self.server.role)
        hub._begin(self._record)
        try:
            segments = [s for s in split.path.split("/") if s]
            if self.server.role == "cdn":
                self._cdn(segments)
            elif segments[:2] == ["api", "models"]:
                self._api(segments[2:], parse_qs(split.query))
            else:
                self._resolve(segments)
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client went away
        except Exception as error:  # a bug in the stand-in: report it to the test
            hub.errors.append(error)
            self.close_connection = True
        finally:
            self._record = None
            hub._end()

    def _api(self, segments: list[str], query: dict[str, list[str]]) -> None:
        repo, rest = self.server.hub._find_repo(segments)
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found")
        if not rest or rest[0] == "revision":
            if rest and (len(rest) != 2 or not self._known_revision(repo, unquote(rest[1]))):
                return self._error(404, "RevisionNotFound", "Invalid rev id")
            return self._json(self._model_info(repo))
        if rest[0] == "tree" and len(rest) >= 2:
            if not self._known_revision(repo, unquote(rest[1])):
                return self._error(404, "RevisionNotFound", "Invalid rev id")
            folder = "/".join(unquote(s) for s in rest[2:])
            recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
            entries = self._tree(repo, folder, recursive)
            if entries is None:
                return self._error(404, "EntryNotFound", f"{folder} does not exist", repo)
            return self._json(entries)
        return self._error(404, None, "Not found")

    def _resolve(self, segments: list[str]) -> None:
        repo, rest = self.server.hub._find_repo(segments)
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found")
        if len(rest) < 3 or rest[0] != "resolve":
            return self._error(404, None, "Not found")
        if not self._known_revision(repo, unquote(rest[1])):
            return self._error(404, "RevisionNotFound", "Invalid rev id")
        path = "/".join(unquote(s) for s in rest[2:])
        file = repo.files.get(path)
        if file is None:
            return self._error(404, "EntryNotFound", "Entry not found", repo)
        self._record.file = path
        headers = {"X-Repo-Commit": repo.sha, "Accept-Ranges": "bytes"}
        if file.lfs:
            location = f"{self.server.hub.cdn_url}/cdn/{quote(repo.repo_id)}/{file.sha256}"
            headers |= {
                "Location": location,
                "ETag": f'"{file.blob_id}"',
                "X-Linked-Etag": f'"{file.sha256}"',
                "X-Linked-Size": str(file.size),
            }
            return self._send(302, headers)
        headers["ETag"] = f'"{file.blob_id}"'
        self._send_file(file, headers)

    def _cdn(self, segments: list[str]) -> None:
        # /cdn/{repo}/{sha256}: the repo id may have one or two segments
        file = None
        if len(segments) >= 3 and segments[0] == "cdn":
            repo_id = "/".join(unquote(s) for s in segments[1:-1])
            file = self.server.hub._by_sha256(repo_id, segments[-1])
        if file is None:
            return self._error(404, None, "Not found")
        self._record.file = file.path
        name = file.path.rsplit("/", 1)[-1]
        headers = {
            "ETag": f'"{file.sha256}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{name}";',
        }
        self._send_file(file, headers)

    # -- content -------------------------------------------------------------

    @staticmethod
    def _known_revision(repo: Repo, revision: str) -> bool:
        return revision in ("main", repo.sha)

    @staticmethod
    def _model_info(repo: Repo) -> dict:
        author = repo.repo_id.split("/")[0] if "/" in repo.repo_id else None
        return {
            "_id": repo.sha[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": author,
            "sha": repo.sha,
            "lastModified": "2024-01-01T00:00:00.000Z",
            "private": False,
            "gated": False,
            "disabled": False,
            "tags": [],
            "siblings": [{"rfilename": path} for path in repo.files],
        }

    @staticmethod
    def _tree(repo: Repo, folder: str, recursive: bool) -> list[dict] | None:
        prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
        folders: set[str] = set()
        files: list[RepoFile] = []
        for file in repo.files.values():
            if not file.path.startswith(prefix):
                continue
            parts = file.path[len(prefix) :].split("/")
            for depth in range(1, len(parts) if recursive else min(len(parts), 2)):
                folders.add(prefix + "/".join(parts[:depth]))
            if recursive or len(parts) == 1:
                files.append(file)
        if prefix and not files and not folders:
            return None
        entries = [
            {"type": "directory", "oid": hashlib.sha1(name.encode()).hexdigest(), "size": 0, "path": name}
            for name in folders
        ]
        for file in files:
            entry = {"type": "file", "oid": file.blob_id, "size": file.size, "path": file.path}
            if file.lfs:
                entry["lfs"] = {"oid": file.sha256, "size": file.size, "pointerSize": file.pointer_size}
            entries.append(entry)
        return sorted(entries, key=lambda e: e["path"])

    # -- writing -------------------------------------------------------------

    def send_response(self, code: int, message: str | None = None) -> None:
        record = getattr(self, "_record", None)  # None for requests http.server rejects itself
        if record is not None:
            record.status = code
        super().send_response(code, message)

    def _send(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, payload) -> None:
        body = json.dumps(payload).encode()
        self._send(200, {"Content-Type": "application/json; charset=utf-8"}, body)

    def _error(
        self, status: int, code: str | None, message: str, repo: Repo | None = None, extra: dict | None = None
    ) -> None:
        headers = {"Content-Type": "application/json; charset=utf-8", "X-Error-Message": message, **(extra or {})}
        if code is not None:
            headers["X-Error-Code"] = code
        if repo is not None:
            headers["X-Repo-Commit"] = repo.sha
        self._send(status, headers, json.dumps({"error": message}).encode())

    def _send_file(self, file: RepoFile, headers: dict[str, str]) -> None:
        first, last, status = 0, file.size - 1, 200
        requested = self.headers.get("Range")
        if requested is not None:
            satisfiable = parse_range(requested, file.size)
            if satisfiable is None:
                return self._error(416, None, "Range Not Satisfiable", extra={"Content-Range": f"bytes */{file.size}"})
            first, last = satisfiable
            status = 206
            headers = headers | {"Content-Range": f"bytes {first}-{last}/{file.size}"}
        length = last - first + 1
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command == "HEAD":
            return
        self._write_body(file.data, first, length)

    def _write_body(self, data: bytes, first: int, length: int) -> None:
        hub = self.server.hub
        cut = hub._take_interrupt(self._record.file) if self._record.file else None
        limit = length if cut is None else min(length, cut.after_bytes)
        sent = 0
        for piece in _pieces(data, first, limit, hub.chunk_size):
            if sent and hub.chunk_delay and hub._stopping.wait(hub.chunk_delay):
                break  # the server is stopping
            self.wfile.write(piece)
            sent += len(piece)
            self._record.bytes_sent = sent
        if sent < length:
            self.close_connection = True  # the body is short: this connection cannot be reused
            if cut is not None and cut.mode == "reset":
                self.server.reset_on_close(self.connection)


def _pieces(data: bytes, first: int, length: int, size: int) -> Iterator[bytes]:
    view = memoryview(data)
    for start in range(first, first + length, size):
        yield view[start : min(start + size, first + length)]
