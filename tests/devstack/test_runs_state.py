"""The run state machine in-process, without HTTP and without driver processes.

The runs backend is built as app.py builds it (a real journal on a real SQLite store), with the
launcher's driver step replaced at its seam: a scripted driver records each execution and the
test decides how it ends, so every transition (run_if verdicts, retries, repair, cancel, the
execution-slot queue) happens exactly when the test says.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from devstack.workspace.http import ApiError
from devstack.workspace.runs.api import render_run
from devstack.workspace.runs.journal import Journal
from devstack.workspace.runs.launcher import Acquired, Launcher
from devstack.workspace.runs.spec import run_if_verdict
from devstack.workspace.runs.state import LOST_DRIVER_MESSAGE, RunsBackend
from devstack.workspace.store import Store


class ScriptedDriver:
    """One task's cluster: holds its executions until the test ends them."""

    alive = True

    def __init__(self, launcher: ScriptedLauncher, cluster_id: str):
        self.launcher = launcher
        self.cluster_id = cluster_id


class ScriptedLauncher(Launcher):
    """The real launcher's payloads; clusters and drivers replaced by scripted ones."""

    def __init__(self) -> None:
        clusters = SimpleNamespace(cluster_starts=0, shutdown=lambda: None)
        super().__init__(clusters, checkout=None, run_token=lambda: "run-token")
        self.cond = threading.Condition()
        self.executing: dict[int, tuple[dict, object]] = {}  # task run id -> (payload, on_done)
        self.launched: list[int] = []  # task run ids, in the order they got a cluster

    def acquire(self, parent, task, cancelled, counted, run_over) -> Acquired:
        counted()
        with self.cond:
            self.launched.append(task.run_id)
        return Acquired(ScriptedDriver(self, f"cluster-{task.run_id}"), True, f"cluster-{task.run_id}")

    def execute(self, driver, payload, on_done) -> None:
        with self.cond:
            self.executing[payload["run_id"]] = (payload, on_done)
            self.cond.notify_all()

    def kill(self, driver) -> None:  # a task's own cluster dies: its execution ends CANCELED
        run_id = int(driver.cluster_id.removeprefix("cluster-"))
        if run_id in self.executing:
            self.finish(run_id, "CANCELED")

    def kill_async(self, driver) -> None:
        self.kill(driver)

    def cancel(self, driver, run_id: int) -> None:
        self.finish(run_id, "CANCELED")

    def wait_executing(self, count: int = 1, timeout: float = 10) -> list[int]:
        """The task run ids executing once at least ``count`` are."""
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.executing) >= count, timeout), self.executing
            return sorted(self.executing)

    def finish(self, run_id: int, state: str = "SUCCESS", error: str | None = None) -> dict:
        """End one execution as its driver would; returns the payload it ran."""
        with self.cond:
            payload, on_done = self.executing.pop(run_id)
        on_done({"result_state": state, "error": error, "notebook_result": None, "logs": ""})
        return payload


def notebook(key: str, **extra) -> dict:
    cluster = {"spark_version": "15.4.x-scala2.12", "node_type_id": "Standard_DS3_v2", "num_workers": 0}
    return {
        "task_key": key,
        "notebook_task": {"notebook_path": f"/Shared/{key}"},
        "new_cluster": cluster,
        **extra,
    }


@pytest.fixture
def launcher() -> ScriptedLauncher:
    return ScriptedLauncher()


def backend(
    tmp_path: Path, launcher: Launcher, max_parallel: int = 8, jobs: dict | None = None
) -> RunsBackend:
    journal = Journal(Store(tmp_path / "workspace.db"))
    return RunsBackend(
        journal, launcher, max_parallel=max_parallel, job_settings=lambda job_id: (jobs or {}).get(job_id)
    )


@pytest.fixture
def runs(tmp_path, launcher):
    backend_ = backend(tmp_path, launcher)
    yield backend_
    backend_.close()


def submit(runs: RunsBackend, *tasks: dict, **settings):
    return runs.create_run(
        job_id=runs.next_id("job"),
        run_type="SUBMIT_RUN",
        settings={"run_name": "r", "tasks": list(tasks), **settings},
    )


