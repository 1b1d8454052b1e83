"""Assertions the provider test DAGs run as tasks, through the provider's own hook."""

from __future__ import annotations

from airflow.providers.databricks.hooks.databricks import DatabricksHook


def single_task_run_id(hook: DatabricksHook, run_id: int) -> int:
    """The task run of a one-task job run (get-output answers only for task runs)."""
    tasks = hook.get_run(run_id)["tasks"]
    if len(tasks) != 1:
        raise AssertionError(f"run {run_id} has {len(tasks)} tasks, expected 1")
    return tasks[0]["run_id"]


def expect_notebook_result(run_id: int | str, expected: str) -> str:
    """Fail unless the notebook of ``run_id`` exited with ``expected``."""
    hook = DatabricksHook()
    task_run_id = single_task_run_id(hook, int(run_id))
    result = hook.get_run_output(task_run_id)["notebook_output"].get("result")
    if result != expected:
        raise AssertionError(f"run {run_id}: notebook result {result!r}, expected {expected!r}")
    print(f"CHECKED run {run_id}: notebook result {result!r}")
    return result
