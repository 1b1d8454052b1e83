"""Jobs API runs endpoints (2.0/2.1/2.2): submit, get, get-output, list, cancel, repair, delete, export.

The runs themselves live in :mod:`devstack.workspace.runs.state`; :class:`RunsApi` validates
requests and renders runs exactly in the shape of Databricks' ``Run`` / ``RunTask`` /
``RunOutput`` objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from devstack.workspace.http import Request, invalid, pagination
from devstack.workspace.iam.backend import ADMIN_USER, user_name_of
from devstack.workspace.runs.spec import check_run_job_targets, normalize_tasks
from devstack.workspace.runs.state import TERMINAL, RunRec, RunsBackend, now_ms

if TYPE_CHECKING:
    from devstack.workspace.context import WorkspaceContext
    from devstack.workspace.jobs.backend import JobsBackend

VERSIONS = ("2.0", "2.1", "2.2")
PAGE_LIMIT = 100
RUNS_LIST_MAX = 25
RUN_TYPES = ("JOB_RUN", "WORKFLOW_RUN", "SUBMIT_RUN")

_TERMINATION = {
    # result_state -> (termination code, type). A task that never ran (its run_if ruled it out
    # after an upstream failed or was canceled, or its condition was not met) ends SKIPPED: "Run
    # was never executed, for example, if the upstream task run failed, the dependency type
    # condition was not met" (TerminationCodeCode in databricks-sdk, Jobs API reference).
    "SUCCESS": ("SUCCESS", "SUCCESS"),
    "SUCCESS_WITH_FAILURES": ("SUCCESS_WITH_FAILURES", "SUCCESS"),
    "EXCLUDED": ("SKIPPED", "SUCCESS"),
    "FAILED": ("RUN_EXECUTION_ERROR", "CLIENT_ERROR"),
    "UPSTREAM_FAILED": ("SKIPPED", "SUCCESS"),
    "TIMEDOUT": ("RUN_EXECUTION_ERROR", "CLIENT_ERROR"),
    "CANCELED": ("USER_CANCELED", "SUCCESS"),
    "UPSTREAM_CANCELED": ("SKIPPED", "SUCCESS"),
}
# Codes a task gets for a reason its result does not tell, with their termination type.
# LIBRARY_INSTALLATION_ERROR is a client error: "The run failed while installing the
# user-requested library" (TerminationCodeCode, Jobs API reference).
_TERMINATION_TYPE = {"DRIVER_ERROR": "INTERNAL_ERROR", "LIBRARY_INSTALLATION_ERROR": "CLIENT_ERROR"}


def run_page_url(base_url: str, rec: RunRec) -> str:
    if rec.run_type == "SUBMIT_RUN":
        return f"{base_url}/jobs/runs/{rec.run_id}"
    return f"{base_url}/jobs/{rec.job_id}/runs/{rec.run_id}"


def _state(rec: RunRec) -> dict[str, Any]:
    state: dict[str, Any] = {
        "life_cycle_state": rec.life,
        "state_message": rec.message or "",
        "user_cancelled_or_timedout": rec.user_cancelled_or_timedout,
    }
    if rec.result and rec.life in TERMINAL:
        state["result_state"] = rec.result
    if rec.life == "QUEUED":
        state["queue_reason"] = rec.message
    return state


def _status(rec: RunRec, max_parallel: int, failed_task_type: str = "INTERNAL_ERROR") -> dict[str, Any]:
    """A run's ``status``; ``failed_task_type``: for a job run that its tasks ended INTERNAL_ERROR,
    the termination type of the task that did."""
    if rec.life in TERMINAL:
        if rec.termination_code:  # DRIVER_ERROR (the driver was lost), LIBRARY_INSTALLATION_ERROR
            code, kind = rec.termination_code, _TERMINATION_TYPE.get(rec.termination_code, "INTERNAL_ERROR")
        elif rec.life == "INTERNAL_ERROR" and rec.parent_id is None:
            # A job run does not fail itself: a task of it did (lost its driver, could not install
            # a library, its cluster did not start). Its code is then the one of a run "completed
            # with task failures", RUN_EXECUTION_ERROR (TerminationCodeCode, Jobs API runs/get
            # reference); the task run keeps the precise code, and the type says whose fault it was.
            code, kind = "RUN_EXECUTION_ERROR", failed_task_type
        elif rec.life == "INTERNAL_ERROR":
            code, kind = "INTERNAL_ERROR", "INTERNAL_ERROR"
        elif rec.life == "SKIPPED":
            code, kind = ("MAX_CONCURRENT_RUNS_EXCEEDED" if rec.parent_id is None else "SKIPPED"), "SUCCESS"
        else:
            code, kind = _TERMINATION.get(rec.result or "", ("SUCCESS", "SUCCESS"))
        return {
            "state": "TERMINATED",
            "termination_details": {"code": code, "type": kind, "message": rec.message or ""},
        }
    life = {"WAITING_FOR_RETRY": "WAITING", "INTERNAL_ERROR": "TERMINATED"}.get(rec.life, rec.life)
    status: dict[str, Any] = {"state": life}
    if rec.life == "QUEUED":
        code = "MAX_CONCURRENT_RUNS_REACHED" if rec.job_queued else "ACTIVE_RUN_JOB_TASKS_LIMIT_REACHED"
        status["queue_details"] = {"code": code, "message": rec.message}
    return status


def _failed_task_type(runs: RunsBackend, rec: RunRec) -> str:
    """The termination type of the task that ended job run ``rec`` INTERNAL_ERROR."""
    if rec.parent_id is not None or rec.life != "INTERNAL_ERROR":
        return "INTERNAL_ERROR"
    for ids in rec.attempts.values():
        task = runs.runs.get(ids[-1]) if ids else None
        if task is not None and task.life == "INTERNAL_ERROR":
            return _TERMINATION_TYPE.get(task.termination_code or "", "INTERNAL_ERROR")
    return "INTERNAL_ERROR"


def _durations(rec: RunRec) -> dict[str, int]:
    end = rec.end_time or now_ms()
    setup = execution = 0
    if rec.launch_time:
        setup = max(0, (rec.exec_start or end) - rec.launch_time)
    if rec.exec_start:
        execution = max(0, end - rec.exec_start)
    queue = max(0, (rec.launch_time or end) - rec.start_time) if rec.parent_id is not None else 0
    return {
        "setup_duration": setup,
        "execution_duration": execution,
        "cleanup_duration": 0,
        "run_duration": max(0, end - rec.start_time),
        "queue_duration": queue,
    }


def render_task(
    base_url: str, rec: RunRec, max_parallel: int, runs: RunsBackend | None = None
) -> dict[str, Any]:
    out = {k: v for k, v in rec.spec.items() if v is not None}
    # The read-only parts of control-flow tasks (RunConditionTask.outcome, RunForEachTask.stats).
    if rec.outcome is not None and "condition_task" in out:
        out["condition_task"] = {**out["condition_task"], "outcome": rec.outcome}
    if "for_each_task" in out and runs is not None and rec.iterations:
        out["for_each_task"] = {**out["for_each_task"], "stats": runs.for_each_stats(rec)}
    out.update(
        run_id=rec.run_id,
        task_key=rec.task_key,
        attempt_number=rec.attempt_number,
        state=_state(rec),
        status=_status(rec, max_parallel),
        start_time=rec.start_time,
        end_time=rec.end_time or 0,
        run_page_url=run_page_url(base_url, rec),
        **_durations(rec),
    )
    out.setdefault("depends_on", [])
    out.setdefault("run_if", "ALL_SUCCESS")
    if rec.cluster_instance:
        out["cluster_instance"] = rec.cluster_instance
    return out


def render_run(
    base_url: str,
    runs: RunsBackend,
    rec: RunRec,
    *,
    include_tasks: bool = True,
    include_history: bool = False,
    include_resolved_values: bool = False,
) -> dict[str, Any]:
    """A ``Run`` as runs/get answers it (for a job run or for one task run)."""
    parent = rec if rec.parent_id is None else runs.runs[rec.parent_id]
    out: dict[str, Any] = {
        "job_id": rec.job_id,
        "run_id": rec.run_id,
        "number_in_job": rec.run_id,
        "original_attempt_run_id": rec.original_attempt_run_id or rec.run_id,
        "attempt_number": rec.attempt_number,
        # The caller of runs/submit; for a job run, the job's creator (set at run-now, run-job task).
        "creator_user_name": parent.spec.get("creator_user_name") or ADMIN_USER,
        "run_name": parent.run_name if rec.parent_id is None else rec.task_key,
        "run_type": rec.run_type,
        "state": _state(rec),
        "status": _status(rec, runs.max_parallel, _failed_task_type(runs, rec)),
        "start_time": rec.start_time,
        "end_time": rec.end_time or 0,
        "run_page_url": run_page_url(base_url, rec),
        "format": "MULTI_TASK",
        "trigger": "RETRY" if rec.attempt_number else _trigger(parent),
        "has_more": False,
        **_durations(rec),
    }
    if rec.parent_id is not None:
        out["job_run_id"] = parent.run_id
        out["task_key"] = rec.task_key
    if rec.parent_id is None and rec.triggered_by is not None:
        out["trigger_info"] = {"run_id": rec.triggered_by}
    if rec.cluster_instance:
        out["cluster_instance"] = rec.cluster_instance
    if rec.parent_id is None:
        if parent.spec.get("job_clusters"):
            out["job_clusters"] = parent.spec["job_clusters"]
        if parent.spec.get("git_source"):
            out["git_source"] = parent.spec["git_source"]
        if parent.job_parameters:
            out["job_parameters"] = parent.job_parameters
        overriding = {
            k: v
            for k, v in parent.overrides.items()
            if k in ("notebook_params", "python_params", "jar_params") and v
        }
        if overriding:
            out["overriding_parameters"] = overriding
        out["devstack"] = {
            "cluster_starts": parent.cluster_starts,
            "idempotency_token": parent.idempotency_token,
        }
        if parent.queue_enabled:
            out["queue"] = {"enabled": True}
    if include_tasks:
        if rec.parent_id is None:
            tasks = [runs.runs[i] for key in rec.task_order for i in rec.attempts.get(key, [])]
            out["tasks"] = [render_task(base_url, t, runs.max_parallel, runs) for t in tasks]
            single = [t for t in tasks if t.cluster_instance]
            if len(rec.task_order) == 1 and single:
                out["cluster_instance"] = single[-1].cluster_instance
        else:
            out["tasks"] = [render_task(base_url, rec, runs.max_parallel, runs)]
            if rec.iterations:  # a for-each task run: its iterations (Run.iterations)
                out["iterations"] = [
                    render_task(base_url, runs.runs[i], runs.max_parallel, runs) for i in rec.iterations
                ]
    if include_resolved_values and "tasks" in out:
        for task in out["tasks"]:
            resolved = runs.runs[task["run_id"]].resolved
            if resolved:
                task["resolved_values"] = resolved
    if include_history and rec.parent_id is None:
        history = [
            {
                "type": "ORIGINAL",
                "id": rec.run_id,
                "start_time": rec.start_time,
                "end_time": (rec.repairs[0]["start_time"] if rec.repairs else rec.end_time) or 0,
                "task_run_ids": [
                    ids[0] for ids in (rec.attempts[k] for k in rec.task_order if rec.attempts.get(k))
                ],
            }
        ]
        for item in rec.repairs:
            history.append(
                {
                    "type": "REPAIR",
                    "id": item["id"],
                    "start_time": item["start_time"],
                    "end_time": item.get("end_time") or 0,
                    "task_run_ids": item["task_run_ids"],
                }
            )
        for item in history:
            item["state"] = _state(rec) if item is history[-1] else {"life_cycle_state": "TERMINATED"}
        out["repair_history"] = history
    return out


def render_output(base_url: str, runs: RunsBackend, rec: RunRec) -> dict[str, Any]:
    """A ``RunOutput`` of one task run (or of a job run with a single task)."""
    if rec.parent_id is None:
        if len(rec.task_order) != 1:
            raise invalid(
                f"Retrieving the output of runs with multiple tasks is not supported: run {rec.run_id} has "
                f"{len(rec.task_order)} tasks. Get the output of each task run (tasks[].run_id of runs/get) instead."
            )
        task = runs.runs[rec.attempts[rec.task_order[0]][-1]]
    else:
        task = rec
    out: dict[str, Any] = {"metadata": render_run(base_url, runs, task)}
    if task.child_run_id is not None:
        out["run_job_output"] = {"run_id": task.child_run_id}
    output = task.output or {}
    if "notebook_task" in task.spec and (output or task.terminal):
        notebook: dict[str, Any] = {"truncated": bool(output.get("truncated"))}
        if output.get("notebook_result") is not None:
            notebook["result"] = output["notebook_result"]
        out["notebook_output"] = notebook
    # A notebook's output is notebook_output only: stdout logs are for tasks that write to standard
    # streams (spark_python_task, python_wheel_task...), "not supported for the notebook_task"
    # (RunOutput.logs, Jobs API reference / databricks-sdk).
    if output.get("logs") is not None and "notebook_task" not in task.spec:
        out["logs"] = output["logs"]
        out["logs_truncated"] = bool(output.get("logs_truncated"))
    error = output.get("error")
    if task.terminal and task.result not in (None, "SUCCESS"):
        error = error or task.message
    if error:
        out["error"] = error
    if output.get("error_trace"):
        out["error_trace"] = output["error_trace"]
    return out


def _trigger(parent: RunRec) -> str:
    """TriggerType of a job run: RUN_JOB_TASK when a run-job task started it."""
    return "RUN_JOB_TASK" if parent.triggered_by is not None else "ONE_TIME"


def _tasks_of_body(request: Request) -> dict[str, Any]:
    body = dict(request.body)
    for name, kind in (("run_name", str), ("timeout_seconds", int), ("idempotency_token", str)):
        request.get(name, kind)  # type checks, naming the field
    for name in ("tasks", "job_clusters"):
        request.get(name, list)
    for name in ("git_source", "queue", "new_cluster", "notebook_task", "spark_python_task"):
        request.get(name, dict)
    token = body.get("idempotency_token")
    if token is not None and len(str(token)) > 64:
        raise invalid("Invalid value for field idempotency_token: at most 64 characters")
    return body


class RunsApi:
    """The runs endpoints over the runs backend (and the jobs backend, for cancel-all's job check)."""

    def __init__(self, runs: RunsBackend, jobs: JobsBackend, settings: WorkspaceContext):
        self.runs = runs
        self.jobs = jobs
        self.settings = settings

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    def submit(self, request: Request):
        body = _tasks_of_body(request)
        job_id = self.runs.next_id("job")
        settings = {k: v for k, v in body.items() if k not in ("idempotency_token", "access_control_list")}
        settings["creator_user_name"] = user_name_of(request.principal)
        self.runs.launcher.clusters.check_job_compute(settings)  # cluster specs, as runs/submit checks them
        check_run_job_targets(
            normalize_tasks(settings), lambda job_id: self.runs.job_settings(job_id) is not None
        )
        rec = self.runs.create_run(
            job_id=job_id,
            run_type="SUBMIT_RUN",
            settings=settings,
            idempotency_token=body.get("idempotency_token"),
        )
        self.runs.persist()  # the run id answered survives a kill of the process
        return {"run_id": rec.run_id}

    def get_run(self, request: Request):
        run_id = request.require("run_id", int)
        include_history = request.get("include_history", bool, False)
        include_resolved = request.get("include_resolved_values", bool, False)
        token = request.get("page_token", str) or ""
        if token and not token.isdigit():
            raise invalid(f"Invalid value for field page_token: {token!r} is not a token this API returned")
        offset = int(token or 0)
        with self.runs.lock:
            rec = self.runs.get(run_id)
            out = render_run(
                self.base_url,
                self.runs,
                rec,
                include_history=include_history,
                include_resolved_values=include_resolved,
            )
        # Like 2.2: at most 100 entries of each array per page, the other fields repeated on every page.
        more = False
        for name in ("tasks", "job_clusters"):
            entries = out.get(name)
            if isinstance(entries, list):
                out[name] = entries[offset : offset + PAGE_LIMIT]
                more = more or len(entries) > offset + PAGE_LIMIT
        if more:
            out["next_page_token"] = str(offset + PAGE_LIMIT)
        return out

    def get_output(self, request: Request):
        run_id = request.require("run_id", int)
        with self.runs.lock:
            return render_output(self.base_url, self.runs, self.runs.get(run_id))

    def list_runs(self, request: Request):
        job_id = request.get("job_id", int)
        active_only = request.get("active_only", bool, False)
        completed_only = request.get("completed_only", bool, False)
        if active_only and completed_only:
            raise invalid("active_only and completed_only cannot both be true")
        run_type = request.get("run_type", str)
        if run_type is not None and run_type not in RUN_TYPES:
            raise invalid(
                f"Invalid value for field run_type: {run_type!r} is not one of {', '.join(RUN_TYPES)}"
            )
        expand = request.get("expand_tasks", bool, False)
        # "greater than 0 and less than 25. The default value is 20. If a request specifies a limit
        # of 0, the service instead uses the maximum limit" (runs/list, Jobs API reference); the
        # deprecated offset still works, a page_token replaces it.
        limit, offset = pagination(request, default_limit=20, max_limit=RUNS_LIST_MAX)
        if request.get("limit", int) == 0:
            limit = RUNS_LIST_MAX
        start_from = request.get("start_time_from", int)
        start_to = request.get("start_time_to", int)
        with self.runs.lock:
            selected = []
            for rid in reversed(self.runs.parents):
                rec = self.runs.runs[rid]
                if job_id is not None and rec.job_id != job_id:
                    continue
                if run_type and rec.run_type != run_type:
                    continue
                if active_only and rec.terminal:
                    continue
                if completed_only and not rec.terminal:
                    continue
                if start_from and rec.start_time < start_from:
                    continue
                if start_to and rec.start_time > start_to:
                    continue
                selected.append(rec)
            page = selected[offset : offset + limit]
            runs = [render_run(self.base_url, self.runs, r, include_tasks=expand) for r in page]
        for run in runs:  # "only the first 100 elements will be shown": runs/get pages the rest
            for name in ("tasks", "job_clusters"):
                if len(run.get(name) or ()) > PAGE_LIMIT:
                    run[name] = run[name][:PAGE_LIMIT]
                    run["has_more"] = True
        out: dict[str, Any] = {"runs": runs, "has_more": offset + limit < len(selected)}
        if out["has_more"]:
            out["next_page_token"] = str(offset + limit)
        if offset > 0:
            out["prev_page_token"] = str(max(0, offset - limit))
        return out

    def cancel(self, request: Request):
        self.runs.cancel(request.require("run_id", int))
        self.runs.persist()
        return {}

    def cancel_all(self, request: Request):
        job_id = request.get("job_id", int)
        all_queued = request.get("all_queued_runs", bool, False)
        if job_id is None and not all_queued:
            raise invalid("Missing required field: job_id (or all_queued_runs=true)")
        if job_id is not None:
            self.jobs.require(job_id)
        self.runs.cancel_all(job_id, all_queued)
        self.runs.persist()
        return {}

    def repair(self, request: Request):
        run_id = request.require("run_id", int)
        request.get("rerun_tasks", list)
        request.get("latest_repair_id", int)
        request.get("rerun_all_failed_tasks", bool)
        request.get("rerun_dependent_tasks", bool)
        body = dict(request.body)
        if body.get("latest_repair_id") is not None:
            body["latest_repair_id"] = request.get("latest_repair_id", int)
        repair_id = self.runs.repair(run_id, body)
        self.runs.persist()
        return {"repair_id": repair_id}

    def delete(self, request: Request):
        self.runs.delete(request.require("run_id", int))
        return {}

    def export(self, request: Request):
        run_id = request.require("run_id", int)
        with self.runs.lock:
            rec = self.runs.get(run_id)
            name = rec.task_key or rec.run_name
        return {
            "views": [
                {"name": name, "type": "NOTEBOOK", "content": f"<html><body>run {run_id}</body></html>"}
            ]
        }
