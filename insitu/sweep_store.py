"""The results store of a sweep: one SQLite file, one row per point, keyed by the point's hash.

Only the sweep's client writes, one transaction per finished point, so a row is there whole or
not at all, whatever kills the process. The file is created with its table in a temporary and
linked into place, so a reader never finds a store without its table. A point that finished is
never run again; a point that failed keeps its reason until a re-run replaces it. ``plan.json``
beside the store lists every planned point, so pending points are the planned keys that have no
row.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .atomic import write_json

__all__ = ["PLAN", "STORE", "Row", "Store", "read_plan", "write_plan"]

STORE = "results.sqlite"
PLAN = "plan.json"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    command TEXT NOT NULL,
    overrides TEXT NOT NULL,
    design TEXT NOT NULL,
    summary TEXT,
    error TEXT,
    wall_s REAL,
    worker TEXT,
    finished_at REAL NOT NULL
)
"""


@dataclass(frozen=True)
class Row:
    key: str
    status: str
    command: str
    overrides: dict[str, Any]
    design: dict[str, Any]
    summary: dict[str, Any] | None
    error: str | None
    wall_s: float | None
    worker: str | None
    finished_at: float


class Store:
    """Read and append points of ``DIR/results.sqlite``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / STORE

    def _create(self) -> None:
        """Create the store whole: schema and WAL mode in a temporary, then link it into place.

        ``os.link`` fails when the store exists, so a second creator never replaces rows.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{STORE}.", suffix=".tmp")
        os.close(fd)
        try:
            with closing(sqlite3.connect(tmp)) as con:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute(_SCHEMA)
                con.commit()
            with suppress(FileExistsError):
                os.link(tmp, self.path)
        finally:
            for leftover in (tmp, tmp + "-wal", tmp + "-shm"):
                Path(leftover).unlink(missing_ok=True)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if not self.path.exists():
            self._create()
        with closing(sqlite3.connect(self.path, timeout=60)) as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(_SCHEMA)
            yield con

    def put(
        self,
        key: str,
        *,
        status: str,
        command: str,
        overrides: dict[str, Any],
        design: dict[str, Any],
        summary: dict[str, Any] | None = None,
        error: str | None = None,
        wall_s: float | None = None,
        worker: str | None = None,
    ) -> None:
        """Write one point's row in one transaction (replacing an earlier failure)."""
        with self._connect() as con, con:
            con.execute(
                "INSERT OR REPLACE INTO points VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    status,
                    command,
                    json.dumps(overrides),
                    json.dumps(design),
                    None if summary is None else json.dumps(summary),
                    error,
                    wall_s,
                    worker,
                    time.time(),
                ),
            )

    def rows(self, status: str | None = None) -> list[Row]:
        if not self.path.exists():
            return []
        query = "SELECT * FROM points" + (" WHERE status = ?" if status else "")
        with self._connect() as con:
            cur = con.execute(query + " ORDER BY finished_at", (status,) if status else ())
            return [
                Row(
                    key=r[0],
                    status=r[1],
                    command=r[2],
                    overrides=json.loads(r[3]),
                    design=json.loads(r[4]),
                    summary=None if r[5] is None else json.loads(r[5]),
                    error=r[6],
                    wall_s=r[7],
                    worker=r[8],
                    finished_at=r[9],
                )
                for r in cur.fetchall()
            ]

    def statuses(self) -> dict[str, str]:
        """key -> 'ok' | 'failed' for every row."""
        if not self.path.exists():
            return {}
        with self._connect() as con:
            return dict(con.execute("SELECT key, status FROM points").fetchall())


def write_plan(folder: str | Path, plan: dict[str, Any]) -> None:
    write_json(Path(folder) / PLAN, plan)


def read_plan(folder: str | Path) -> dict[str, Any] | None:
    path = Path(folder) / PLAN
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data
