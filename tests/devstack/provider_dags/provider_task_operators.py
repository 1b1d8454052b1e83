"""DatabricksNotebookOperator and DatabricksTaskOperator used on their own (one-task submit runs)."""

from __future__ import annotations

import os

import pendulum
from airflow.providers.databricks.operators.databricks import (
    DatabricksNotebookOperator,
    DatabricksTaskOperator,
)
from airflow.sdk import dag

NOTEBOOKS = os.environ["PROVIDER_TEST_NOTEBOOKS"]
CLUSTER = {"spark_version": "15.4.x-scala2.12", "node_type_id": "Standard_DS3_v2", "num_workers": 1}


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False, tags=["test"])
def provider_task_operators():
    notebook = DatabricksNotebookOperator(
        task_id="notebook",
        notebook_path=f"{NOTEBOOKS}/greet",
        source="WORKSPACE",
        notebook_params={"who": "notebook operator"},
        new_cluster=CLUSTER,
        polling_period_seconds=1,
    )
    task_op = DatabricksTaskOperator(
        task_id="task_operator",
        task_config={
            "notebook_task": {
                "notebook_path": f"{NOTEBOOKS}/greet",
                "source": "WORKSPACE",
                "base_parameters": {"who": "task operator"},
            }
        },
        new_cluster=CLUSTER,
        polling_period_seconds=1,
    )
    notebook >> task_op


provider_task_operators()
