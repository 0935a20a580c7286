"""Streams, their settings and their crossing events in a database (SQLite by default, any SQLAlchemy URL).

Events are committed as they arrive; SQLite runs in WAL mode with full sync, so a crash or a
`kill -9` loses no committed event, and the stream list survives a restart.
"""

from __future__ import annotations

import copy
import json
import os
import sqlite3
import threading
import time
from collections import defaultdict
from pathlib import Path

from .._deps import require
from ..errors import SettingsError


def _tables(sa):
    meta = sa.MetaData()
    streams = sa.Table(
        "streams",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),  # file or url
        sa.Column("classes", sa.Text),
        sa.Column("lines", sa.Text, nullable=False, default="[]"),  # JSON list of "x1,y1,x2,y2"
        sa.Column("zones", sa.Text, nullable=False, default="[]"),
        sa.Column("loop", sa.Boolean, nullable=False, default=False),  # a file played again and again
        sa.Column("realtime", sa.Boolean, nullable=False, default=False),  # a file delivered at its frame rate
        sa.Column("status", sa.String(20), nullable=False, default="stopped"),
        sa.Column("error", sa.Text),
        sa.Column("frames", sa.Integer, nullable=False, default=0),
        sa.Column("fps", sa.Float, nullable=False, default=0.0),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    events = sa.Table(
        "events",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("stream_id", sa.Integer, sa.ForeignKey("streams.id", ondelete="CASCADE"), index=True),
        sa.Column("frame", sa.Integer, nullable=False),
        sa.Column("time_s", sa.Float, nullable=False),
        sa.Column("counter", sa.String(100), nullable=False),
        sa.Column("track_id", sa.Integer, nullable=False),
        sa.Column("class_name", sa.String(100), nullable=False),
        sa.Column("direction", sa.String(10), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("plate", sa.String(20)),  # the track's best plate read so far (with --ocr)
        # ids are never reused, not even those of deleted events: a client that asks for the events
        # after id N (across restarts too) would otherwise miss a new event that got an old id
        sqlite_autoincrement=True,
    )
    return meta, streams, events


EVENT_FIELDS = (
    "id",
    "stream_id",
    "frame",
    "time_s",
    "counter",
    "track_id",
    "class_name",
    "direction",
    "plate",
    "created_at",
)


class Store:
    """The app's database. Thread-safe: every call opens its own connection from the engine's pool."""

    def __init__(self, url: str):
        sa = require("sqlalchemy")
        try:
            self._open(sa, url)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError):
            raise SettingsError(
                f"--db {_shown(sa, url)}: not a database URL (sqlite:///FILE or postgresql://USER@HOST/DB)"
            ) from None
        except ModuleNotFoundError as e:
            raise SettingsError(f"--db {_shown(sa, url)}: its driver is not installed ({e.name})") from None
        except sa.exc.DBAPIError as e:
            why = str(e.orig).strip().splitlines()[0] if str(e.orig).strip() else type(e.orig).__name__
            raise SettingsError(f"--db {_shown(sa, url)}: cannot open it ({why[:200]})") from None

    def _open(self, sa, url: str) -> None:
        self.sa, self.url = sa, url
        sqlite = url.startswith("sqlite")
        self.engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30} if sqlite else {})
        if sqlite:

            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(conn, _record):  # per connection: WAL, durable commits, foreign keys
                cur = conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=FULL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

        self.meta, self.streams_t, self.events_t = _tables(sa)
        if sqlite:
            self._upgrade_sqlite_events()
        self.meta.create_all(self.engine)
        with self.engine.begin() as c:  # another database (PostgreSQL) made before events had plates
            if "plate" not in {col["name"] for col in sa.inspect(c).get_columns("events")}:
                c.execute(sa.text("ALTER TABLE events ADD COLUMN plate VARCHAR(20)"))
            if "realtime" not in {col["name"] for col in sa.inspect(c).get_columns("streams")}:
                c.execute(sa.text("ALTER TABLE streams ADD COLUMN realtime BOOLEAN NOT NULL DEFAULT false"))
        # Counts per stream, kept up to date as events are added: the page and API clients ask for them
        # every second, and a GROUP BY over a long-running stream's events each time would not scale.
        self._counts: dict[int, dict] = {}
        self._counts_lock = threading.Lock()

    def _upgrade_sqlite_events(self) -> None:
        """An events table made by an earlier version (no plates; ids that SQLite reuses after the newest
        rows are deleted) is copied into the current table, ids kept."""
        sa = self.sa
        with self.engine.begin() as c:
            sql = c.execute(sa.text("SELECT sql FROM sqlite_master WHERE type='table' AND name='events'")).scalar()
            if sql is None or "AUTOINCREMENT" in sql.upper():
                return
            old = [col["name"] for col in sa.inspect(c).get_columns("events")]
            c.execute(sa.text("ALTER TABLE events RENAME TO events_before_upgrade"))
            c.execute(sa.text("DROP INDEX IF EXISTS ix_events_stream_id"))
            self.events_t.create(c)
            cols = ", ".join(name for name in EVENT_FIELDS if name in old)
            c.execute(sa.text(f"INSERT INTO events ({cols}) SELECT {cols} FROM events_before_upgrade"))
            c.execute(sa.text("DROP TABLE events_before_upgrade"))

    # -- streams --------------------------------------------------------------------------------
    def add_stream(
        self,
        name: str,
        source: str,
        kind: str,
        classes: str | None,
        lines: list,
        zones: list,
        loop: bool = False,
        realtime: bool = False,
    ) -> dict:
        row = {
            "name": name,
            "source": source,
            "kind": kind,
            "classes": classes,
            "lines": json.dumps(lines),
            "zones": json.dumps(zones),
            "loop": bool(loop),
            "realtime": bool(realtime),
            "status": "stopped",
            "frames": 0,
            "fps": 0.0,
            "created_at": time.time(),
        }
        with self.engine.begin() as c:
            sid = c.execute(self.streams_t.insert().values(**row)).inserted_primary_key[0]
        return self.stream(sid)

    def _stream_dict(self, r) -> dict:
        d = dict(r._mapping)
        d["lines"], d["zones"] = json.loads(d["lines"]), json.loads(d["zones"])
        return d

    def streams(self) -> list[dict]:
        with self.engine.connect() as c:
            rows = c.execute(self.streams_t.select().order_by(self.streams_t.c.id)).all()
        return [self._stream_dict(r) for r in rows]

    def stream(self, sid: int) -> dict | None:
        with self.engine.connect() as c:
            r = c.execute(self.streams_t.select().where(self.streams_t.c.id == sid)).first()
        return self._stream_dict(r) if r else None

    def update_stream(self, sid: int, **fields) -> None:
        with self.engine.begin() as c:
            c.execute(self.streams_t.update().where(self.streams_t.c.id == sid).values(**fields))

    def delete_stream(self, sid: int) -> None:
        with self._counts_lock, self.engine.begin() as c:
            c.execute(self._events_of(sid))
            c.execute(self.streams_t.delete().where(self.streams_t.c.id == sid))
            self._counts.pop(sid, None)

    def clear_events(self, sid: int, from_frame: int = 0) -> None:
        """Drop one stream's events (from frame `from_frame` on: it is about to run again from there)."""
        q = self._events_of(sid)
        if from_frame:
            q = q.where(self.events_t.c.frame >= from_frame)
        with self._counts_lock, self.engine.begin() as c:
            c.execute(q)
            self._counts.pop(sid, None)

    def _events_of(self, sid: int):
        return self.events_t.delete().where(self.events_t.c.stream_id == sid)

    # -- events ---------------------------------------------------------------------------------
    def add_events(self, sid: int, events: list[dict]) -> int:
        """Commit one stream's records (as `video --events` writes them): crossings are stored, plate records
        set the plate of the track's events; returns how many crossings were stored."""
        plates = [e for e in events if e.get("event") == "plate"]
        events = [e for e in events if e.get("event") != "plate"]
        if plates:
            t = self.events_t
            with self.engine.begin() as c:
                for p in plates:
                    q = t.update().where(t.c.stream_id == sid, t.c.track_id == int(p["track_id"]))
                    c.execute(q.values(plate=str(p["plate"])))
        if not events:
            return 0
        now = time.time()
        rows = [
            {
                "stream_id": sid,
                "frame": int(e["frame"]),
                "time_s": float(e["time_s"]),
                "counter": str(e["counter"]),
                "track_id": int(e["track_id"]),
                "class_name": str(e["class_name"]),
                "direction": str(e["direction"]),
                "plate": e.get("plate"),
                "created_at": now,
            }
            for e in events
        ]
        with self._counts_lock:
            with self.engine.begin() as c:
                c.execute(self.events_t.insert(), rows)
            counts = self._counts.get(sid)
            if counts is not None:
                for r in rows:
                    per = counts.setdefault(r["counter"], {}).setdefault(r["class_name"], {"in": 0, "out": 0})
                    per[r["direction"]] = per.get(r["direction"], 0) + 1
        return len(rows)

    def max_track_id(self, sid: int) -> int:
        """The highest track id among a stream's stored events (0 when it has none)."""
        sa, t = self.sa, self.events_t
        with self.engine.connect() as c:
            return int(c.execute(sa.select(sa.func.max(t.c.track_id)).where(t.c.stream_id == sid)).scalar() or 0)

    def events(self, sid: int | None = None, after_id: int = 0, limit: int = 1000) -> list[dict]:
        t = self.events_t
        q = t.select().where(t.c.id > after_id).order_by(t.c.id).limit(limit)
        if sid is not None:
            q = q.where(t.c.stream_id == sid)
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q).all()]

    def counts(self, sid: int) -> dict:
        """{counter: {class: {"in": n, "out": n}}} of the stored events."""
        with self._counts_lock:
            counts = self._counts.get(sid)
            if counts is None:
                counts = self._counts[sid] = self._count(sid)
            return copy.deepcopy(counts)

    def _count(self, sid: int) -> dict:
        sa, t = self.sa, self.events_t
        q = (
            sa.select(t.c.counter, t.c.class_name, t.c.direction, sa.func.count())
            .where(t.c.stream_id == sid)
            .group_by(t.c.counter, t.c.class_name, t.c.direction)
        )
        out: dict = defaultdict(lambda: defaultdict(lambda: {"in": 0, "out": 0}))
        with self.engine.connect() as c:
            for counter, name, direction, n in c.execute(q).all():
                out[counter][name][direction] = int(n)
        return {k: dict(v) for k, v in out.items()}


