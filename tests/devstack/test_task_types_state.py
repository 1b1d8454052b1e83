"""Control-flow tasks in the run state machine, in-process (the driver step scripted at the
launcher's seam): a workspace restart in the middle of a for-each task or a run-job task."""

from __future__ import annotations

from tests.devstack.test_runs_state import (
    LOST_DRIVER_MESSAGE,
    ScriptedLauncher,
    backend,
    die,
    notebook,
    submit,
    wait_until,
)


def for_each(key: str, inputs: list, concurrency: int, **nested) -> dict:
    inner = notebook(f"{key}_iteration", **nested)
    inner["notebook_task"]["base_parameters"] = {"item": "{{input}}"}
    return {
        "task_key": key,
        "for_each_task": {"inputs": str(inputs).replace("'", '"'), "concurrency": concurrency, "task": inner},
    }


def test_a_restart_during_a_for_each_task_resumes_its_iterations(tmp_path):
    launcher = ScriptedLauncher()
    runs = backend(tmp_path, launcher)
    parent = submit(runs, for_each("loop", ["a", "b", "c"], 2, max_retries=1, min_retry_interval_millis=0))
    running = launcher.wait_executing(2)
    assert len(running) == 2  # concurrency 2: the third iteration waits
    die(runs)

    after = ScriptedLauncher()
    again = backend(tmp_path, after)
    try:
        loop = again.runs[again.get(parent.run_id).attempts["loop"][0]]
        # The two executing iterations lost their driver and retry; the third starts once a slot
        # of the for-each's concurrency frees; nothing runs twice except the retried attempts.
        items = []
        while len(items) < 3:
            executing = after.wait_executing(1)
            assert len(executing) <= 2, executing  # never more than the concurrency
            items += [after.finish(run_id)["base_parameters"]["item"] for run_id in executing]
        assert sorted(items) == ["a", "b", "c"]
        wait_until(lambda: again.get(parent.run_id).terminal)
        assert (loop.life, loop.result) == ("TERMINATED", "SUCCESS")
        lost = [again.runs[i] for i in running]
        assert {(r.life, r.termination_code, r.message) for r in lost} == {
            ("INTERNAL_ERROR", "DRIVER_ERROR", LOST_DRIVER_MESSAGE)
        }
        stats = again.for_each_stats(loop)["task_run_stats"]
        assert (stats["total_iterations"], stats["succeeded_iterations"], stats["active_iterations"]) == (
            3,
            3,
            0,
        )
        assert len(after.launched) == len(set(after.launched)) == 3
    finally:
        again.close()


def test_a_restart_during_a_run_job_task_waits_for_the_job_run_it_started(tmp_path):
    launcher = ScriptedLauncher()
    jobs = {7: {"name": "child", "tasks": [notebook("work", max_retries=1, min_retry_interval_millis=0)]}}
    runs = backend(tmp_path, launcher, jobs=jobs)
    parent = submit(runs, {"task_key": "trigger", "run_job_task": {"job_id": 7}})
    [lost_id] = launcher.wait_executing(1)
    die(runs)

    after = ScriptedLauncher()
    again = backend(tmp_path, after, jobs=jobs)
    try:
        trigger = again.runs[again.get(parent.run_id).attempts["trigger"][0]]
        child = again.get(trigger.child_run_id)
        assert again.runs[lost_id].termination_code == "DRIVER_ERROR"
        [retry] = after.wait_executing(1)  # the child job's task retries after its lost driver
        after.finish(retry)
        wait_until(lambda: again.get(parent.run_id).terminal)
        assert (child.result, trigger.result, again.get(parent.run_id).result) == ("SUCCESS",) * 3
    finally:
        again.close()


def test_a_for_each_task_s_timeout_counts_on_after_a_restart(tmp_path):
    launcher = ScriptedLauncher()
    runs = backend(tmp_path, launcher)
    loop_spec = for_each("loop", ["a", "b"], 1)
    parent = submit(runs, {**loop_spec, "timeout_seconds": 2})
    launcher.wait_executing(1)
    die(runs)

    after = ScriptedLauncher()
    again = backend(tmp_path, after)
    try:
        loop = again.runs[again.get(parent.run_id).attempts["loop"][0]]
        [second] = after.wait_executing(1)  # the lost iteration failed; the next one holds on
        wait_until(lambda: loop.terminal)  # the timeout armed before the restart still applies
        assert (loop.result, loop.message) == (
            "TIMEDOUT",
            "Task loop timed out after 2 seconds (timeout_seconds).",
        )
        wait_until(lambda: again.runs[second].terminal)
        assert again.runs[second].result == "CANCELED"
        assert again.runs[second].end_time - loop.launch_time < 10_000
    finally:
        again.close()


def test_a_run_job_task_s_timeout_counts_on_after_a_restart(tmp_path):
    launcher = ScriptedLauncher()
    jobs = {7: {"name": "child", "tasks": [notebook("work", max_retries=1, min_retry_interval_millis=0)]}}
    runs = backend(tmp_path, launcher, jobs=jobs)
    parent = submit(runs, {"task_key": "trigger", "run_job_task": {"job_id": 7}, "timeout_seconds": 2})
    launcher.wait_executing(1)
    die(runs)

    after = ScriptedLauncher()
    again = backend(tmp_path, after, jobs=jobs)
    try:
        trigger = again.runs[again.get(parent.run_id).attempts["trigger"][0]]
        after.wait_executing(1)  # the child job's task retries after its lost driver, and holds on
        wait_until(lambda: trigger.terminal)
        assert (trigger.result, trigger.message) == (
            "TIMEDOUT",
            "Task trigger timed out after 2 seconds (timeout_seconds).",
        )
        child = again.get(trigger.child_run_id)
        wait_until(lambda: child.terminal)  # the job run it started is cancelled with it
        assert child.result == "CANCELED"
    finally:
        again.close()


def test_a_restart_during_a_run_job_iteration_waits_for_the_job_run_it_started(tmp_path):
    launcher = ScriptedLauncher()
    jobs = {7: {"name": "child", "tasks": [notebook("work")]}}
    runs = backend(tmp_path, launcher, jobs=jobs)
    nested = {"task_key": "call", "run_job_task": {"job_id": 7}}
    parent = submit(runs, {"task_key": "loop", "for_each_task": {"inputs": "[1]", "task": nested}})
    [lost_id] = launcher.wait_executing(1)
    die(runs)

    after = ScriptedLauncher()
    again = backend(tmp_path, after, jobs=jobs)
    try:
        loop = again.runs[again.get(parent.run_id).attempts["loop"][0]]
        [iteration] = [again.runs[i] for i in loop.iterations]
        child = again.get(iteration.child_run_id)
        wait_until(lambda: again.get(parent.run_id).terminal)
        # the child's only task lost its driver (no retries); the iteration, which holds no
        # driver, ends as the job run it started ends, not with a lost driver of its own
        assert again.runs[lost_id].termination_code == "DRIVER_ERROR"
        assert (child.result, iteration.result, loop.result) == ("FAILED",) * 3
        assert iteration.termination_code is None
        assert iteration.message.startswith(f"Run {child.run_id} of job 7")
    finally:
        again.close()