def task_of(runs: RunsBackend, parent, key: str, attempt: int = -1):
    return runs.runs[parent.attempts[key][attempt]]


def wait_until(predicate, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


# --------------------------------------------------------------------------- run_if


@pytest.mark.parametrize(
    ("run_if", "upstream", "verdict"),
    [
        ("ALL_SUCCESS", ["SUCCESS", "SUCCESS"], "RUN"),
        ("ALL_SUCCESS", ["SUCCESS", "FAILED"], "UPSTREAM_FAILED"),
        ("ALL_SUCCESS", ["SUCCESS", "CANCELED"], "UPSTREAM_CANCELED"),
        ("ALL_SUCCESS", ["EXCLUDED"], "RUN"),  # an excluded task counts as a success
        ("AT_LEAST_ONE_SUCCESS", ["FAILED", "SUCCESS"], "RUN"),
        ("AT_LEAST_ONE_SUCCESS", ["CANCELED", "CANCELED"], "UPSTREAM_CANCELED"),
        ("AT_LEAST_ONE_SUCCESS", ["FAILED", "CANCELED"], "UPSTREAM_FAILED"),
        ("NONE_FAILED", ["SUCCESS", "CANCELED"], "RUN"),
        ("NONE_FAILED", ["SUCCESS", "TIMEDOUT"], "UPSTREAM_FAILED"),
        ("ALL_DONE", ["FAILED", "CANCELED"], "RUN"),
        ("AT_LEAST_ONE_FAILED", ["SUCCESS", "SUCCESS"], "EXCLUDED"),
        ("AT_LEAST_ONE_FAILED", ["SUCCESS", "UPSTREAM_FAILED"], "RUN"),
        ("ALL_FAILED", ["FAILED", "SUCCESS"], "EXCLUDED"),
        ("ALL_FAILED", ["FAILED", "TIMEDOUT"], "RUN"),
    ],
)
def test_run_if_verdicts(run_if, upstream, verdict):
    assert run_if_verdict(run_if, upstream) == verdict


def test_a_failure_runs_the_all_failed_branch_and_excludes_the_success_branch(runs, launcher):
    parent = submit(
        runs,
        notebook("train"),
        notebook("publish", depends_on=[{"task_key": "train"}]),
        notebook("alert", depends_on=[{"task_key": "train"}], run_if="ALL_FAILED"),
        notebook("report", depends_on=[{"task_key": "train"}], run_if="AT_LEAST_ONE_SUCCESS"),
    )
    [train] = launcher.wait_executing()
    launcher.finish(train, "FAILED", "ValueError: no rows")
    [alert] = launcher.wait_executing()

    assert alert == task_of(runs, parent, "alert").run_id
    assert task_of(runs, parent, "publish").result == "UPSTREAM_FAILED"
    assert task_of(runs, parent, "report").result == "UPSTREAM_FAILED"
    launcher.finish(alert)
    wait_until(lambda: parent.terminal)
    assert (parent.life, parent.result) == ("TERMINATED", "FAILED")
    assert parent.message == "Task train failed with message: ValueError: no rows"


# --------------------------------------------------------------------------- retries


def test_a_failed_attempt_is_retried_with_a_new_run_and_the_retry_decides_the_run(runs, launcher):
    parent = submit(runs, notebook("flaky", max_retries=2, min_retry_interval_millis=0))
    [first] = launcher.wait_executing()
    launcher.finish(first, "FAILED", "RuntimeError: first attempt")
    wait_until(lambda: len(parent.attempts["flaky"]) == 2 and launcher.executing)
    [second] = launcher.wait_executing()
    payload = launcher.finish(second, "SUCCESS")
    wait_until(lambda: parent.terminal)

    attempts = [runs.runs[i] for i in parent.attempts["flaky"]]
    assert [(a.attempt_number, a.result) for a in attempts] == [(0, "FAILED"), (1, "SUCCESS")]
    assert attempts[1].original_attempt_run_id == attempts[0].run_id
    assert payload["run_id"] == second != first
    assert parent.result == "SUCCESS"


def test_retries_stop_at_max_retries(runs, launcher):
    parent = submit(runs, notebook("broken", max_retries=1))
    for _ in range(2):
        [run_id] = launcher.wait_executing()
        launcher.finish(run_id, "FAILED", "boom")
    wait_until(lambda: parent.terminal)

    assert len(parent.attempts["broken"]) == 2
    assert parent.result == "FAILED"


def test_a_timeout_is_not_retried_unless_retry_on_timeout(runs, launcher):
    parent = submit(runs, notebook("slow", timeout_seconds=1, max_retries=3))
    launcher.wait_executing()
    wait_until(lambda: parent.terminal, timeout=10)

    assert [runs.runs[i].result for i in parent.attempts["slow"]] == ["TIMEDOUT"]
    assert parent.result == "TIMEDOUT"


# --------------------------------------------------------------------------- repair


def test_repair_reruns_the_failed_task_and_its_skipped_dependents_only(runs, launcher):
    parent = submit(
        runs,
        notebook("prepare"),
        notebook("train", depends_on=[{"task_key": "prepare"}]),
        notebook("register", depends_on=[{"task_key": "train"}]),
    )
    [prepare] = launcher.wait_executing()
    launcher.finish(prepare)
    [train] = launcher.wait_executing()
    launcher.finish(train, "FAILED", "OOM")
    wait_until(lambda: parent.terminal)
    assert task_of(runs, parent, "register").result == "UPSTREAM_FAILED"

    repair_id = runs.repair(parent.run_id, {"rerun_all_failed_tasks": True})

    assert parent.life != "TERMINATED" and parent.result is None
    [train_again] = launcher.wait_executing()
    assert train_again == task_of(runs, parent, "train").run_id != train
    launcher.finish(train_again)
    [register] = launcher.wait_executing()
    launcher.finish(register)
    wait_until(lambda: parent.terminal)
    assert parent.result == "SUCCESS"
    assert len(parent.attempts["prepare"]) == 1  # the task that succeeded is not run again
    assert parent.repairs[-1]["id"] == repair_id
    assert parent.repairs[-1]["task_run_ids"] == [train_again, register]
    # A second repair must name the latest one.
    with pytest.raises(ApiError, match=f"latest_repair_id={repair_id}"):
        runs.repair(parent.run_id, {"rerun_tasks": ["prepare"]})


def test_repair_of_a_job_run_uses_the_jobs_current_task_settings(tmp_path, launcher):
    jobs = {}
    runs = backend(tmp_path, launcher, jobs=jobs)
    try:
        settings = {"name": "job", "tasks": [notebook("score", notebook_task={"notebook_path": "/v1"})]}
        jobs[7] = settings
        parent = runs.create_run(job_id=7, run_type="JOB_RUN", settings=dict(settings), max_concurrent_runs=1)
        [first] = launcher.wait_executing()
        assert launcher.finish(first, "FAILED")["notebook_path"] == "/v1"
        wait_until(lambda: parent.terminal)
        jobs[7] = {"name": "job", "tasks": [notebook("score", notebook_task={"notebook_path": "/v2"})]}

        runs.repair(parent.run_id, {"rerun_tasks": ["score"]})
        [second] = launcher.wait_executing()

        assert launcher.finish(second)["notebook_path"] == "/v2"
    finally:
        runs.close()


# --------------------------------------------------------------------------- cancel and the queue


def test_cancel_of_a_run_waiting_for_a_slot_ends_it_without_launching_it(tmp_path, launcher):
    runs = backend(tmp_path, launcher, max_parallel=1)
    try:
        running = submit(runs, notebook("first"))
        queued = submit(runs, notebook("second"), queue={"enabled": True})
        [first] = launcher.wait_executing()
        waiting = task_of(runs, queued, "second")
        assert (queued.life, waiting.life) == ("QUEUED", "QUEUED")

        runs.cancel(queued.run_id)

        assert (queued.life, queued.result) == ("TERMINATED", "CANCELED")
        assert (waiting.life, waiting.result) == ("TERMINATED", "CANCELED")
        launcher.finish(first)
        wait_until(lambda: running.terminal)
        time.sleep(0.1)
        assert launcher.launched == [first]  # the canceled task never got a cluster
        assert runs.stats()["queue_length"] == 0
    finally:
        runs.close()


def test_cancel_of_a_run_queued_behind_max_concurrent_runs_leaves_the_queue(tmp_path, launcher):
    runs = backend(tmp_path, launcher, jobs={3: {"max_concurrent_runs": 1}})
    try:
        settings = {"name": "job", "tasks": [notebook("t")], "queue": {"enabled": True}}
        active = runs.create_run(job_id=3, run_type="JOB_RUN", settings=dict(settings), max_concurrent_runs=1)
        queued = runs.create_run(job_id=3, run_type="JOB_RUN", settings=dict(settings), max_concurrent_runs=1)
        third = runs.create_run(job_id=3, run_type="JOB_RUN", settings=dict(settings), max_concurrent_runs=1)
        [first] = launcher.wait_executing()
        assert (queued.life, queued.job_queued, third.job_queued) == ("QUEUED", True, True)

        runs.cancel(queued.run_id)
        assert (queued.life, queued.result) == ("TERMINATED", "CANCELED")
        launcher.finish(first)
        wait_until(lambda: active.terminal)

        # The next queued run (not the canceled one) takes the freed place.
        [next_task] = launcher.wait_executing()
        assert next_task == task_of(runs, third, "t").run_id
        launcher.finish(next_task)
        wait_until(lambda: third.terminal)
        assert third.result == "SUCCESS"
    finally:
        runs.close()


def test_cancel_of_a_running_run_cancels_its_task_and_skips_the_rest(runs, launcher):
    parent = submit(runs, notebook("a"), notebook("b", depends_on=[{"task_key": "a"}]))
    launcher.wait_executing()

    runs.cancel(parent.run_id)
    wait_until(lambda: parent.terminal)

    assert parent.result == "CANCELED" and parent.user_cancelled_or_timedout
    assert task_of(runs, parent, "a").result == "CANCELED"
    assert task_of(runs, parent, "b").result == "CANCELED"


# --------------------------------------------------------------------------- libraries


class InstallingLauncher(ScriptedLauncher):
    """A cluster whose libraries install until the test lets them finish."""

    def __init__(self) -> None:
        super().__init__()
        self.installed = threading.Event()

    def install_libraries(self, cluster_id, task_spec, installing=None) -> None:
        if task_spec.get("libraries") and installing is not None:
            installing()
            assert self.installed.wait(10)


def test_a_task_waiting_for_its_libraries_is_pending_installing_libraries(tmp_path):
    launcher = InstallingLauncher()
    runs = backend(tmp_path, launcher)
    try:
        parent = submit(runs, notebook("t", libraries=[{"pypi": {"package": "tomli-w==1.2.0"}}]))
        task = task_of(runs, parent, "t")
        wait_until(lambda: task.message == "Installing libraries")
        assert (task.life, parent.life, parent.message) == ("PENDING", "PENDING", "Installing libraries")
        assert launcher.executing == {}  # the task does not start before its libraries are in

        launcher.installed.set()
        [run_id] = launcher.wait_executing()
        assert (task.life, task.message, parent.life) == ("RUNNING", "In run", "RUNNING")
        launcher.finish(run_id)
        wait_until(lambda: parent.terminal)
        assert parent.result == "SUCCESS"
    finally:
        runs.close()


def test_a_task_without_libraries_to_install_never_says_installing(runs, launcher):
    parent = submit(runs, notebook("t"))
    [run_id] = launcher.wait_executing()
    assert task_of(runs, parent, "t").message == "In run"
    launcher.finish(run_id)
    wait_until(lambda: parent.terminal)
    assert parent.result == "SUCCESS"


# --------------------------------------------------------------------------- the journal


def die(runs: RunsBackend) -> None:
    """The process ends: no transition after this point is recorded (what was written stays)."""
    runs.stopping = True
    runs.journal.stop()


def test_a_restart_keeps_waiting_runs_and_fails_the_executing_one_with_driver_error(tmp_path, launcher):
    runs = backend(tmp_path, launcher, max_parallel=1)
    done = submit(runs, notebook("quick"))
    launcher.finish(launcher.wait_executing()[0])
    wait_until(lambda: done.terminal)
    executing = submit(runs, notebook("long", max_retries=1, min_retry_interval_millis=0))
    waiting = [submit(runs, notebook(f"w{i}"), queue={"enabled": True}) for i in range(3)]
    launcher.wait_executing()
    die(runs)

    after = ScriptedLauncher()
    again = backend(tmp_path, after, max_parallel=1)
    try:
        assert again.get(done.run_id).result == "SUCCESS"
        # The attempt that held a cluster lost its driver; the runs that waited for a slot go on in
        # their order, each exactly once, and the lost attempt's retry queues behind them.
        order = []
        for _ in range(4):
            [task] = after.wait_executing()
            order.append(task)
            after.finish(task)
        lost = task_of(again, again.get(executing.run_id), "long", 0)
        assert (lost.life, lost.result, lost.termination_code) == ("INTERNAL_ERROR", "FAILED", "DRIVER_ERROR")
        assert lost.message == LOST_DRIVER_MESSAGE
        expected = [task_of(again, again.get(r.run_id), r.task_order[0]).run_id for r in waiting]
        assert order == [*expected, task_of(again, again.get(executing.run_id), "long", 1).run_id]
        wait_until(lambda: all(again.get(r.run_id).terminal for r in [executing, *waiting]))
        assert [again.get(r.run_id).result for r in [executing, *waiting]] == ["SUCCESS"] * 4
        assert len(after.launched) == len(set(after.launched)) == 4
        # Ids go on after the ones handed out before the restart.
        assert again.next_id("run") > max(again.runs)
    finally:
        again.close()


def test_a_job_run_whose_task_lost_its_driver_ends_with_run_execution_error(tmp_path, launcher):
    runs = backend(tmp_path, launcher)
    parent = submit(runs, notebook("long"))
    launcher.wait_executing()
    die(runs)

    again = backend(tmp_path, ScriptedLauncher())
    try:
        wait_until(lambda: again.get(parent.run_id).terminal)
        run = render_run("https://ws", again, again.get(parent.run_id))
        [task] = run["tasks"]
        assert task["status"]["termination_details"]["code"] == "DRIVER_ERROR"
        # The job run was "completed with task failures" (TerminationCodeCode): not a fault of its own.
        state = run["state"]
        assert (state["life_cycle_state"], state["result_state"]) == ("INTERNAL_ERROR", "FAILED")
        details = run["status"]["termination_details"]
        assert (details["code"], details["type"]) == ("RUN_EXECUTION_ERROR", "INTERNAL_ERROR")
        assert details["message"] == LOST_DRIVER_MESSAGE
    finally:
        again.close()


def test_a_restart_keeps_runs_queued_behind_max_concurrent_runs(tmp_path, launcher):
    jobs = {3: {"max_concurrent_runs": 1}}
    runs = backend(tmp_path, launcher, jobs=jobs)
    settings = {"name": "job", "tasks": [notebook("t")], "queue": {"enabled": True}}
    active = runs.create_run(job_id=3, run_type="JOB_RUN", settings=dict(settings), max_concurrent_runs=1)
    queued = runs.create_run(job_id=3, run_type="JOB_RUN", settings=dict(settings), max_concurrent_runs=1)
    launcher.wait_executing()
    die(runs)

    after = ScriptedLauncher()
    again = backend(tmp_path, after, jobs=jobs)
    try:
        wait_until(lambda: again.get(active.run_id).terminal)
        assert again.get(active.run_id).result == "FAILED"  # no retries: the lost driver ends it
        [task] = after.wait_executing()  # the queued run leaves the queue once the active one ended
        assert task == task_of(again, again.get(queued.run_id), "t").run_id
        after.finish(task)
        wait_until(lambda: again.get(queued.run_id).terminal)
        assert again.get(queued.run_id).result == "SUCCESS"
    finally:
        again.close()
