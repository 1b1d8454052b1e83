"""DatabricksSubmitRunOperator, synchronous and deferrable, against the emulated workspace."""

from __future__ import annotations

import os

import pendulum
from _checks import expect_notebook_result
from airflow.providers.databricks.operators.databricks import DatabricksSubmitRunOperator
from airflow.sdk import dag, task

NOTEBOOKS = os.environ["PROVIDER_TEST_NOTEBOOKS"]
CLUSTER = {"spark_version": "15.4.x-scala2.12", "node_type_id": "Standard_DS3_v2", "num_workers": 1}


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False, tags=["test"])
def provider_submit_run():
    sync = DatabricksSubmitRunOperator(
        task_id="submit_sync",
        new_cluster=CLUSTER,
        notebook_task={"notebook_path": f"{NOTEBOOKS}/greet", "base_parameters": {"who": "sync"}},
        polling_period_seconds=1,
    )
    deferred = DatabricksSubmitRunOperator(
        task_id="submit_deferrable",
        deferrable=True,
        json={
            "run_name": "deferrable submit",
            "tasks": [
                {
                    "task_key": "greet",
                    "new_cluster": CLUSTER,
                    "notebook_task": {
                        "notebook_path": f"{NOTEBOOKS}/greet",
                        "base_parameters": {"greeting": "hi", "who": "deferred"},
                    },
                }
            ],
        },
        polling_period_seconds=1,
    )

    @task
    def check(sync_run: str, deferred_run: str) -> None:
        expect_notebook_result(sync_run, "hello, sync")
        expect_notebook_result(deferred_run, "hi, deferred")

    checked = check(
        sync_run="{{ ti.xcom_pull(task_ids='submit_sync', key='run_id') }}",
        deferred_run="{{ ti.xcom_pull(task_ids='submit_deferrable', key='run_id') }}",
    )
    [sync, deferred] >> checked


provider_submit_run()
