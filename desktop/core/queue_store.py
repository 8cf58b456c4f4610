"""The queue that survives: the waiting and running jobs in SQLite beside the settings, with their pictures.

The worker tells a QueueStore what happens to its jobs: `queued(job_id, job)` when one joins the queue,
`ordered(job_ids)` when the order changed, `ended(job_id)` when one finished, failed, was cancelled or removed.
A running job stays stored until it ends, so after a crash it comes back; a job cancelled only because the app
closes is not "ended" (the worker does not say it), so it comes back too. At the next start `load()` gives the
stored jobs in their order; the window queues them again (paused) and the store keeps their rows.

What is stored: a GenerationRequest or an UpscaleRequest as remote_protocol's job body (every picture a PNG:
the init picture, the mask, each control's and reference's picture, a face mask), plus the two fields that body
leaves to the client: the upscale's `beside` and a face detector file; a Run as its `encode()`. A PreprocessJob
(a control layer's "From picture") is not stored: it belongs to a canvas that is gone after a restart.

Writing (PNG encoding included) happens on a thread of the store's own, in the order the calls came, so the
worker and the GUI thread never wait for the disk. An unreadable database is set aside as queue.sqlite.bad (the
queue starts empty, `notice` says so); a row that cannot be read is moved to the `set_aside` table of the same
file and `notice` says how many and why. Nothing here raises at start.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from . import folder_batch, paths, recreate, xyz  # noqa: F401 - the Run kinds they register, so a stored one decodes
from .backend import GenerationJob, PreprocessJob, UpscaleJob
from .errors import SfumatoError
from .faces import AUTO_DETECTOR
from .postprocess import UpscaleRequest
from .remote_protocol import decode_job, encode_job
from .request import GenerationRequest
from .runs import Run, decode_run

SCHEMA_VERSION = 2  # 2: each distinct picture is stored once, in `pictures`, and a job's data refers to it
GENERATION_KIND, UPSCALE_KIND, RUN_KIND = "generation", "upscale", "run"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY, position REAL NOT NULL, kind TEXT NOT NULL,
                                 data TEXT NOT NULL, queued REAL NOT NULL);
CREATE TABLE IF NOT EXISTS set_aside (id INTEGER PRIMARY KEY, kind TEXT, data TEXT, reason TEXT, at REAL);
CREATE TABLE IF NOT EXISTS pictures (hash TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS uses (job INTEGER NOT NULL, hash TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS uses_job ON uses (job);
"""
_PNG = "iVBORw0KGgo"  # how every base64 PNG begins
_REF = "$picture"  # {"$picture": hash} stands for a picture of the `pictures` table

Stored = GenerationRequest | UpscaleRequest | Run


def storable(job: object) -> bool:
    """Whether a job of this kind survives a restart (a control layer's preprocessor does not)."""
    return isinstance(job, (GenerationRequest, UpscaleRequest, Run)) and not isinstance(job, PreprocessJob)


def encode(job: Stored) -> tuple[str, str]:
    """(kind, JSON text) of a job."""
    if isinstance(job, GenerationRequest):
        return GENERATION_KIND, encode_job(GenerationJob(job)).decode("utf-8")
    if isinstance(job, UpscaleRequest):
        faces = job.faces
        sent = job if faces is None else job.replace(faces=faces.replace(detector=AUTO_DETECTOR))
        data = json.loads(encode_job(UpscaleJob(sent)))
        data["beside"] = job.beside  # the client's own fields, which the server never gets
        data["detector"] = None if faces is None else faces.detector
        return UPSCALE_KIND, json.dumps(data)
    if isinstance(job, Run):
        return RUN_KIND, json.dumps(job.encode())
    raise SfumatoError(f"A {type(job).__name__} cannot be kept in the queue.")


def decode(kind: str, text: str) -> Stored:
    """The job `encode` gave; SfumatoError (or ValueError) with what is wrong."""
    return _decode(kind, json.loads(text))


def _decode(kind: str, data) -> Stored:
    if kind == RUN_KIND:
        return decode_run(data)
    if kind not in (GENERATION_KIND, UPSCALE_KIND):
        raise SfumatoError(f"a queued job of an unknown kind ({kind!r}); a newer Sfumato wrote it")
    job = decode_job(data, lambda ref, _kind: ref)  # this computer's own references, as they were
    if isinstance(job, GenerationJob) and kind == GENERATION_KIND:
        return job.request
    if isinstance(job, UpscaleJob) and kind == UPSCALE_KIND:
        request = job.request.replace(beside=str(data.get("beside") or ""))
        detector = data.get("detector")
        if request.faces is not None and isinstance(detector, str) and detector:
            request = request.replace(faces=request.faces.replace(detector=detector))
        return request
    raise SfumatoError(f"a queued {kind} job holds a {job.kind} job")


