"""The run record and the run state machine: create, advance, complete, retry, cancel, repair, timeouts.

Every run (a job/submit run and each attempt of each of its tasks) is a :class:`RunRec` held in
memory; the journal (:mod:`devstack.workspace.runs.journal`) writes changed runs to SQLite in
the background, so ``runs/get`` never waits on the database or on a driver. All state changes
happen under one lock, and nothing slow (driver start, git checkout, killing a process) ever
runs while holding it: those happen on short-lived launcher threads
(:mod:`devstack.workspace.runs.launcher`), which report back through :meth:`RunsBackend._on_done`.

Two parts of the backend live in modules of their own and act on it as delegates:
:mod:`devstack.workspace.runs.control_flow` (the condition, Run Job and for-each task types, which
hold no driver) and :mod:`devstack.workspace.runs.recovery` (loading and resuming runs after a
restart). Dynamic value references stay here: every task type resolves them, and so does a launch.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from devstack.workspace.clusters import ClusterStartCancelled
from devstack.workspace.http import ApiError, invalid, not_found
from devstack.workspace.runs.launcher import TaskSetupError
from devstack.workspace.runs.spec import (
    CANCELED_RESULTS,
    FAILED_RESULTS,
    SUCCESS_RESULTS,
    References,
    downstream_of,
    int_or_zero,
    normalize_tasks,
    reference_values,
    resolve_job_parameters,
    run_if_verdict,
    task_kind,
)

if TYPE_CHECKING:
    from devstack.workspace.runs.journal import Journal
    from devstack.workspace.runs.launcher import Launcher

log = logging.getLogger("devstack.workspace.runs")

TERMINAL = frozenset({"TERMINATED", "SKIPPED", "INTERNAL_ERROR"})
# A task whose driver was lost (the workspace process stopped or was killed while the task held a
# cluster) ends as Databricks ends a task whose Spark driver went away: life cycle INTERNAL_ERROR,
# result FAILED, termination code DRIVER_ERROR ("The run encountered an error while communicating
# with the Spark Driver", TerminationCodeCode in databricks-sdk), with the message Databricks
# shows when a driver stops under a notebook (Azure Databricks docs, compute troubleshooting).
LOST_DRIVER_MESSAGE = (
    "The Spark driver has stopped unexpectedly and is restarting. Your notebook will be automatically "
    "reattached."
)

# The state message of a task run (and of its job run) while its cluster's libraries install
# before the task can start: the run stays PENDING. The Databricks UI names this setup phase
# "Installing libraries"; no API reference spells the state_message out, so this follows the UI.
INSTALLING_LIBRARIES_MESSAGE = "Installing libraries"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclasses.dataclass
class RunRec:
    """One run: a job run (``parent_id`` None) or one attempt of one task of a job run."""

    run_id: int
    job_id: int
    run_type: str
    run_name: str
    parent_id: int | None = None
    task_key: str | None = None
    attempt_number: int = 0
    original_attempt_run_id: int | None = None
    start_time: int = 0
    launch_time: int | None = None  # a slot was taken: cluster setup begins
    exec_start: int | None = None  # the notebook began executing
    end_time: int | None = None
    life: str = "PENDING"
    result: str | None = None
    message: str = ""
    user_cancelled_or_timedout: bool = False
    spec: dict = dataclasses.field(default_factory=dict)  # job run: run settings; task: the task spec
    overrides: dict = dataclasses.field(default_factory=dict)  # job run: notebook/python/job parameters
    output: dict | None = None
    cluster_instance: dict | None = None
    cluster_starts: int = 0
    queue_enabled: bool = False
    job_queued: bool = False  # waiting for the job's max_concurrent_runs
    idempotency_token: str | None = None
    repairs: list = dataclasses.field(default_factory=list)
    repair_id: int | None = None
    task_order: list = dataclasses.field(default_factory=list)
    attempts: dict = dataclasses.field(default_factory=dict)  # task_key -> [run_id, ...]
    cancel_requested: bool = False
    timed_out: bool = False
    job_parameters: list = dataclasses.field(default_factory=list)
    resolved: dict = dataclasses.field(default_factory=dict)  # task: parameters it really ran with
    outcome: str | None = None  # condition task: "true" or "false"
    branch_excluded: bool = False  # excluded because a condition's branch was not taken
    child_run_id: int | None = None  # run-job task: the job run it started
    triggered_by: int | None = None  # job run started by a run-job task: that task run
    iterations: list = dataclasses.field(default_factory=list)  # for-each task: its iteration runs
    iteration_of: int | None = None  # an iteration: its for-each task run
    # A termination code the result does not imply (DRIVER_ERROR, LIBRARY_INSTALLATION_ERROR).
    termination_code: str | None = None

    @property
    def terminal(self) -> bool:
        return self.life in TERMINAL


class RunsBackend:
    """The runs of a workspace and every transition of their state.

    :param journal: persistence and ids of runs.
    :param launcher: clusters, payloads and drivers for task runs.
    :param max_parallel: task runs executing at once; the others wait in a queue.
    :param job_settings: ``job_settings(job_id)`` -> the job's current settings, or None when
        the job does not exist (a job's max_concurrent_runs, a repair and run-job tasks read them).
    :param workspace: ``workspace()`` -> (workspace id, workspace URL), for {{workspace.*}}.
    """

    def __init__(
        self,
        journal: Journal,
        launcher: Launcher,
        *,
        max_parallel: int,
        job_settings: Callable[[int], dict | None],
        workspace: Callable[[], tuple[str, str]] | None = None,
    ):
        self.workspace = workspace or (lambda: ("0", ""))
        self.journal = journal
        self.launcher = launcher
        self.job_settings = job_settings
        self.lock = threading.RLock()
        self.runs: dict[int, RunRec] = {}
        self.parents: list[int] = []  # job runs in creation order
        self.tokens: dict[str, int] = {}
        self.max_parallel = max_parallel
        self.ready: deque[int] = deque()  # task runs waiting for an execution slot
        self.slots: set[int] = set()  # task runs holding a slot (launching or running)
        self.executions: dict[int, tuple[Any, bool]] = {}  # task run -> (driver, exclusive)
        self.cancel_events: dict[int, threading.Event] = {}
        self.stopping = False
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_seq = itertools.count()
        self._timer_cond = threading.Condition(self.lock)
        # The task types that hold no driver, and recovery after a restart, live in their own
        # modules and act on this backend; imported here because they build on this module's RunRec.
        from devstack.workspace.runs.control_flow import ControlFlow
        from devstack.workspace.runs.recovery import Recovery

        self.control_flow = ControlFlow(self)
        recovery = Recovery(self)
        saved = journal.load()
        recovery.load(saved)
        journal.start(self._snapshot)
        threading.Thread(target=self._timer_loop, name="run-timers", daemon=True).start()
        with self.lock:  # the runs the last process left unfinished go on
            recovery.resume([rec.run_id for rec in saved if rec.parent_id is None and not rec.terminal])

    # ------------------------------------------------------------------ persistence

    def _snapshot(self, run_ids: list[int]) -> list[dict]:
        """Copies of these runs' fields for the journal (copied under the lock in small batches,
        so a burst of changes, hundreds of submits, never holds up runs/get for long)."""
        out: list[dict] = []
        for start in range(0, len(run_ids), 50):
            with self.lock:
                out += [
                    copy.deepcopy(self.runs[i].__dict__)
                    for i in run_ids[start : start + 50]
                    if i in self.runs
                ]
        return out

    def _mark(self, rec: RunRec) -> None:
        self.journal.mark(rec)

    def next_id(self, name: str) -> int:
        return self.journal.next_id(name)

    def persist(self) -> None:
        """Write every change now, before a client is answered about it (a run id, a repair id, a
        cancel), so a killed process never forgets what it acknowledged. Never call it holding
        ``self.lock``: the journal's copy of the runs takes that lock."""
        self.journal.flush()

    # ------------------------------------------------------------------ timers

    def _timer_loop(self) -> None:
        with self._timer_cond:
            while True:
                if not self._timers:
                    self._timer_cond.wait()
                    continue
                when, _, callback = self._timers[0]
                delay = when - time.monotonic()
                if delay > 0:
                    self._timer_cond.wait(delay)
                    continue
                heapq.heappop(self._timers)
                if self.stopping:
                    continue
                try:
                    callback()
                except Exception:
                    log.exception("run timer failed")

    def _after(self, seconds: float, callback: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + seconds, next(self._timer_seq), callback))
        self._timer_cond.notify()

    # ------------------------------------------------------------------ creating runs

    def create_run(self, **kwargs: Any) -> RunRec:
        """Create (and start, queue or skip) one job run; the same idempotency token gives the same run.

        Keyword arguments as :meth:`_create_run`. Call :meth:`persist` before answering a client.
        """
        return self._create_run(**kwargs)

    def _create_run(
        self,
        *,
        job_id: int,
        run_type: str,
        settings: dict,
        overrides: dict | None = None,
        idempotency_token: str | None = None,
        max_concurrent_runs: int | None = None,
        triggered_by: int | None = None,
    ) -> RunRec:
        """One job run (under the lock, or taking it): see :meth:`create_run`."""
        tasks = normalize_tasks(settings)
        with self.lock:
            if idempotency_token and idempotency_token in self.tokens:
                return self.runs[self.tokens[idempotency_token]]
            run_id = self.next_id("run")
            start = now_ms()
            queue = settings.get("queue") or {}
            parent = RunRec(
                run_id=run_id,
                job_id=job_id,
                run_type=run_type,
                run_name=settings.get("run_name") or settings.get("name") or "Untitled",
                start_time=start,
                spec=settings,
                overrides=overrides or {},
                queue_enabled=bool(queue.get("enabled")),
                idempotency_token=idempotency_token,
                original_attempt_run_id=run_id,
                task_order=[t["task_key"] for t in tasks],
                triggered_by=triggered_by,
            )
            parent.spec = {**settings, "tasks": tasks}
            parent.job_parameters = resolve_job_parameters(settings, parent.overrides)
            self.runs[run_id] = parent
            self.parents.append(run_id)
            if idempotency_token:
                self.tokens[idempotency_token] = run_id
            for task in tasks:
                self._new_attempt(parent, task, attempt=0, start=start, life="BLOCKED")
            active = 0
            if max_concurrent_runs is not None and run_type == "JOB_RUN":
                active = sum(
                    1
                    for rid in self.parents
                    if rid != run_id
                    and self.runs[rid].job_id == job_id
                    and not self.runs[rid].terminal
                    and not self.runs[rid].job_queued
                )
            if max_concurrent_runs is not None and run_type == "JOB_RUN" and active >= max_concurrent_runs:
                if parent.queue_enabled:
                    parent.job_queued = True
                    parent.life = "QUEUED"
                    parent.message = (
                        f"Queued: the job already has {active} active run(s), its max_concurrent_runs limit "
                        f"is {max_concurrent_runs}."
                    )
                    for task in self._current_tasks(parent):
                        task.life, task.message = "QUEUED", "Waiting for the job run to leave the queue"
                        self._mark(task)
                else:
                    self._skip_run(parent, max_concurrent_runs)
            else:
                self._begin(parent)
            self._mark(parent)
            self._pump()
            return parent

    def _new_attempt(
        self,
        parent: RunRec,
        task: dict,
        *,
        attempt: int,
        start: int,
        life: str,
        original: int | None = None,
        repair_id: int | None = None,
    ) -> RunRec:
        run_id = self.next_id("run")
        key = task["task_key"]
        previous = parent.attempts.get(key) or []
        if previous:
            start = max(start, self.runs[previous[-1]].start_time + 1)  # the latest attempt sorts last
        rec = RunRec(
            run_id=run_id,
            job_id=parent.job_id,
            run_type=parent.run_type,
            run_name=key,
            parent_id=parent.run_id,
            task_key=key,
            attempt_number=attempt,
            original_attempt_run_id=original or run_id,
            start_time=start,
            life=life,
            spec=task,
            repair_id=repair_id,
            queue_enabled=parent.queue_enabled,
        )
        self.runs[run_id] = rec
        parent.attempts.setdefault(key, []).append(run_id)
        self._mark(rec)
        self._mark(parent)
        return rec

    def _skip_run(self, parent: RunRec, limit: int) -> None:
        end = now_ms()
        parent.life, parent.result = "SKIPPED", None
        parent.message = (
            f"Skipped: the job has reached its limit of {limit} concurrent run(s) and queueing is disabled "
            "(set queue.enabled to queue instead)."
        )
        parent.end_time = end
        for task in self._current_tasks(parent):
            task.life, task.result, task.message, task.end_time = "SKIPPED", None, parent.message, end
            self._mark(task)

    def _begin(self, parent: RunRec) -> None:
        """Start a job run: arm its timeout and release the tasks without dependencies."""
        parent.job_queued = False
        parent.life = "PENDING"
        parent.message = ""
        timeout = int_or_zero(parent.spec.get("timeout_seconds"))
        if timeout > 0:
            rid = parent.run_id
            self._after(timeout, lambda: self._timeout_run(rid, timeout))
        for task in self._current_tasks(parent):
            if task.life in ("QUEUED", "BLOCKED"):
                task.life, task.message = "BLOCKED", "Waiting for upstream tasks"
        self._advance(parent)

    # ------------------------------------------------------------------ scheduling

    def _current_tasks(self, parent: RunRec) -> list[RunRec]:
        return [self.runs[parent.attempts[key][-1]] for key in parent.task_order if parent.attempts.get(key)]

    def _current(self, parent: RunRec, key: str) -> RunRec | None:
        ids = parent.attempts.get(key)
        return self.runs[ids[-1]] if ids else None

    def _advance(self, parent: RunRec) -> None:
        """Decide every BLOCKED task whose upstreams are all done; finish the run when all tasks are."""
        if parent.terminal or parent.job_queued:
            return
        changed = True
        while changed:
            changed = False
            for task in self._current_tasks(parent):
                if task.life != "BLOCKED":
                    continue
                deps = task.spec.get("depends_on") or []
                ups = [self._current(parent, d["task_key"]) for d in deps]
                if any(u is None or not u.terminal or u.life == "WAITING_FOR_RETRY" for u in ups):
                    continue
                verdict = _verdict(task.spec.get("run_if") or "ALL_SUCCESS", deps, ups)
                if parent.cancel_requested:
                    verdict = "CANCELED"
                if verdict == "BRANCH_EXCLUDED":
                    task.branch_excluded = True
                    self._complete(
                        task,
                        "TERMINATED",
                        "EXCLUDED",
                        "Excluded: the condition branch it depends on was not taken.",
                    )
                    changed = True
                elif verdict == "RUN":
                    self._start(task)
                else:
                    messages = {
                        "UPSTREAM_FAILED": "Upstream task(s) failed.",
                        "UPSTREAM_CANCELED": "Upstream task(s) were canceled.",
                        "EXCLUDED": f"Excluded: the run_if condition {task.spec.get('run_if')} was not met.",
                        "CANCELED": "The run was canceled.",
                    }
                    self._complete(task, "TERMINATED", verdict, messages[verdict])
                    changed = True
        self._refresh_parent(parent)

    def _start(self, task: RunRec) -> None:
        """A task whose dependencies allow it to run: control-flow tasks act at once, the rest
        wait for an execution slot."""
        kind = task_kind(task.spec)
        if kind == "condition_task":
            self.control_flow.run_condition(task)
        elif kind == "run_job_task":
            self.control_flow.run_job(task)
        elif kind == "for_each_task":
            self.control_flow.run_for_each(task)
        else:
            self._make_ready(task)

    def references(self, parent: RunRec, task: RunRec) -> References:
        """The dynamic value references ``task`` resolves (under the lock)."""
        tasks = {key: t for key in parent.task_order if (t := self._current(parent, key)) is not None}
        return reference_values(
            parent,
            task,
            tasks=tasks,
            workspace=self.workspace(),
            task_value=lambda key, name: self.journal.task_value(parent.run_id, key, name),
        )

    def for_each_stats(self, task: RunRec) -> dict[str, Any]:
        """ForEachStats of a for-each task run: the counts of its iterations."""
        return self.control_flow.for_each_stats(task)

    def _make_ready(self, task: RunRec) -> None:
        task.life = "QUEUED" if task.queue_enabled else "PENDING"
        task.message = f"Waiting for a free execution slot: the workspace runs at most {self.max_parallel} task runs at once."
        self.ready.append(task.run_id)
        self.cancel_events[task.run_id] = threading.Event()
        self._mark(task)

    def _pump(self) -> None:
        """Hand free execution slots to the oldest waiting task runs."""
        while self.ready and len(self.slots) < self.max_parallel and not self.stopping:
            run_id = self.ready.popleft()
            task = self.runs[run_id]
            if task.terminal or task.life not in ("QUEUED", "PENDING"):
                continue
            self.slots.add(run_id)
            task.life, task.message = "PENDING", "Waiting for cluster"
            task.launch_time = now_ms()
            self._mark(task)
            timeout = int_or_zero(task.spec.get("timeout_seconds"))
            if timeout > 0:
                self._after(timeout, lambda rid=run_id, t=timeout: self._timeout_task(rid, t))
            parent = self.runs[task.parent_id]
            self._refresh_parent(parent)
            threading.Thread(
                target=self._launch, args=(run_id,), name=f"launch-{run_id}", daemon=True
            ).start()

    def _refresh_parent(self, parent: RunRec) -> None:
        if parent.terminal:
            return
        tasks = self._current_tasks(parent)
        if tasks and all(t.terminal and t.life != "WAITING_FOR_RETRY" for t in tasks):
            self._finish_parent(parent, tasks)
            return
        if parent.job_queued:
            life = "QUEUED"
        elif parent.cancel_requested:
            life = "TERMINATING"
        else:
            all_attempts = [self.runs[i] for ids in parent.attempts.values() for i in ids]
            if any(
                t.exec_start or (t.terminal and t.repair_id == _last_repair(parent)) for t in all_attempts
            ):
                life = "RUNNING"
            elif any(t.life == "PENDING" and t.launch_time for t in tasks):
                life = "PENDING"
            elif parent.queue_enabled and any(t.life == "QUEUED" for t in tasks):
                life = "QUEUED"
            else:
                life = "PENDING"
        pending = "Waiting for cluster"
        if life == "PENDING" and any(
            t.life == "PENDING" and t.message == INSTALLING_LIBRARIES_MESSAGE for t in tasks
        ):
            pending = INSTALLING_LIBRARIES_MESSAGE
        phases = (pending, parent.message)
        if life != parent.life:
            parent.life = life
            parent.message = {
                "RUNNING": "In run",
                "PENDING": pending,
                "QUEUED": parent.message or "Queued",
                "TERMINATING": "Cancelling",
            }.get(life, "")
            if life == "QUEUED" and not parent.job_queued:
                parent.message = f"Queued: the workspace runs at most {self.max_parallel} task runs at once."
            self._mark(parent)
        elif life == "PENDING" and parent.message != pending and INSTALLING_LIBRARIES_MESSAGE in phases:
            # Still PENDING: into or out of the libraries phase (other PENDING messages stay).
            parent.message = pending
            self._mark(parent)

    def _finish_parent(self, parent: RunRec, tasks: list[RunRec]) -> None:
        end = now_ms()
        if parent.timed_out:
            life, result = "TERMINATED", "TIMEDOUT"
            message = f"Run timed out after {parent.spec.get('timeout_seconds')} seconds (timeout_seconds)."
        elif parent.cancel_requested:
            life, result, message = "TERMINATED", "CANCELED", "Run cancelled."
        else:
            downstream = {d["task_key"] for t in tasks for d in t.spec.get("depends_on") or []}
            leaves = [t for t in tasks if t.task_key not in downstream]
            failed = [t for t in tasks if t.result in FAILED_RESULTS and t.result != "UPSTREAM_FAILED"]
            failed += [t for t in tasks if t.life == "INTERNAL_ERROR"]
            leaf_results = {t.result for t in leaves}
            life = "INTERNAL_ERROR" if any(t.life == "INTERNAL_ERROR" for t in tasks) else "TERMINATED"
            if any(t.life == "INTERNAL_ERROR" for t in leaves) or leaf_results & {
                "FAILED",
                "UPSTREAM_FAILED",
            }:
                result = "FAILED"
            elif "TIMEDOUT" in leaf_results:
                result = "TIMEDOUT"
            elif leaf_results & CANCELED_RESULTS:
                result = "CANCELED"
            elif failed:
                result = "SUCCESS_WITH_FAILURES"
            else:
                result = "SUCCESS"
            if result == "SUCCESS":
                life = "TERMINATED"
            culprit = (
                failed[0] if failed else next((t for t in tasks if t.result not in SUCCESS_RESULTS), None)
            )
            if result == "SUCCESS":
                message = ""
            elif culprit is not None and len(tasks) == 1:
                message = culprit.message
            elif culprit is not None:
                message = f"Task {culprit.task_key} failed with message: {culprit.message}"
            else:
                message = "Some tasks did not succeed."
        parent.life, parent.result, parent.message, parent.end_time = life, result, message, end
        parent.user_cancelled_or_timedout = parent.cancel_requested or parent.timed_out
        if parent.repairs:
            parent.repairs[-1]["end_time"] = end
        self._mark(parent)
        self.launcher.release(parent.run_id)
        self._dequeue_job(parent)
        if parent.triggered_by is not None:
            self.control_flow.child_ended(parent)

    def _dequeue_job(self, parent: RunRec) -> None:
        """Start the job's queued runs that its max_concurrent_runs now leaves room for."""
        if parent.run_type != "JOB_RUN":
            return
        job_id = parent.job_id
        settings = self.job_settings(job_id)
        limit = int(settings.get("max_concurrent_runs", 1) or 1) if settings is not None else 1
        active = [r for r in (self.runs[i] for i in self.parents) if r.job_id == job_id and not r.terminal]
        running = sum(1 for r in active if not r.job_queued)
        for rec in active:
            if running >= limit:
                break
            if rec.job_queued:
                self._begin(rec)
                running += 1

    # ------------------------------------------------------------------ launching

    def _launch(self, run_id: int) -> None:
        """A launcher thread: the task's cluster, its payload, then its driver (outside the lock)."""
        with self.lock:
            task = self.runs[run_id]
            parent = self.runs[task.parent_id]
            cancelled = self.cancel_events.setdefault(run_id, threading.Event())

        def counted() -> None:
            with self.lock:
                parent.cluster_starts += 1
                self._mark(parent)

        def run_over() -> bool:
            with self.lock:
                return parent.terminal

        try:
            acquired = self.launcher.acquire(parent, task, cancelled, counted, run_over)
        except ClusterStartCancelled:
            with self.lock:
                self._finish_cancelled(task)
            return
        except Exception as exc:
            log.warning("cluster start for task run %s failed: %s", run_id, exc)
            with self.lock:
                self._complete(task, "INTERNAL_ERROR", "FAILED", f"Cluster failed to start: {exc}")
            return
        driver, exclusive = acquired.driver, acquired.exclusive

        def installing() -> None:
            with self.lock:
                if task.terminal or task.life != "PENDING":
                    return
                task.message = INSTALLING_LIBRARIES_MESSAGE
                self._mark(task)
                self._refresh_parent(parent)

        try:
            self.launcher.install_libraries(acquired.cluster_id, task.spec, installing)
            with self.lock:
                refs = self.references(parent, task)
            payload = self.launcher.payload(parent, task, refs)
        except Exception as exc:  # a bad source or checkout fails the task, never strands it
            if not isinstance(exc, (TaskSetupError, ApiError)):
                log.exception("preparing task run %s failed", run_id)
            message = exc.message if isinstance(exc, ApiError) else str(exc)
            life = exc.life if isinstance(exc, TaskSetupError) else "TERMINATED"
            with self.lock:
                if isinstance(exc, TaskSetupError) and exc.code:
                    task.termination_code = exc.code
                self._complete(task, life, "FAILED", message)
            if exclusive:
                self.launcher.kill_async(driver)
            return
        with self.lock:
            if task.terminal or task.cancel_requested or self.stopping:
                if not task.terminal:
                    self._finish_cancelled(task)
                if exclusive:
                    self.launcher.kill_async(driver)
                return
            task.life, task.message = "RUNNING", "In run"
            task.exec_start = now_ms()
            if payload["kind"] == "notebook":
                task.resolved = {"notebook_task": {"base_parameters": payload["base_parameters"]}}
            elif payload["kind"] == "python_wheel":
                task.resolved = {"python_wheel_task": {"parameters": payload["parameters"]}}
            else:
                task.resolved = {"spark_python_task": {"parameters": payload["parameters"]}}
            task.cluster_instance = {
                "cluster_id": acquired.cluster_id,
                "spark_context_id": str(getattr(driver, "pid", 0)),
            }
            self.executions[run_id] = (driver, exclusive)
            self._mark(task)
            self._refresh_parent(parent)
        try:
            self.launcher.execute(driver, payload, lambda result: self._on_done(run_id, result))
        except Exception as exc:
            log.exception("driver rejected task run %s", run_id)
            with self.lock:
                self.executions.pop(run_id, None)
                self._complete(task, "INTERNAL_ERROR", "FAILED", f"The cluster driver failed: {exc}")
            if exclusive:
                self.launcher.kill_async(driver)

    # ------------------------------------------------------------------ completion

    def _on_done(self, run_id: int, result: dict) -> None:
        kill = None
        with self.lock:
            if self.stopping:
                return
            task = self.runs[run_id]
            driver, exclusive = self.executions.pop(run_id, (None, False))
            if exclusive and driver is not None:
                kill = driver
            task.output = {
                "notebook_result": result.get("notebook_result"),
                "truncated": bool(result.get("truncated")),
                "error": result.get("error"),
                "error_trace": result.get("error_trace"),
                "logs": result.get("logs"),
                "logs_truncated": bool(result.get("logs_truncated")),
            }
            state = result.get("result_state")
            if task.terminal:
                pass
            elif task.timed_out:
                self._complete(task, "TERMINATED", "TIMEDOUT", self._timeout_message(task))
            elif task.cancel_requested:
                self._finish_cancelled(task)
            elif state == "CANCELED":  # nobody asked: the cluster went away under the task
                self._complete(
                    task, "TERMINATED", "FAILED", result.get("error") or "The cluster was terminated."
                )
            elif state == "SUCCESS":
                self._complete(task, "TERMINATED", "SUCCESS", "")
            else:
                error = result.get("error") or "The notebook failed without an error message."
                self._complete(task, "TERMINATED", "FAILED", error)
        if kill is not None:
            self.launcher.kill_async(kill)

    def _timeout_message(self, task: RunRec) -> str:
        return f"Task {task.task_key} timed out after {task.spec.get('timeout_seconds')} seconds (timeout_seconds)."

    def _finish_cancelled(self, task: RunRec) -> None:
        if task.timed_out:
            self._complete(task, "TERMINATED", "TIMEDOUT", self._timeout_message(task))
            return
        parent = self.runs[task.parent_id]
        if parent.timed_out:
            self._complete(task, "TERMINATED", "TIMEDOUT", "The run timed out.")
        else:
            self._complete(task, "TERMINATED", "CANCELED", "Run cancelled.")

    def _complete(self, task: RunRec, life: str, result: str | None, message: str) -> None:
        """Record a task attempt's end, retry it if its policy says so, then move the run on."""
        if task.terminal or self.stopping:
            return  # stopping: a task ended by the shutdown itself is recovered at the next start
        task.life, task.result, task.message = life, result, (message or "")[:4000]
        task.end_time = now_ms()
        task.user_cancelled_or_timedout = result in ("CANCELED", "TIMEDOUT")
        self.slots.discard(task.run_id)
        self.cancel_events.pop(task.run_id, None)
        self._mark(task)
        if task.iteration_of is not None:
            self.control_flow.iteration_ended(task)
            self._pump()
            return
        parent = self.runs[task.parent_id]
        if self._should_retry(parent, task):
            retry = self._new_attempt(
                parent,
                task.spec,
                attempt=task.attempt_number + 1,
                start=now_ms(),
                life="WAITING_FOR_RETRY",
                original=task.original_attempt_run_id,
                repair_id=task.repair_id,
            )
            retry.message = f"Waiting to retry after attempt {task.attempt_number} ended {result}"
            delay = int_or_zero(task.spec.get("min_retry_interval_millis")) / 1000.0
            rid = retry.run_id
            self._after(delay, lambda: self._retry_due(rid))
        self._advance(parent)
        self._pump()

    def _should_retry(self, parent: RunRec, task: RunRec) -> bool:
        if parent.cancel_requested or parent.timed_out or self.stopping:
            return False
        retryable = task.result == "FAILED" or task.life == "INTERNAL_ERROR"
        if task.result == "TIMEDOUT" and task.spec.get("retry_on_timeout"):
            retryable = True
        limit = int_or_zero(task.spec.get("max_retries"))
        return retryable and (limit == -1 or task.attempt_number < limit)

    def _retry_due(self, run_id: int) -> None:
        task = self.runs.get(run_id)
        if task is None or task.life != "WAITING_FOR_RETRY":
            return
        self._start(task)
        self._refresh_parent(self.runs[task.parent_id])
        self._pump()

    # ------------------------------------------------------------------ cancel and timeouts

    def _cancel_task(self, task: RunRec) -> Callable[[], None] | None:
        """Cancel one task attempt; returns the slow part (process kill) to run outside the lock."""
        if task.terminal:
            return None
        task.cancel_requested = True
        self._mark(task)
        slow: list[Callable[[], None]] = []
        child = self.runs.get(task.child_run_id or -1)
        if child is not None and not child.terminal:  # a run-job task: its job run is canceled too
            slow += self._cancel_run(child)
        for it in (self.runs[i] for i in task.iterations):  # a for-each task: its iterations
            action = self._cancel_task(it)
            if action:
                slow.append(action)
        if task.run_id not in self.slots:  # never launched: blocked, waiting for a slot or a retry
            self._finish_cancelled(task)
            return (lambda: _run_outside(slow)) if slow else None
        event = self.cancel_events.get(task.run_id)
        if event is not None:
            event.set()
        execution = self.executions.get(task.run_id)
        if execution is None:
            return None  # still launching: the launcher sees the event and stops
        driver, exclusive = execution
        if exclusive:
            return lambda: self.launcher.kill(driver)
        return lambda: self.launcher.cancel(driver, task.run_id)

    def cancel(self, run_id: int) -> None:
        """Cancel a job run (all of its tasks) or one task run, as runs/cancel does."""
        slow: list[Callable[[], None]] = []
        with self.lock:
            rec = self.get(run_id)
            if rec.terminal:
                return
            if rec.parent_id is None:
                slow += self._cancel_run(rec)
            else:
                action = self._cancel_task(rec)
                if action:
                    slow.append(action)
        _run_in_background(slow)

    def _cancel_run(self, parent: RunRec) -> list[Callable[[], None]]:
        parent.cancel_requested = True
        self._mark(parent)
        if parent.job_queued:
            parent.job_queued = False
        # The run's job clusters die with it: kill them rather than interrupt each task on them.
        doomed = self.launcher.job_cluster_drivers(parent.run_id)
        slow = []
        for task in self._current_tasks(parent):
            execution = self.executions.get(task.run_id)
            action = self._cancel_task(task)
            if action and not (execution and execution[0] in doomed):
                slow.append(action)
        slow += [functools.partial(self.launcher.kill, driver) for driver in doomed]
        self._advance(parent)
        self._pump()
        return slow

    def cancel_all(self, job_id: int | None, all_queued: bool = False) -> None:
        slow: list[Callable[[], None]] = []
        with self.lock:
            for rid in list(self.parents):
                rec = self.runs[rid]
                if rec.terminal:
                    continue
                if (job_id is not None and rec.job_id == job_id) or (all_queued and rec.life == "QUEUED"):
                    slow += self._cancel_run(rec)
        _run_in_background(slow)

    def _timeout_task(self, run_id: int, timeout: int) -> None:
        task = self.runs.get(run_id)
        if task is None or task.terminal:
            return
        task.timed_out = True
        action = self._cancel_task(task)
        if action:
            threading.Thread(target=action, daemon=True).start()

    def _timeout_run(self, run_id: int, timeout: int) -> None:
        parent = self.runs.get(run_id)
        if parent is None or parent.terminal:
            return
        parent.timed_out = True
        _run_in_background(self._cancel_run(parent))

    # ------------------------------------------------------------------ repair

    def repair(self, run_id: int, body: dict) -> int:
        with self.lock:
            parent = self.get(run_id)
            if parent.parent_id is not None:
                raise invalid(f"Run {run_id} is a task run; repair its job run {parent.parent_id} instead.")
            if not parent.terminal:
                raise ApiError(
                    400, "INVALID_STATE", f"Run {run_id} is still active ({parent.life}); wait for it to end."
                )
            latest = body.get("latest_repair_id")
            last = _last_repair(parent)
            if last is not None and latest is not None and int(latest) != last:
                raise invalid(
                    f"latest_repair_id {latest} is not the latest repair of run {run_id} (that is {last})."
                )
            if last is not None and latest is None:
                raise invalid(f"Run {run_id} was repaired before: pass latest_repair_id={last}.")
            self._refresh_job_settings(parent)
            keys = set(body.get("rerun_tasks") or [])
            unknown = keys - set(parent.task_order)
            if unknown:
                raise invalid(f"rerun_tasks names tasks that are not in run {run_id}: {sorted(unknown)}")
            if body.get("rerun_all_failed_tasks"):
                keys |= {t.task_key for t in self._current_tasks(parent) if t.result not in SUCCESS_RESULTS}
            if body.get("rerun_dependent_tasks"):
                keys |= downstream_of(parent.spec["tasks"], keys)
            if not keys:
                raise invalid(
                    f"Nothing to repair in run {run_id}: give rerun_tasks or rerun_all_failed_tasks (no task failed)."
                )
            for name in ("notebook_params", "python_params"):
                if body.get(name) is not None:
                    parent.overrides[name] = body[name]
            if body.get("job_parameters") is not None:
                parent.overrides["job_parameters"] = body["job_parameters"]
                parent.job_parameters = resolve_job_parameters(parent.spec, parent.overrides)
            repair_id = self.next_id("run")
            start = now_ms()
            specs = {t["task_key"]: t for t in parent.spec["tasks"]}
            new_ids = []
            for key in parent.task_order:
                if key in keys:
                    rec = self._new_attempt(
                        parent, specs[key], attempt=0, start=start, life="BLOCKED", repair_id=repair_id
                    )
                    new_ids.append(rec.run_id)
            parent.repairs.append({"id": repair_id, "start_time": start, "task_run_ids": new_ids})
            parent.life, parent.result, parent.message, parent.end_time = "PENDING", None, "", None
            parent.cancel_requested = parent.timed_out = parent.user_cancelled_or_timedout = False
            self._mark(parent)
            self._advance(parent)
            self._pump()
            return repair_id

    def _refresh_job_settings(self, parent: RunRec) -> None:
        """A repair of a job run uses the job's current task and cluster settings, as Databricks does
        (the provider updates the job before repairing to change, say, the cluster size)."""
        if parent.run_type != "JOB_RUN":
            return
        current = self.job_settings(parent.job_id)
        if current is None:
            return  # the job was deleted: repair what the run had
        if not current.get("tasks"):
            return
        tasks = {t["task_key"]: t for t in normalize_tasks(current)}
        parent.spec = {
            **parent.spec,
            "tasks": [tasks.get(t["task_key"], t) for t in parent.spec["tasks"]],
            "job_clusters": current.get("job_clusters") or parent.spec.get("job_clusters") or [],
        }

    # ------------------------------------------------------------------ reading

    def get(self, run_id: int) -> RunRec:
        rec = self.runs.get(run_id)
        if rec is None:
            raise self.missing(run_id)
        return rec

    def missing(self, run_id: int) -> ApiError:
        """The error for a run id that names no run, as Databricks answers it.

        An id never handed out: 400 INVALID_PARAMETER_VALUE "Run <id> does not exist." (the
        Jobs API's answer, which databricks-sdk's error overrides turn into ResourceDoesNotExist
        for runs/get). A run that existed and was deleted: 404 RESOURCE_DOES_NOT_EXIST, the answer
        the Airflow provider's durable execution expects for a stored run id whose run is gone
        (it then submits afresh); databricks-sdk raises ResourceDoesNotExist for it too.
        """
        message = f"Run {run_id} does not exist."
        return not_found(message) if self.journal.issued("run", run_id) else invalid(message)

    def delete(self, run_id: int) -> None:
        with self.lock:
            rec = self.get(run_id)
            if rec.parent_id is not None:
                raise invalid(f"Run {run_id} is a task run; delete its job run {rec.parent_id}.")
            if not rec.terminal:
                raise ApiError(
                    400, "INVALID_STATE", f"Run {run_id} is still active ({rec.life}); cancel it first."
                )
            ids = [run_id] + [i for ids in rec.attempts.values() for i in ids]
            for i in ids:
                self.runs.pop(i, None)
            self.parents.remove(run_id)
            if rec.idempotency_token:
                self.tokens.pop(rec.idempotency_token, None)
        self.journal.delete(run_id, ids)

    def stats(self) -> dict[str, Any]:
        with self.lock:
            by_state: dict[str, int] = {}
            for rid in self.parents:
                life = self.runs[rid].life
                by_state[life] = by_state.get(life, 0) + 1
            tasks_by_state: dict[str, int] = {}
            for rec in self.runs.values():
                if rec.parent_id is not None and not rec.terminal:
                    tasks_by_state[rec.life] = tasks_by_state.get(rec.life, 0) + 1
            return {
                "cluster_starts": self.launcher.clusters.cluster_starts,
                "runs_by_state": by_state,
                "active_task_runs_by_state": tasks_by_state,
                "queue_length": sum(1 for i in self.ready if not self.runs[i].terminal),
                "job_queue_length": sum(1 for rid in self.parents if self.runs[rid].job_queued),
                "executing": len(self.slots),
                "max_parallel_runs": self.max_parallel,
            }

    def close(self) -> None:
        """Stop: no more transitions, every driver killed, every change written."""
        with self.lock:
            self.stopping = True
            self._timer_cond.notify_all()
        self.launcher.clusters.shutdown()
        self.journal.stop()