def _shown(sa, url: str) -> str:
    """The URL for an error line, its password masked."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url[:200]


def sqlite_path(url: str) -> Path | None:
    """The database file of an SQLite URL, else None (another database, or SQLite in memory)."""
    parsed = require("sqlalchemy").engine.make_url(url)
    return Path(parsed.database) if parsed.get_backend_name() == "sqlite" and parsed.database else None


def backup_sqlite(url: str, dest: Path) -> dict:
    """A consistent copy of the app's SQLite database in `dest`, taken while the app may be writing to it
    (SQLite's online backup: the newest events, still in the -wal file, are in the copy). The copy is
    written beside `dest` and renamed when whole and checked. Returns {"streams", "events", "bytes"}."""
    src_path = sqlite_path(url)
    if src_path is None:
        raise SettingsError("--backup: only an SQLite database (back up PostgreSQL and others with their own tools)")
    if not src_path.is_file():
        raise SettingsError(f"--backup: no database at {src_path} (give the --data-dir or --db that serve uses)")
    dest = Path(dest).expanduser()
    if dest.exists() and dest.resolve() == src_path.resolve():
        raise SettingsError("--backup: the copy cannot replace the database itself; give another file")
    if dest.is_dir() or not dest.parent.is_dir():
        raise SettingsError(f"--backup {dest}: give a file in an existing folder")
    partial = dest.with_name(f".{dest.name}.partial")
    src = sqlite3.connect(src_path, timeout=30)
    try:
        copy_ = sqlite3.connect(partial)
        try:
            src.backup(copy_)
            check = copy_.execute("PRAGMA integrity_check").fetchone()[0]
            if check != "ok":
                raise SettingsError(f"--backup: the copy failed its integrity check ({check})")
            counts = {t: copy_.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("streams", "events")}
        finally:
            copy_.close()
        os.replace(partial, dest)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        src.close()
    return {**counts, "bytes": dest.stat().st_size}
