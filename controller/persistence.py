"""Durable objects for ``klambda up``: the local store's objects in SQLite, in the data dir.

What Kubernetes keeps in etcd, ``klambda up`` keeps here: every object of every kind (Functions,
Versions, Aliases, EventSourceMappings, ConfigMaps, Secrets) with its bookkeeping (uid,
resourceVersion, generation, creationTimestamp) and status (which holds a Function's
``lastVersion``, so version numbers are never reused across restarts).

A write is committed before the change it records is acknowledged (the admin API answers after
the store's ``apply`` returns), so a ``kill -9`` loses nothing that was acknowledged. SQLite's
journal makes each commit atomic. Writes run on one worker thread, in order, off the event loop.
The file and its folder are private to the user (0600 / 0700): Secrets are stored in it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    manifest TEXT NOT NULL,
    status TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

Key = tuple[str, str, str]


@dataclass(frozen=True)
class Row:
    """One stored object as written: its full manifest (metadata included) and status."""

    key: Key
    manifest: dict[str, Any]
    status: dict[str, Any]


class StateFile:
    """The SQLite file behind the local store. Open with ``StateFile.open``; ``close`` after."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self.path = path
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state-file")

    @classmethod
    def open(cls, path: Path) -> StateFile:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        if not path.exists():  # created private before SQLite writes anything to it
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        os.chmod(path, 0o600)
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # a commit is on disk before it is acknowledged
        db.executescript(_SCHEMA)
        return cls(db, path)

    def load(self) -> tuple[list[Row], int]:
        """Every stored object, and the last resourceVersion handed out."""
        rows = [
            Row((kind, ns, name), json.loads(manifest), json.loads(status))
            for kind, ns, name, manifest, status in self._db.execute(
                "SELECT kind, namespace, name, manifest, status FROM objects"
            )
        ]
        found = self._db.execute(
            "SELECT value FROM counters WHERE name = 'resourceVersion'"
        ).fetchone()
        return rows, int(found[0]) if found else 0

    async def put(self, rows: list[Row], deleted: list[Key], resource_version: int) -> None:
        """Writes objects and removes others in one transaction; returns once committed."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, self._write, rows, deleted, resource_version)

    def _write(self, rows: list[Row], deleted: list[Key], resource_version: int) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?)",
                [(*r.key, json.dumps(r.manifest), json.dumps(r.status)) for r in rows],
            )
            db.executemany(
                "DELETE FROM objects WHERE kind = ? AND namespace = ? AND name = ?", deleted
            )
            db.execute(
                "INSERT OR REPLACE INTO counters VALUES ('resourceVersion', ?)",
                (resource_version,),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._db.close()
