"""Endpoints the notebook drivers (and tests/benchmarks) call: task values and workspace stats.

``dbutils.jobs.taskValues`` in a notebook sets and gets values through these, so tasks of one
job run can pass small values to each other even when they run in different driver processes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from devstack.workspace.http import Request, invalid, not_found
from devstack.workspace.runs.journal import Journal
from devstack.workspace.runs.state import RunsBackend

MAX_VALUE_BYTES = 48 * 1024  # Databricks' limit on one task value


class RunsInternalApi:
    """Task values (kept by the journal, per job run) and the runs' stats.

    :param timings: ``timings()`` -> the server's recent (path, milliseconds) handling times.
    """

    def __init__(
        self, runs: RunsBackend, journal: Journal, timings: Callable[[], Iterable[tuple[str, float]]]
    ):
        self.runs = runs
        self.journal = journal
        self.timings = timings

    def set_value(self, request: Request):
        job_run_id = request.require("job_run_id", int)
        task_key = request.require("task_key", str)
        key = request.require("key", str)
        if "value" not in request.body:
            raise invalid("Missing required field: value")
        encoded = json.dumps(request.body["value"])
        if len(encoded.encode()) > MAX_VALUE_BYTES:
            raise invalid(
                f"Task value {key!r} is {len(encoded)} bytes; the limit is {MAX_VALUE_BYTES} bytes."
            )
        self.runs.get(job_run_id)
        self.journal.set_task_value(job_run_id, task_key, key, encoded)
        return {}

    def get_value(self, request: Request):
        job_run_id = request.require("job_run_id", int)
        task_key = request.require("task_key", str)
        key = request.require("key", str)
        value = self.journal.task_value(job_run_id, task_key, key)
        if value is None:
            raise not_found(f"No task value {key!r} was set by task {task_key!r} in job run {job_run_id}.")
        return {"value": json.loads(value)}

    def stats(self, request: Request):
        out: dict[str, Any] = self.runs.stats()
        gets = sorted(ms for path, ms in list(self.timings()) if path.endswith("/jobs/runs/get"))
        if gets:
            out["runs_get_server_ms"] = {
                "count": len(gets),
                "p50": round(gets[len(gets) // 2], 2),
                "p99": round(gets[min(len(gets) - 1, int(len(gets) * 0.99))], 2),
                "max": round(gets[-1], 2),
            }
        return out
