"""A notebook that raises: the task must fail and carry the notebook's error into its log."""

from __future__ import annotations

import os

import pendulum
from airflow.providers.databricks.operators.databricks import DatabricksSubmitRunOperator
from airflow.sdk import dag

NOTEBOOKS = os.environ["PROVIDER_TEST_NOTEBOOKS"]
CLUSTER = {"spark_version": "15.4.x-scala2.12", "node_type_id": "Standard_DS3_v2", "num_workers": 1}


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1),
    catchup=False,
    tags=["test"],
    default_args={"retries": 0},
)
def provider_failing():
    DatabricksSubmitRunOperator(
        task_id="submit_failing",
        new_cluster=CLUSTER,
        notebook_task={"notebook_path": f"{NOTEBOOKS}/fail"},
        polling_period_seconds=1,
    )


provider_failing()
