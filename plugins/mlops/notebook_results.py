"""Reading what a Databricks notebook handed back (``dbutils.notebook.exit``) into Airflow."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from mlops.databricks_runs import idempotency_token, read_notebook_result

__all__ = ["DatabricksNotebookResultOperator", "idempotency_token", "read_notebook_result"]

if TYPE_CHECKING:
    from airflow.providers.databricks.hooks.databricks import DatabricksHook
    from airflow.sdk import Context


class DatabricksNotebookResultOperator(BaseOperator):
    """
    Return the exit value of a notebook task of a finished Databricks run, parsed as JSON.

    For a run started elsewhere (e.g. a workflow task group's launch); a job run started by
    :class:`mlops.databricks_runs.DatabricksJobResultOperator` returns its result itself.

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

    def execute(self, context: Context) -> Any:
        try:
            run_id = int(str(self.run_id).strip())
        except ValueError:
            raise AirflowFailException(f"run_id must be a Databricks run id, got {self.run_id!r}.") from None
        result = read_notebook_result(self.hook, run_id, self.task_key, parse_json=self.parse_json)
        self.log.info("Notebook %s of run %s returned: %s", self.task_key or "", run_id, result)
        return result
