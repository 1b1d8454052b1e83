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
