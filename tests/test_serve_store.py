"""The app's database on its own: event ids that are never given twice, the upgrade of a database an
earlier version made, and the online backup."""

from __future__ import annotations

import sqlite3

import pytest

pytest.importorskip("sqlalchemy")

from yolo_accel.serve.store import Store


def _crossings(n: int, first_frame: int = 0) -> list[dict]:
    return [
        {
            "frame": first_frame + i,
            "time_s": (first_frame + i) / 25,
            "counter": "line1",
            "track_id": i + 1,
            "class_name": "car",
            "direction": "in",
        }
        for i in range(n)
    ]


def test_an_event_id_is_never_given_twice(tmp_path):
    """A client polling `?after=N` must see every new event: after the newest events are deleted (a resume
    drops those past its starting frame, a restart drops them all) and after the server restarts, new
    events get ids above every id ever given."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    store = Store(url)
    sid = store.add_stream("cam", "a.mp4", "file", None, [], [])["id"]
    store.add_events(sid, _crossings(5))
    seen = max(e["id"] for e in store.events(sid))
    store.clear_events(sid, from_frame=3)  # the tail goes: ids 4 and 5 were already read by a client
    assert [e["frame"] for e in store.events(sid)] == [0, 1, 2]
    store.add_events(sid, _crossings(2, first_frame=3))
    new = store.events(sid, after_id=seen)
    assert [e["frame"] for e in new] == [3, 4], "a client that had read up to the old tail missed the new events"
    store.engine.dispose()
    store = Store(url)  # a restart: the ids go on from the highest ever given
    seen = max(e["id"] for e in store.events(sid))
    store.clear_events(sid)
    store.add_events(sid, _crossings(1))
    assert [e["id"] > seen for e in store.events(sid)] == [True]


def test_a_database_from_an_earlier_version_is_upgraded_with_its_ids(tmp_path):
    """The events table an earlier version made (integer key SQLite reuses, no plate column) becomes the
    current one: every event kept with its id, and ids not reused from then on."""
    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.executescript(
        """
        CREATE TABLE streams (id INTEGER PRIMARY KEY, name VARCHAR(200) NOT NULL, source TEXT NOT NULL,
            kind VARCHAR(10) NOT NULL, classes TEXT, lines TEXT NOT NULL, zones TEXT NOT NULL,
            loop BOOLEAN NOT NULL, status VARCHAR(20) NOT NULL, error TEXT, frames INTEGER NOT NULL,
            fps FLOAT NOT NULL, created_at FLOAT NOT NULL);
        CREATE TABLE events (id INTEGER PRIMARY KEY, stream_id INTEGER REFERENCES streams (id) ON DELETE CASCADE,
            frame INTEGER NOT NULL, time_s FLOAT NOT NULL, counter VARCHAR(100) NOT NULL,
            track_id INTEGER NOT NULL, class_name VARCHAR(100) NOT NULL, direction VARCHAR(10) NOT NULL,
            created_at FLOAT NOT NULL);
        CREATE INDEX ix_events_stream_id ON events (stream_id);
        INSERT INTO streams VALUES (1, 'cam', 'a.mp4', 'file', NULL, '[]', '[]', 0, 'stopped', NULL, 40, 0, 0);
        INSERT INTO events VALUES (7, 1, 10, 0.4, 'line1', 3, 'car', 'in', 0),
            (9, 1, 20, 0.8, 'line1', 4, 'bus', 'out', 0);
        """
    )
    con.close()
    store = Store(f"sqlite:///{path}")
    kept = store.events(1)
    got = [(e["id"], e["frame"], e["class_name"], e["plate"]) for e in kept]
    assert got == [(7, 10, "car", None), (9, 20, "bus", None)]
    assert store.counts(1) == {"line1": {"car": {"in": 1, "out": 0}, "bus": {"in": 0, "out": 1}}}
    store.clear_events(1, from_frame=20)
    store.add_events(1, _crossings(1, first_frame=20))
    assert store.events(1)[-1]["id"] == 10
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "events_before_upgrade" not in tables


def test_backup_copies_what_the_running_app_committed(tmp_path):
    """`serve --backup FILE` while the app holds its database open: the copy has every committed event,
    including those still in the -wal file; a bad target is one line, and nothing half-written is left."""
    from typer.testing import CliRunner

    from yolo_accel.cli import app

    data = tmp_path / "data"
    data.mkdir()
    store = Store(f"sqlite:///{data / 'yolo-accel.db'}")  # the running app's connections stay open
    sid = store.add_stream("cam", "a.mp4", "file", None, [], [])["id"]
    store.add_events(sid, _crossings(40))
    assert (data / "yolo-accel.db-wal").stat().st_size > 0  # the newest pages are not in the .db yet
    dest = tmp_path / "backup.db"
    res = CliRunner().invoke(app, ["serve", "--data-dir", str(data), "--backup", str(dest)])
    assert res.exit_code == 0, res.output
    assert "1 streams, 40 events" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.db", "data"]  # no partial copy beside it
    copy = Store(f"sqlite:///{dest}")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "created_at"} for r in rows]  # noqa: E731
    assert strip(copy.events(sid)) == strip(store.events(sid))
    assert copy.stream(sid)["name"] == "cam"
    for bad, expect in (
        (["--data-dir", str(tmp_path / "none")], "no database at"),
        (["--data-dir", str(data), "--db", "postgresql://u@h/db"], "only an SQLite database"),
        (["--data-dir", str(data), "--backup", str(tmp_path / "no" / "x.db")], "in an existing folder"),
    ):
        args = ["serve", *bad] if "--backup" in bad else ["serve", *bad, "--backup", str(tmp_path / "b2.db")]
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2, res.output
        assert expect in res.output.strip().splitlines()[-1]
    assert not list(tmp_path.glob("*b2.db*")) and not list(tmp_path.glob(".*partial"))
