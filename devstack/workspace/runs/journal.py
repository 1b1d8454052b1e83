"""Persistence of runs: their tables, the write-behind journal, loading on start, id allocation.

Runs live in memory (:mod:`devstack.workspace.runs.state`) and are written to SQLite by a
background writer: a change marks the run dirty, and the writer saves the dirty runs in one
transaction a moment later, so ``runs/get`` never waits on the database. What a client is
answered about (a submit's run id, a repair id, a cancel) is written before the answer:
:meth:`Journal.flush` right away, so a killed process (SIGKILL included) never forgets a run
it acknowledged; only the later progress of runs can be lost, and a restart recovers from that.

The journal also hands out the workspace's ids: run ids (which repair ids share, as on
Databricks) and job ids (which jobs/create and runs/submit share).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable

from devstack.workspace.runs.state import RunRec
from devstack.workspace.store import Store, dumps, loads

log = logging.getLogger("devstack.workspace.runs")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY,
    parent_run_id INTEGER,
    job_id INTEGER,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_parent ON runs(parent_run_id);
CREATE INDEX IF NOT EXISTS runs_job ON runs(job_id);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS task_values (
    job_run_id INTEGER NOT NULL,
    task_key TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (job_run_id, task_key, key)
);
"""

_COUNTERS = 0  # the dirty-set entry that stands for the counters


class Journal:
    """The runs' tables and their write-behind writer; also the workspace's id allocator."""

    def __init__(self, store: Store):
        self.store = store
        store.ensure_schema(SCHEMA)
        self._lock = threading.Lock()
        self._counters = {row["name"]: row["value"] for row in store.all("SELECT name, value FROM counters")}
        self.raise_to("run", store.one("SELECT MAX(run_id) AS m FROM runs")["m"] or 0)
        self.raise_to("job", store.one("SELECT MAX(job_id) AS m FROM runs")["m"] or 0)
        self._dirty: set[int] = set()
        self._dirty_cond = threading.Condition(threading.Lock())
        self._snapshot: Callable[[list[int]], list[dict]] | None = None
        self._stopping = False
        # One flush at a time: a flush's snapshot must not be older than a row an earlier flush wrote.
        self._flush_lock = threading.Lock()

    # ------------------------------------------------------------------ ids

    def next_id(self, name: str) -> int:
        """The next id of sequence ``name`` ("run" or "job")."""
        with self._lock:
            value = self._counters.get(name, 0) + 1
            self._counters[name] = value
        self._mark_id(_COUNTERS)
        return value

    def raise_to(self, name: str, floor: int) -> None:
        """Never hand out an id of ``name`` at or below ``floor`` (ids already in a table)."""
        with self._lock:
            self._counters[name] = max(self._counters.get(name, 0), floor)

    # ------------------------------------------------------------------ loading and writing

    def load(self) -> list[RunRec]:
        """Every run saved, in id order."""
        fields = {f.name for f in dataclasses.fields(RunRec)}
        out = []
        for row in self.store.all("SELECT data FROM runs ORDER BY run_id"):
            data = loads(row["data"])
            rec = RunRec(**{k: v for k, v in data.items() if k in fields})
            rec.attempts = {k: list(v) for k, v in rec.attempts.items()}
            out.append(rec)
        return out

    def start(self, snapshot: Callable[[list[int]], list[dict]]) -> None:
        """Start the writer; ``snapshot(run_ids)`` copies those runs' fields (the runs still there)."""
        self._snapshot = snapshot
        threading.Thread(target=self._writer_loop, name="run-writer", daemon=True).start()

    def mark(self, rec: RunRec) -> None:
        """``rec`` changed: save it soon."""
        self._mark_id(rec.run_id)

    def _mark_id(self, run_id: int) -> None:
        with self._dirty_cond:
            self._dirty.add(run_id)
            self._dirty_cond.notify()

    def _writer_loop(self) -> None:
        while not self._stopping:
            with self._dirty_cond:
                while not self._dirty:
                    self._dirty_cond.wait()
            time.sleep(0.05)  # coalesce bursts of changes into one transaction
            if self._stopping:
                return  # stop() writes the rest
            try:
                self.flush()
            except Exception:
                log.exception("writing runs to %s failed", self.store.path)

    def flush(self) -> None:
        """Write every dirty run (and the counters) now; on return, every change made before the
        call is committed (SQLite's WAL: it survives the process being killed)."""
        with self._flush_lock:
            with self._dirty_cond:
                if self._snapshot is None:  # not started: runs cannot be copied yet, only the counters
                    ids = {_COUNTERS} & self._dirty
                    self._dirty -= ids
                else:
                    ids, self._dirty = self._dirty, set()
            if not ids:
                return
            pending = [i for i in ids if i != _COUNTERS]
            snapshots = self._snapshot(pending) if self._snapshot and pending else []
            with self._lock:
                counters = list(self._counters.items())
            rows = [(d["run_id"], d["parent_id"], d["job_id"], dumps(d)) for d in snapshots]
            with self.store.tx() as conn:
                conn.executemany(
                    "INSERT OR REPLACE INTO runs(run_id, parent_run_id, job_id, data) VALUES (?,?,?,?)", rows
                )
                conn.executemany("INSERT OR REPLACE INTO counters(name, value) VALUES (?, ?)", counters)

    def issued(self, name: str, value: int) -> bool:
        """Whether ``value`` is an id of sequence ``name`` handed out already (it may be gone since)."""
        with self._lock:
            return 0 < value <= self._counters.get(name, 0)

    def delete(self, job_run_id: int, run_ids: list[int]) -> None:
        """Forget a job run: its rows, its task runs' rows and its task values."""
        with self.store.tx() as conn:
            conn.executemany("DELETE FROM runs WHERE run_id=?", [(i,) for i in run_ids])
            conn.execute("DELETE FROM task_values WHERE job_run_id=?", (job_run_id,))

    def stop(self) -> None:
        """Stop the writer and write what is left."""
        self._stopping = True
        with self._dirty_cond:
            self._dirty_cond.notify_all()
        self.flush()

    # ------------------------------------------------------------------ task values

    def set_task_value(self, job_run_id: int, task_key: str, key: str, encoded: str) -> None:
        with self.store.tx() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO task_values(job_run_id, task_key, key, value) VALUES (?,?,?,?)",
                (job_run_id, task_key, key, encoded),
            )

    def task_value(self, job_run_id: int, task_key: str, key: str) -> str | None:
        row = self.store.one(
            "SELECT value FROM task_values WHERE job_run_id=? AND task_key=? AND key=?",
            (job_run_id, task_key, key),
        )
        return None if row is None else row["value"]
