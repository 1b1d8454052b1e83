"""The control-flow task types: condition, Run Job and for-each tasks.

None of them holds a driver: they act as soon as their dependencies allow, under the backend's
lock, and end through the state machine like any task (:meth:`RunsBackend._complete`).

- A condition task compares its operands and records an outcome ("true"/"false") that its
  downstream tasks' ``depends_on[].outcome`` select on.
- A Run Job task starts a run of another job and ends as that run ends (:meth:`ControlFlow.child_ended`).
- A for-each task makes one iteration run of its nested task per input, starts at most
  ``concurrency`` of them at once, retries each as the nested task says and ends when all have.

:class:`ControlFlow` is a delegate of :class:`~devstack.workspace.runs.state.RunsBackend`, given
the backend it acts for: it reads and changes the backend's runs and calls its state machine
steps. Delegation rather than a mixin, so the state machine's own class stays one file and every
call into these task types is spelled out (``self.control_flow.run_for_each(task)``).
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

from devstack.workspace.http import ApiError
from devstack.workspace.runs.spec import (
    SUCCESS_RESULTS,
    input_references,
    int_or_zero,
    substitute,
    substitute_all,
)
from devstack.workspace.runs.state import RunRec, now_ms

if TYPE_CHECKING:
    from devstack.workspace.runs.state import RunsBackend


class ControlFlow:
    """The condition, Run Job and for-each task types of one :class:`RunsBackend` (all under its lock).

    :param backend: the runs and the state machine these tasks run in.
    """

    def __init__(self, backend: RunsBackend):
        self.backend = backend

    def _began(self, task: RunRec) -> None:
        """A control-flow task starts: no cluster to wait for; its timeout_seconds counts from now
        (a for-each or run-job task that runs out of time cancels what it started)."""
        backend = self.backend
        task.launch_time = task.exec_start = now_ms()
        task.life, task.message = "RUNNING", "In run"
        backend._mark(task)
        timeout = int_or_zero(task.spec.get("timeout_seconds"))
        if timeout > 0:
            rid = task.run_id
            backend._after(timeout, lambda: backend._timeout_task(rid, timeout))

    # ------------------------------------------------------------------ condition

    def run_condition(self, task: RunRec) -> None:
        """A condition task: compares its operands (references resolved) without any compute.

        EQUAL_TO / NOT_EQUAL compare strings, the others numbers (ConditionTask in the Jobs API).
        """
        backend = self.backend
        parent = backend.runs[task.parent_id]
        body = task.spec["condition_task"]
        self._began(task)
        try:
            refs = backend.references(parent, task)
            left, right = substitute(body["left"], refs), substitute(body["right"], refs)
        except ApiError as exc:
            backend._complete(task, "TERMINATED", "FAILED", exc.message)
            return
        task.resolved = {"condition_task": {"left": left, "right": right}}
        op = body["op"]
        if op in ("EQUAL_TO", "NOT_EQUAL"):
            holds = (left == right) == (op == "EQUAL_TO")
        else:
            try:
                x, y = float(left), float(right)
            except ValueError:
                backend._complete(
                    task,
                    "TERMINATED",
                    "FAILED",
                    f"Condition {op} compares numbers, but {left!r} or {right!r} is not a number.",
                )
                return
            holds = {
                "GREATER_THAN": x > y,
                "GREATER_THAN_OR_EQUAL": x >= y,
                "LESS_THAN": x < y,
                "LESS_THAN_OR_EQUAL": x <= y,
            }[op]
        task.outcome = "true" if holds else "false"
        backend._complete(task, "TERMINATED", "SUCCESS", "")

    # ------------------------------------------------------------------ Run Job

    def run_job(self, task: RunRec) -> None:
        """A run-job task: starts a run of another job and ends as that run ends."""
        backend = self.backend
        parent = backend.runs[task.parent_id]
        body = task.spec["run_job_task"]
        self._began(task)
        job_id = body["job_id"]
        settings = backend.job_settings(job_id)
        if settings is None:
            backend._complete(task, "TERMINATED", "FAILED", f"Job {job_id} does not exist.")
            return
        try:
            refs = backend.references(parent, task)
            overrides: dict[str, Any] = {"trigger_type": "run_job_task"}
            for name in ("job_parameters", "notebook_params", "python_params", "python_named_params"):
                if body.get(name):
                    overrides[name] = substitute_all(body[name], refs)
            task.resolved = {"run_job_task": {"job_parameters": overrides.get("job_parameters") or {}}}
            settings = {**settings, "run_name": settings.get("name")}
            child = backend.create_run(
                job_id=job_id,
                run_type="JOB_RUN",
                settings=settings,
                overrides=overrides,
                max_concurrent_runs=int(settings.get("max_concurrent_runs", 1) or 1),
                triggered_by=task.run_id,
            )
        except ApiError as exc:
            backend._complete(
                task, "TERMINATED", "FAILED", f"Could not start a run of job {job_id}: {exc.message}"
            )
            return
        task.child_run_id = child.run_id
        backend._mark(task)
        if child.terminal:  # skipped: the job is at its max_concurrent_runs and does not queue
            self.child_ended(child)

    def child_ended(self, child: RunRec) -> None:
        """A job run started by a run-job task ended: the task ends with its result."""
        backend = self.backend
        task = backend.runs.get(child.triggered_by or -1)
        if task is None or task.terminal:
            return
        if task.cancel_requested:
            backend._finish_cancelled(task)
            return
        result = child.result if child.result in ("SUCCESS", "CANCELED", "TIMEDOUT") else "FAILED"
        if child.result == "SUCCESS_WITH_FAILURES":
            result = "SUCCESS"
        message = "" if result == "SUCCESS" else f"Run {child.run_id} of job {child.job_id}: {child.message}"
        backend._complete(task, "TERMINATED", result, message)

    # ------------------------------------------------------------------ for-each

    def run_for_each(self, task: RunRec) -> None:
        """A for-each task: one run of its nested task per input, at most ``concurrency`` at once."""
        backend = self.backend
        parent = backend.runs[task.parent_id]
        body = task.spec["for_each_task"]
        self._began(task)
        try:
            text = substitute(body["inputs"], backend.references(parent, task))
        except ApiError as exc:
            backend._complete(task, "TERMINATED", "FAILED", exc.message)
            return
        try:
            items = json.loads(text)
        except ValueError:
            items = None
        if not isinstance(items, list):
            backend._complete(
                task, "TERMINATED", "FAILED", f"The for-each inputs must be a JSON array, got {text[:200]!r}."
            )
            return
        task.resolved = {"for_each_task": {"inputs": text}}
        task.iterations = []
        nested = body["task"]
        for item in items:
            spec = substitute_all(copy.deepcopy(nested), input_references(item))
            rec = RunRec(
                run_id=backend.next_id("run"),
                job_id=parent.job_id,
                run_type=parent.run_type,
                run_name=nested["task_key"],
                parent_id=parent.run_id,
                task_key=nested["task_key"],
                start_time=now_ms(),
                life="BLOCKED",
                message="Scheduled",
                spec=spec,
                queue_enabled=parent.queue_enabled,
                iteration_of=task.run_id,
                repair_id=task.repair_id,
            )
            rec.original_attempt_run_id = rec.run_id
            backend.runs[rec.run_id] = rec
            task.iterations.append(rec.run_id)
            backend._mark(rec)
        backend._mark(task)
        self.next_iterations(task)

    def iteration_ended(self, it: RunRec) -> None:
        """An iteration attempt ended: retry it as its nested task's retry policy says (the
        iteration's latest attempt takes its place), then start the next iterations."""
        backend = self.backend
        loop = backend.runs[it.iteration_of]
        parent = backend.runs[loop.parent_id]
        if not loop.terminal and not loop.cancel_requested and backend._should_retry(parent, it):
            retry = RunRec(
                run_id=backend.next_id("run"),
                job_id=it.job_id,
                run_type=it.run_type,
                run_name=it.run_name,
                parent_id=it.parent_id,
                task_key=it.task_key,
                attempt_number=it.attempt_number + 1,
                original_attempt_run_id=it.original_attempt_run_id,
                start_time=max(now_ms(), it.start_time + 1),
                life="WAITING_FOR_RETRY",
                message=f"Waiting to retry after attempt {it.attempt_number} ended {it.result}",
                spec=it.spec,
                queue_enabled=it.queue_enabled,
                iteration_of=loop.run_id,
                repair_id=it.repair_id,
            )
            backend.runs[retry.run_id] = retry
            loop.iterations[loop.iterations.index(it.run_id)] = retry.run_id
            backend._mark(retry)
            backend._mark(loop)
            rid = retry.run_id
            backend._after(
                int_or_zero(it.spec.get("min_retry_interval_millis")) / 1000.0,
                lambda: backend._retry_due(rid),
            )
        self.next_iterations(loop)

    def next_iterations(self, task: RunRec) -> None:
        """Start the iterations the for-each task's concurrency leaves room for; end it when all ended."""
        backend = self.backend
        if task.terminal or task.cancel_requested:
            return
        iterations = [backend.runs[i] for i in task.iterations]
        limit = int_or_zero(task.spec["for_each_task"].get("concurrency")) or 1
        active = sum(1 for it in iterations if not it.terminal and it.life != "BLOCKED")
        for it in iterations:
            if active >= limit:
                break
            if it.life == "BLOCKED":
                backend._start(it)  # a nested condition or run-job task acts at once
                active += 1
        if all(it.terminal for it in iterations):
            failed = [it for it in iterations if it.result not in SUCCESS_RESULTS]
            if not failed:
                backend._complete(task, "TERMINATED", "SUCCESS", "")
            else:
                backend._complete(
                    task,
                    "TERMINATED",
                    "FAILED",
                    f"{len(failed)} of {len(iterations)} iterations failed. Iteration run {failed[0].run_id} "
                    f"failed with message: {failed[0].message}",
                )

    def for_each_stats(self, task: RunRec) -> dict[str, Any]:
        """ForEachStats of a for-each task run: the counts of its iterations."""
        runs = self.backend.runs
        iterations = [runs[i] for i in task.iterations if i in runs]
        done = [it for it in iterations if it.terminal]
        succeeded = sum(1 for it in done if it.result in SUCCESS_RESULTS)
        active = sum(1 for it in iterations if not it.terminal and it.life != "BLOCKED")
        stats: dict[str, Any] = {
            "task_run_stats": {
                "total_iterations": len(iterations),
                "scheduled_iterations": len(done) + active,
                "active_iterations": active,
                "completed_iterations": len(done),
                "succeeded_iterations": succeeded,
                "failed_iterations": len(done) - succeeded,
            }
        }
        errors: dict[str, int] = {}
        for it in done:
            if it.result not in SUCCESS_RESULTS and it.message:
                errors[it.message] = errors.get(it.message, 0) + 1
        if errors:
            common = sorted(errors.items(), key=lambda e: -e[1])[:3]
            stats["error_message_stats"] = [
                {"error_message": m, "count": n, "termination_category": "RUN_EXECUTION_ERROR"}
                for m, n in common
            ]
        return stats