def _split(value, pictures: dict[str, str]):
    """`value` (JSON data) with each base64 PNG in it replaced by a reference, the pictures put in `pictures`."""
    if isinstance(value, dict):
        return {key: _split(item, pictures) for key, item in value.items()}
    if isinstance(value, list):
        return [_split(item, pictures) for item in value]
    if isinstance(value, str) and len(value) > 256 and value.startswith(_PNG):
        digest = hashlib.sha256(value.encode("ascii", "replace")).hexdigest()
        pictures[digest] = value
        return {_REF: digest}
    return value


def _join(value, pictures: dict[str, str]):
    """What `_split` was given; KeyError when a picture is missing."""
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get(_REF), str):
            return pictures[value[_REF]]
        return {key: _join(item, pictures) for key, item in value.items()}
    if isinstance(value, list):
        return [_join(item, pictures) for item in value]
    return value


class QueueStore:
    def __init__(self, path: Path | None = None, on_problem: Callable[[str], None] | None = None):
        """Open (or make) the store; never raises. `on_problem(sentence)` is called, from the store's thread,
        the first time a job could not be written."""
        self.path = Path(path or paths.queue_file())
        self.notice = ""  # what the person should know about the last session's queue
        self._on_problem = on_problem
        self._lock = threading.Lock()  # the database's, held while the store's thread writes
        self._meta = threading.Lock()  # for _adopt and _next only, so queued() never waits for the disk
        self._rows: dict[int, int] = {}  # job id -> row id
        self._adopt: dict[int, tuple[object, int]] = {}  # id() of a job load() returned -> (the job, its row id)
        self._told = False
        self._db = self._open()
        row = self._db.execute("SELECT max(position), max(id) FROM jobs").fetchone()
        self._next = (row[0] or 0) + 1
        self._last_row = row[1] or 0  # load() gives the rows of the last session, not those added since it opened
        self._writes: queue.Queue = queue.Queue()
        self._writer = threading.Thread(target=self._write_all, name="queue-store", daemon=True)
        self._writer.start()

    # -- opening ------------------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            return self._connect(self.path)
        except (sqlite3.Error, OSError) as error:
            reason = str(error)
        kept = self.path.with_name(self.path.name + ".bad")
        where = ""
        try:
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(f"{self.path}{suffix}"):
                    os.replace(f"{self.path}{suffix}", f"{kept}{suffix}")
            where = f" It was kept as {kept.name}."
        except OSError:
            pass
        try:
            db = self._connect(self.path)
            self.notice = (f"The queue of the last session ({self.path}) could not be read ({reason}); the queue "
                           f"starts empty.{where}")
            return db
        except (sqlite3.Error, OSError) as error:
            self.notice = (f"The queue cannot be kept in {self.path} ({error}): waiting jobs will not come back "
                           "after a restart. Check that the settings folder can be written.")
            return self._connect(":memory:")

    @staticmethod
    def _connect(path) -> sqlite3.Connection:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"a newer Sfumato made it (schema {version})")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")  # WAL: a crash of the app loses nothing committed
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("SELECT count(*) FROM jobs").fetchone()
        except BaseException:
            db.close()
            raise
        return db

    # -- reading ------------------------------------------------------------------------------------

    def load(self) -> list[Stored]:
        """The jobs stored when the store opened, oldest first (any thread: the window reads them off the GUI
        thread). A row that cannot be read is set aside and `notice` says so. Queue each returned job again as it
        is: the store knows it and keeps its row."""
        jobs, bad = [], []
        with self._lock:
            rows = self._db.execute("SELECT id, kind, data FROM jobs WHERE id <= ? ORDER BY position, id",
                                    (self._last_row,)).fetchall()
            pictures = dict(self._db.execute("SELECT hash, data FROM pictures").fetchall())
            for row_id, kind, data in rows:
                try:
                    job = _decode(kind, _join(json.loads(data), pictures))
                except KeyError:
                    bad.append((row_id, kind, data, "one of its pictures is missing"))
                    continue
                except (SfumatoError, ValueError, TypeError, RecursionError) as error:
                    bad.append((row_id, kind, data, str(error) or type(error).__name__))
                    continue
                with self._meta:
                    self._adopt[id(job)] = (job, row_id)  # the job held, so its id() is not another's
                jobs.append(job)
            if bad:
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                    for row_id, kind, data, reason in bad:
                        self._db.execute("INSERT INTO set_aside (kind, data, reason, at) VALUES (?, ?, ?, ?)",
                                         (kind, data, reason, time.time()))
                        self._db.execute("DELETE FROM jobs WHERE id = ?", (row_id,))
                        self._db.execute("DELETE FROM uses WHERE job = ?", (row_id,))
                    self._db.execute("COMMIT")
                except sqlite3.Error:
                    self._db.execute("ROLLBACK") if self._db.in_transaction else None
        if bad:
            some = "1 queued job" if len(bad) == 1 else f"{len(bad)} queued jobs"
            said = f"{some} of the last session could not be read and {'was' if len(bad) == 1 else 'were'} set " \
                   f"aside ({bad[0][3].rstrip('.')})."
            self.notice = f"{self.notice} {said}".strip()
        return jobs

    # -- what the worker says (any thread) ----------------------------------------------------------

    def queued(self, job_id: int, job: object) -> None:
        """Cheap (the writing happens on the store's thread): the worker says it under its own lock, so what a job
        says later (its end) is always written after it."""
        if not storable(job):
            return
        with self._meta:
            adopted = self._adopt.pop(id(job), None)
            if adopted is not None and adopted[0] is not job:
                adopted = None
            if adopted is None:
                position, self._next = self._next, self._next + 1
        if adopted is not None:  # one of load()'s: already stored
            self._writes.put(("adopt", job_id, adopted[1]))
        else:
            self._writes.put(("add", job_id, job, position))

    def ordered(self, job_ids: list[int]) -> None:
        """The jobs in this order (the running ones first, then the waiting ones)."""
        self._writes.put(("order", list(job_ids)))

    def ended(self, job_id: int) -> None:
        self._writes.put(("end", job_id))

    def flush(self) -> None:
        """Wait until everything said so far is written."""
        self._writes.join()

    def close(self) -> None:
        if self._writer.is_alive():
            self._writes.put(None)
            self._writer.join()
        with self._lock:
            self._db.close()

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM jobs").fetchone()[0]

    # -- the store's thread -------------------------------------------------------------------------

    def _write_all(self) -> None:
        while True:
            item = self._writes.get()
            try:
                if item is None:
                    return
                self._write(*item)
            except Exception as error:  # noqa: BLE001 - said once; the thread stays alive for what comes next
                self._problem(error)
            finally:
                self._writes.task_done()

    def _write(self, what: str, *args) -> None:
        if what == "add":
            job_id, job, position = args
            kind, data = encode(job)
            pictures: dict[str, str] = {}
            data = json.dumps(_split(json.loads(data), pictures))
            with self._lock, self._transaction():
                self._db.executemany("INSERT OR IGNORE INTO pictures (hash, data) VALUES (?, ?)", pictures.items())
                row = self._db.execute("INSERT INTO jobs (position, kind, data, queued) VALUES (?, ?, ?, ?)",
                                       (position, kind, data, time.time())).lastrowid
                self._db.executemany("INSERT INTO uses (job, hash) VALUES (?, ?)", [(row, h) for h in pictures])
                self._rows[job_id] = row
        elif what == "adopt":
            with self._lock:
                self._rows[args[0]] = args[1]
        elif what == "order":
            with self._lock:
                rows = [self._rows[job] for job in args[0] if job in self._rows]
                with self._transaction():
                    for position, row in enumerate(rows):
                        self._db.execute("UPDATE jobs SET position = ? WHERE id = ?", (position, row))
            with self._meta:
                self._next = max(self._next, len(rows))
        elif what == "end":
            with self._lock:
                row = self._rows.pop(args[0], None)
                if row is not None:
                    with self._transaction():  # its pictures go once no other job uses them
                        self._db.execute("DELETE FROM jobs WHERE id = ?", (row,))
                        self._db.execute("DELETE FROM uses WHERE job = ?", (row,))
                        self._db.execute("DELETE FROM pictures WHERE hash NOT IN (SELECT hash FROM uses)")
                    if self._db.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0:
                        self._db.execute("VACUUM")  # the queue emptied: give the disk back
                        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @contextmanager
    def _transaction(self):
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _problem(self, error: Exception) -> None:
        if self._told or self._on_problem is None:
            return
        self._told = True
        try:
            self._on_problem(f"The queue could not be saved ({error}): the waiting jobs may not come back after a "
                             "restart. Check the disk and the settings folder.")
        except Exception:  # noqa: BLE001 - the store's thread outlives whoever listens
            pass
