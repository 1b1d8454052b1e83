"""Endpoints the notebook drivers (and tests/benchmarks) call: task values and workspace stats.

``dbutils.jobs.taskValues`` in a notebook sets and gets values through these, so tasks of one
job run can pass small values to each other even when they run in different driver processes.
"""

from __future__ import annotations

import json

from devstack.workspace.context import WorkspaceContext
from devstack.workspace.http import Request, invalid, not_found
from devstack.workspace.runs import manager

MAX_VALUE_BYTES = 48 * 1024  # Databricks' limit on one task value


def register(router, ctx: WorkspaceContext) -> None:
    mgr = manager(ctx)

    def set_value(request: Request):
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
        mgr.get(job_run_id)
        with ctx.store.tx() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO task_values(job_run_id, task_key, key, value) VALUES (?,?,?,?)",
                (job_run_id, task_key, key, encoded),
            )
        return {}

    def get_value(request: Request):
        job_run_id = request.require("job_run_id", int)
        task_key = request.require("task_key", str)
        key = request.require("key", str)
        row = ctx.store.one(
            "SELECT value FROM task_values WHERE job_run_id=? AND task_key=? AND key=?",
            (job_run_id, task_key, key),
        )
        if row is None:
            raise not_found(f"No task value {key!r} was set by task {task_key!r} in job run {job_run_id}.")
        return {"value": json.loads(row["value"])}

    def stats(request: Request):
        out = mgr.stats()
        timings = ctx.services.get("http_timings")
        if timings is not None:
            gets = sorted(ms for path, ms in list(timings) if path.endswith("/jobs/runs/get"))
            if gets:
                out["runs_get_server_ms"] = {
                    "count": len(gets),
                    "p50": round(gets[len(gets) // 2], 2),
                    "p99": round(gets[min(len(gets) - 1, int(len(gets) * 0.99))], 2),
                    "max": round(gets[-1], 2),
                }
        return out

    router.add("POST", "2.0", "devstack/task-values/set", set_value)
    router.add("GET", "2.0", "devstack/task-values/get", get_value)
    router.add("GET", "2.0", "devstack/stats", stats)