def _verdict(run_if: str, deps: list[dict], ups: list[RunRec]) -> str:
    """RUN, or why a task does not run, given its dependencies and their upstream task runs.

    A dependency with an ``outcome`` is met when its condition task ended with that outcome, and
    a dependency on a task excluded because its branch was not taken is not met either: a task
    whose dependencies are all unmet is excluded with its branch (ALL_SUCCESS excludes it as soon
    as one is unmet); the run_if rule decides on the met ones (Databricks' If/else condition task
    and Run if documentation).
    """
    met, unmet = [], 0
    for dep, up in zip(deps, ups, strict=True):
        outcome = dep.get("outcome")
        if up.branch_excluded or (outcome is not None and up.result == "SUCCESS" and up.outcome != outcome):
            unmet += 1
        else:
            met.append(up.result or "")
    if unmet and run_if != "ALL_DONE":
        if not met or (run_if == "ALL_SUCCESS" and all(r in SUCCESS_RESULTS for r in met)):
            return "BRANCH_EXCLUDED"
    return run_if_verdict(run_if, met)


def _last_repair(parent: RunRec) -> int | None:
    return parent.repairs[-1]["id"] if parent.repairs else None


def _run_outside(actions: list[Callable[[], None]]) -> None:
    for action in actions:
        try:
            action()
        except Exception:
            log.exception("cancel action failed")


def _run_in_background(actions: list[Callable[[], None]]) -> None:
    if actions:
        threading.Thread(target=_run_outside, args=(actions,), name="cancel", daemon=True).start()
