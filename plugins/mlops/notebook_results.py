"""Reading what a Databricks notebook handed back (``dbutils.notebook.exit``) into Airflow."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

if TYPE_CHECKING:
    from airflow.providers.databricks.hooks.databricks import DatabricksHook
    from airflow.sdk import Context


class DatabricksNotebookResultOperator(BaseOperator):
    """
    Return the exit value of a notebook task of a finished Databricks run, parsed as JSON.

    Multi-task runs answer ``runs/get-output`` only for task runs, so the task run is found by
    ``task_key`` (or is the only task of the run).

    :param run_id: the job run id (templated, e.g. from a Databricks operator's XCom).
    :param task_key: the notebook task of that run; optional when the run has one task.
    :param databricks_conn_id: the workspace's Airflow connection.
    :param parse_json: parse the exit value as JSON (default); else return the text.
    """

    template_fields: Sequence[str] = ("run_id", "task_key", "databricks_conn_id")

    def __init__(
        self,
        *,
        run_id: int | str,
        task_key: str | None = None,
        databricks_conn_id: str = "databricks_default",
        parse_json: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.run_id = run_id
        self.task_key = task_key
        self.databricks_conn_id = databricks_conn_id
        self.parse_json = parse_json

    @cached_property
    def hook(self) -> DatabricksHook:
        from airflow.providers.databricks.hooks.databricks import DatabricksHook

        return DatabricksHook(self.databricks_conn_id, caller=type(self).__name__)

    def _task_run(self, run: dict[str, Any]) -> dict[str, Any]:
        tasks = run.get("tasks") or []
        if self.task_key:
            # The latest attempt of the task wins when Databricks retried it.
            matching = sorted(
                (t for t in tasks if t.get("task_key") == self.task_key),
                key=lambda t: t.get("attempt_number", 0),
            )
            if not matching:
                keys = sorted({t.get("task_key") for t in tasks})
                raise AirflowFailException(
                    f"Run {run['run_id']} has no task {self.task_key!r}; its tasks are {keys} ({run.get('run_page_url')})."
                )
            return matching[-1]
        if len(tasks) == 1:
            return tasks[0]
        keys = sorted(t.get("task_key") for t in tasks)
        raise AirflowFailException(f"Run {run['run_id']} has tasks {keys}: name one with task_key.")

    def execute(self, context: Context) -> Any:
        try:
            run_id = int(str(self.run_id).strip())
        except ValueError:
            raise AirflowFailException(f"run_id must be a Databricks run id, got {self.run_id!r}.") from None
        run = self.hook.get_run(run_id)
        task = self._task_run(run)
        state = task.get("state", {})
        if state.get("result_state") != "SUCCESS":
            raise AirflowFailException(
                f"Task {task.get('task_key')!r} of run {run_id} ended {state.get('life_cycle_state')}/"
                f"{state.get('result_state')}: {state.get('state_message')} ({task.get('run_page_url')})"
            )
        output = self.hook.get_run_output(task["run_id"])
        notebook = output.get("notebook_output") or {}
        if notebook.get("truncated"):
            raise AirflowFailException(
                f"The exit value of task {task.get('task_key')!r} (run {task['run_id']}) was truncated by "
                "Databricks: hand back a path to larger results instead of the results themselves."
            )
        result = notebook.get("result")
        self.log.info("Notebook %s of run %s returned: %s", task.get("task_key"), run_id, result)
        if not self.parse_json:
            return result
        if result is None:
            raise AirflowFailException(
                f"Task {task.get('task_key')!r} of run {run_id} exited without a value: the notebook must end "
                "with dbutils.notebook.exit(json.dumps(...))."
            )
        try:
            return json.loads(result)
        except json.JSONDecodeError as exc:
            raise AirflowFailException(
                f"Task {task.get('task_key')!r} of run {run_id} exited with non-JSON {result[:200]!r}: {exc}"
            ) from None


def idempotency_token(dag_id: str, run_id: str, task_id: str) -> str:
    """A Databricks idempotency token (at most 64 characters) for one task of one DAG run.

    The same task of the same DAG run always gets the same token, so a retry, or a request
    re-sent after a lost response, finds the run already started instead of starting another.
    """
    import hashlib

    digest = hashlib.sha256(f"{dag_id}\x1f{run_id}\x1f{task_id}".encode()).hexdigest()
    return f"airflow-{digest[:56]}"
