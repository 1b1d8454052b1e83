"""Recovery after a restart: the runs the journal saved are taken back, the unfinished ones go on.

:class:`Recovery` is a delegate of :class:`~devstack.workspace.runs.state.RunsBackend`, used once
while the backend starts, given the backend it restores: it fills the backend's tables and then
drives the unfinished runs through the backend's state machine steps. Delegation rather than a
mixin, so the state machine's own class stays one file and the start-up sequence reads in
``RunsBackend.__init__``.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from devstack.workspace.runs.spec import int_or_zero, task_kind
from devstack.workspace.runs.state import LOST_DRIVER_MESSAGE, now_ms

if TYPE_CHECKING:
    from devstack.workspace.runs.state import RunRec, RunsBackend

log = logging.getLogger("devstack.workspace.runs")


class Recovery:
    """Loading and resuming the runs of one :class:`RunsBackend` after a restart.

    :param backend: the runs and the state machine to restore.
    """

    def __init__(self, backend: RunsBackend):
        self.backend = backend

    def load(self, saved: list[RunRec]) -> None:
        """Take back the runs the journal saved (every run a client was given an id for)."""
        backend = self.backend
        for rec in saved:
            backend.runs[rec.run_id] = rec
            if rec.parent_id is None:
                backend.parents.append(rec.run_id)
                if rec.idempotency_token:
                    backend.tokens[rec.idempotency_token] = rec.run_id

    def resume(self, unfinished: list[int]) -> None:
        """Carry on with the job runs the last process left unfinished (once, under the lock).

        Nothing that waited is lost: runs queued behind max_concurrent_runs stay queued, task runs
        waiting for an execution slot wait again in their order, retries wait out their interval,
        timeouts keep counting (a run's from its start, a for-each or run-job task's from when it
        began). A task that held a cluster lost its driver with the process: it ends DRIVER_ERROR
        (:data:`LOST_DRIVER_MESSAGE`) and its retry policy decides, as for any failed attempt; one
        being cancelled or timed out ends so.
        """
        backend = self.backend
        now = now_ms()
        # First sort out what each unfinished task was doing when the process ended, then act:
        # acting changes the state (a run that ends lets a queued one begin).
        lost: list[RunRec] = []  # held a cluster: its driver died with the process
        ending: list[RunRec] = []  # being cancelled or timed out
        waiting: list[RunRec] = []  # waiting for an execution slot
        retrying: list[RunRec] = []  # waiting out min_retry_interval_millis
        for rid in unfinished:
            parent = backend.runs[rid]
            if not parent.job_queued:
                timeout = int_or_zero(parent.spec.get("timeout_seconds"))
                if timeout > 0:
                    left = max(0.0, parent.start_time / 1000 + timeout - now / 1000)
                    backend._after(left, lambda rid=rid, t=timeout: backend._timeout_run(rid, t))
                self._rearm_control_flow_timeouts(parent, now)
            for task in self._resumable_tasks(parent):
                if task.terminal:
                    continue
                if task.cancel_requested or task.timed_out or parent.cancel_requested:
                    ending.append(task)
                elif task.life == "WAITING_FOR_RETRY":
                    retrying.append(task)
                elif task.launch_time is not None:
                    lost.append(task)
                elif task.life in ("QUEUED", "PENDING") and not parent.job_queued:
                    waiting.append(task)
        for task in sorted(waiting, key=lambda t: t.run_id):
            backend.ready.append(task.run_id)
            backend.cancel_events[task.run_id] = threading.Event()
        for task in ending:
            backend._finish_cancelled(task)
        for task in lost:
            task.termination_code = "DRIVER_ERROR"
            backend._complete(task, "INTERNAL_ERROR", "FAILED", LOST_DRIVER_MESSAGE)
        for task in retrying:
            if task.iteration_of is not None:  # made when the attempt before it ended
                ended = task.start_time
            else:
                ended = backend.runs[backend.runs[task.parent_id].attempts[task.task_key][-2]].end_time or now
            interval = int_or_zero(task.spec.get("min_retry_interval_millis"))
            due = (ended + interval - now) / 1000
            backend._after(max(0.0, due), lambda rid=task.run_id: backend._retry_due(rid))
        for rid in unfinished:
            backend._advance(backend.runs[rid])
            backend._refresh_parent(backend.runs[rid])
        queued_jobs = {backend.runs[rid].job_id: rid for rid in unfinished if backend.runs[rid].job_queued}
        for rid in queued_jobs.values():
            backend._dequeue_job(backend.runs[rid])
        if lost or waiting or queued_jobs:
            log.warning(
                "resumed after a restart: %d task runs lost their driver, %d wait for a slot, "
                "%d jobs have queued runs",
                len(lost),
                len(waiting),
                len(queued_jobs),
            )
        backend._pump()

    def _rearm_control_flow_timeouts(self, parent: RunRec, now: int) -> None:
        """The timeout_seconds of the for-each and run-job tasks in flight (a run-job iteration of a
        for-each task too) counts on from when the task began, as it did before the restart; a
        plain task's timeout needs no re-arming (it lost its driver, or is armed when it launches)."""
        backend = self.backend
        for task in backend._current_tasks(parent):
            for rec in [task, *(backend.runs[i] for i in task.iterations)]:
                if (
                    rec.terminal
                    or rec.launch_time is None
                    or rec.cancel_requested
                    or rec.timed_out
                    or task_kind(rec.spec) not in ("for_each_task", "run_job_task")
                ):
                    continue
                timeout = int_or_zero(rec.spec.get("timeout_seconds"))
                if timeout > 0:
                    left = max(0.0, (rec.launch_time + timeout * 1000 - now) / 1000)
                    backend._after(left, lambda rid=rec.run_id, t=timeout: backend._timeout_task(rid, t))

    def _resumable_tasks(self, parent: RunRec) -> list[RunRec]:
        """The task runs of a job run that carry on after a restart, as any task does: a for-each
        task's iterations rather than the for-each task, which holds no driver (it ends when they
        do); never a run-job task (nor a run-job iteration), which ends when the job run it started
        (resumed on its own) ends; a condition task is decided at once and is never in flight."""
        backend = self.backend
        out: list[RunRec] = []
        for task in backend._current_tasks(parent):
            for it in (backend.runs[i] for i in task.iterations):
                if it.life != "BLOCKED" and (it.cancel_requested or it.child_run_id is None):
                    out.append(it)
            if task.cancel_requested or (not task.iterations and task.child_run_id is None):
                out.append(task)
        return out
