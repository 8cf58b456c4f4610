"""The gallery's SQLite index: records of the picture files, searchable.

The PNG files are the truth; this is a cache of what they say, rebuilt from
them when it is missing or damaged. One connection shared by the threads
that use it (the GUI, the worker that adds results, the thumbnailer), behind
a lock; WAL with synchronous=FULL, a busy timeout, numbered migrations, and
FTS5 full-text search over the prompt, the negative prompt and the model.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import SfumatoError

SCHEMA_VERSION = 3

MIGRATIONS = {
    1: """
        CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,          -- relative to the output folder, with / separators
            mtime_ns INTEGER NOT NULL,
            size INTEGER NOT NULL,
            created REAL NOT NULL,              -- seconds since the epoch
            width INTEGER NOT NULL DEFAULT 0,
            height INTEGER NOT NULL DEFAULT 0,
            prompt TEXT NOT NULL DEFAULT '',
            negative_prompt TEXT NOT NULL DEFAULT '',
            model TEXT NOT NULL DEFAULT '',
            seed INTEGER,
            sampler TEXT NOT NULL DEFAULT '',
            steps INTEGER,
            cfg_scale REAL,
            parameters TEXT NOT NULL DEFAULT '',
            source TEXT NOT NULL DEFAULT '',
            favourite INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX images_created ON images (created DESC, id DESC);
        CREATE INDEX images_favourite ON images (favourite, created DESC);
        CREATE INDEX images_model ON images (model);
        CREATE VIRTUAL TABLE images_text USING fts5 (
            prompt, negative_prompt, model, content='images', content_rowid='id', tokenize='unicode61'
        );
        CREATE TRIGGER images_text_insert AFTER INSERT ON images BEGIN
            INSERT INTO images_text (rowid, prompt, negative_prompt, model)
            VALUES (new.id, new.prompt, new.negative_prompt, new.model);
        END;
        CREATE TRIGGER images_text_delete AFTER DELETE ON images BEGIN
            INSERT INTO images_text (images_text, rowid, prompt, negative_prompt, model)
            VALUES ('delete', old.id, old.prompt, old.negative_prompt, old.model);
        END;
        CREATE TRIGGER images_text_update AFTER UPDATE OF prompt, negative_prompt, model ON images BEGIN
            INSERT INTO images_text (images_text, rowid, prompt, negative_prompt, model)
            VALUES ('delete', old.id, old.prompt, old.negative_prompt, old.model);
            INSERT INTO images_text (rowid, prompt, negative_prompt, model)
            VALUES (new.id, new.prompt, new.negative_prompt, new.model);
        END;
    """,
    # Lineage (desktop/core/lineage.py): a picture's pixel hash, and what each hash was made from. The links are
    # kept by hash, not by picture, so deleting a picture leaves its children's chain readable through a gap.
    2: """
        ALTER TABLE images ADD COLUMN pixel_hash TEXT NOT NULL DEFAULT '';
        CREATE INDEX images_pixel_hash ON images (pixel_hash);
        CREATE TABLE parents (
            child TEXT NOT NULL,                -- the pixel hash of the picture made
            parent TEXT NOT NULL,               -- the pixel hash of a picture it was made from
            role TEXT NOT NULL,                 -- init, mask, control, reference or source
            PRIMARY KEY (child, parent, role)
        );
        CREATE INDEX parents_parent ON parents (parent);
    """,
    # Pixel hashes computed for pictures that carry none (saved before lineage, or by other tools), once per
    # version of the file: a file whose mtime or size changed is hashed again (store.py fill_hashes).
    3: """
        CREATE TABLE IF NOT EXISTS hashed (
            path TEXT PRIMARY KEY,
            mtime_ns INTEGER NOT NULL,
            size INTEGER NOT NULL,
            pixel_hash TEXT NOT NULL,           -- '' for a file that could not be decoded
            mask_hash TEXT NOT NULL             -- a grey picture's hash as a mask (HxW), else ''
        );
        CREATE INDEX IF NOT EXISTS hashed_mask ON hashed (mask_hash) WHERE mask_hash != '';
    """,
}


class GalleryIndexError(SfumatoError):
    """The index cannot be used (the store rebuilds it)."""


@dataclass(frozen=True)
class ImageRecord:
    id: int
    path: str
    mtime_ns: int
    size: int
    created: float
    width: int
    height: int
    prompt: str
    negative_prompt: str
    model: str
    seed: int | None
    sampler: str
    steps: int | None
    cfg_scale: float | None
    parameters: str
    source: str
    favourite: bool
    pixel_hash: str = ""  # lineage.py; "" for a picture that does not carry one


COLUMNS = [f.name for f in fields(ImageRecord)]
SORTS = {"newest": "created DESC, id DESC", "oldest": "created ASC, id ASC", "seed": "seed ASC, id DESC"}


@dataclass(frozen=True)
class Query:
    """What the gallery shows: a full-text search and filters."""

    text: str = ""
    favourites: bool = False
    model: str = ""
    since: float | None = None  # seconds since the epoch, inclusive
    until: float | None = None  # exclusive
    sort: str = "newest"
    ids: frozenset[int] | None = None  # only these pictures (a picture's family), whatever else is asked


class GalleryIndex:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA busy_timeout = 10000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._migrate()
            self._db.execute("SELECT count(*) FROM images").fetchone()
        except sqlite3.DatabaseError as error:
            self.close()
            raise GalleryIndexError(f"The gallery index {self.path.name} cannot be used: {error}") from None

    def close(self) -> None:
        with self._lock:
            db = getattr(self, "_db", None)
            if db is not None:
                db.close()
                self._db = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic change: everything inside commits together, or nothing does."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"it was made by a newer Sfumato (schema {version})")
        for number in range(version + 1, SCHEMA_VERSION + 1):
            with self.transaction() as db:
                for statement in _statements(MIGRATIONS[number]):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")

    # -- writing ---------------------------------------------------------------------------------

    def upsert(self, rows: Sequence[dict]) -> None:
        """Insert or update records by path (a row: ImageRecord's fields without id, and optionally "parents":
        the lineage.Parent its file records, which replace those known for its pixel hash)."""
        if not rows:
            return
        names = [c for c in COLUMNS if c != "id"]
        updates = ", ".join(f"{c} = excluded.{c}" for c in names if c not in ("path", "favourite"))
        sql = (f"INSERT INTO images ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "
               f"ON CONFLICT(path) DO UPDATE SET {updates}")
        links = [(row["pixel_hash"], row["parents"]) for row in rows if row.get("pixel_hash") and row.get("parents")]
        with self.transaction() as db:
            db.executemany(sql, [[row.get(c, "") if c == "pixel_hash" else row.get(c) for c in names] for row in rows])
            db.executemany(f"UPDATE images SET pixel_hash = COALESCE(({_HASHED}), '') WHERE path = ? AND "
                           "pixel_hash = ''", [(row["path"], row["mtime_ns"], row["size"], row["path"])
                                               for row in rows if not row.get("pixel_hash")])  # hashed before
            for child, parents in links:
                db.execute("DELETE FROM parents WHERE child = ?", (child,))
                db.executemany("INSERT OR IGNORE INTO parents (child, parent, role) VALUES (?, ?, ?)",
                               [(child, p.hash, p.role) for p in parents])

    def remove_paths(self, paths: Sequence[str]) -> None:
        with self.transaction() as db:
            db.executemany("DELETE FROM images WHERE path = ?", [(p,) for p in paths])
            db.executemany("DELETE FROM hashed WHERE path = ?", [(p,) for p in paths])

    def set_hashes(self, rows: Sequence[tuple[str, int, int, str, str]]) -> None:
        """Record hashes computed from pixels: (path, mtime_ns, size, pixel hash, mask hash) of each file as it was
        when read; its record takes the pixel hash unless the file changed meanwhile (then it is hashed again)."""
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO hashed (path, mtime_ns, size, pixel_hash, mask_hash) "
                           "VALUES (?, ?, ?, ?, ?)", rows)
            db.executemany("UPDATE images SET pixel_hash = ? WHERE path = ? AND mtime_ns = ? AND size = ? AND "
                           "pixel_hash = ''", [(row[3], *row[:3]) for row in rows])

    def set_favourite(self, ids: Sequence[int], favourite: bool) -> None:
        with self.transaction() as db:
            db.executemany("UPDATE images SET favourite = ? WHERE id = ?", [(int(favourite), i) for i in ids])

    # -- reading ---------------------------------------------------------------------------------

    def search(self, query: Query) -> list[int]:
        """The ids matching `query`, in its order."""
        where, args = [], []
        terms = _fts_terms(query.text)
        if terms:
            where.append("id IN (SELECT rowid FROM images_text WHERE images_text MATCH ?)")
            args.append(terms)
        if query.favourites:
            where.append("favourite = 1")
        if query.model:
            where.append("model = ?")
            args.append(query.model)
        if query.ids is not None:
            where.append(f"id IN ({', '.join('?' * len(query.ids))})")
            args.extend(sorted(query.ids))
        if query.since is not None:
            where.append("created >= ?")
            args.append(query.since)
        if query.until is not None:
            where.append("created < ?")
            args.append(query.until)
        sql = "SELECT id FROM images" + (f" WHERE {' AND '.join(where)}" if where else "")
        sql += f" ORDER BY {SORTS.get(query.sort, SORTS['newest'])}"
        with self._lock:
            return [row[0] for row in self._db.execute(sql, args)]

    def records(self, ids: Sequence[int]) -> dict[int, ImageRecord]:
        out: dict[int, ImageRecord] = {}
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = list(ids[start:start + 500])
                sql = f"SELECT {', '.join(COLUMNS)} FROM images WHERE id IN ({', '.join('?' * len(chunk))})"
                for row in self._db.execute(sql, chunk):
                    out[row["id"]] = _record(row)
        return out

    def by_path(self, path: str) -> ImageRecord | None:
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(COLUMNS)} FROM images WHERE path = ?", (path,)).fetchone()
        return _record(row) if row else None

    def parents(self, pixel_hash: str) -> list[tuple[str, str]]:
        """(role, parent hash) of what the picture with this hash was made from, in the roles' order."""
        with self._lock:
            rows = self._db.execute("SELECT role, parent FROM parents WHERE child = ? ORDER BY rowid",
                                    (pixel_hash,)).fetchall()
        return [(row[0], row[1]) for row in rows]

    def children(self, pixel_hash: str) -> list[tuple[str, str]]:
        """(role, child hash) of what was made from the picture with this hash, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT role, child FROM parents WHERE parent = ? ORDER BY rowid",
                                    (pixel_hash,)).fetchall()
        return [(row[0], row[1]) for row in rows]

    def by_hash(self, hashes: Sequence[str]) -> dict[str, list[int]]:
        """pixel hash -> ids of the pictures with it (oldest first); a hash no picture has is left out. A mask's
        hash finds the grey pictures that are that mask (hashed as masks by the store's fill_hashes)."""
        found: dict[str, list[tuple[float, int]]] = {}
        wanted = [h for h in dict.fromkeys(hashes) if h]
        with self._lock:
            for start in range(0, len(wanted), 400):
                chunk = wanted[start:start + 400]
                marks = ", ".join("?" * len(chunk))
                sql = (f"SELECT pixel_hash, id, created FROM images WHERE pixel_hash IN ({marks}) UNION "
                       f"SELECT h.mask_hash, i.id, i.created FROM hashed h JOIN images i ON i.path = h.path AND "
                       f"i.mtime_ns = h.mtime_ns AND i.size = h.size WHERE h.mask_hash IN ({marks})")
                for row in self._db.execute(sql, chunk + chunk):
                    found.setdefault(row[0], []).append((row[2], row[1]))
        return {h: [i for _, i in sorted(group)] for h, group in found.items()}

    def unhashed(self, limit: int) -> list[ImageRecord]:
        """Up to `limit` records that carry no pixel hash and whose file (as it is now) was never hashed."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join('i.' + c for c in COLUMNS)} FROM images i LEFT JOIN hashed h ON h.path = i.path "
                "AND h.mtime_ns = i.mtime_ns AND h.size = i.size WHERE i.pixel_hash = '' AND h.path IS NULL "
                "ORDER BY i.id LIMIT ?", (limit,)).fetchall()
        return [_record(row) for row in rows]

    def stamps(self) -> dict[str, tuple[int, int]]:
        """path -> (mtime_ns, size) of every record: what a refresh compares with the files."""
        with self._lock:
            return {row[0]: (row[1], row[2]) for row in self._db.execute("SELECT path, mtime_ns, size FROM images")}

    def models(self) -> list[str]:
        with self._lock:
            return [row[0] for row in self._db.execute(
                "SELECT DISTINCT model FROM images WHERE model != '' ORDER BY model COLLATE NOCASE")]

    def favourites(self) -> list[str]:
        with self._lock:
            return [row[0] for row in self._db.execute("SELECT path FROM images WHERE favourite = 1 ORDER BY path")]

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM images").fetchone()[0]

    def check(self) -> bool:
        """True when SQLite finds the file sound."""
        with self._lock:
            try:
                return self._db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
            except sqlite3.DatabaseError:
                return False


_HASHED = "SELECT pixel_hash FROM hashed WHERE path = ? AND mtime_ns = ? AND size = ?"


def _record(row: sqlite3.Row) -> ImageRecord:
    values = dict(row)
    values["favourite"] = bool(values["favourite"])
    return ImageRecord(**values)


def _fts_terms(text: str) -> str:
    """A search box's words as an FTS5 query: every word must appear (as a prefix), quotes escaped."""
    words = [w for w in text.replace('"', " ").split() if any(c.isalnum() for c in w)]  # "," alone matches nothing
    return " AND ".join(f'"{w}"*' for w in words[:32])


def _statements(script: str) -> list[str]:
    """Split a migration into statements (triggers keep their inner semicolons)."""
    out, current = [], []
    for line in script.strip().splitlines():
        current.append(line)
        text = "\n".join(current).strip()
        if text.endswith(";") and sqlite3.complete_statement(text):
            out.append(text)
            current = []
    if "\n".join(current).strip():
        out.append("\n".join(current))
    return out
