"""DatabricksCreateJobsOperator, then DatabricksRunNowOperator by job_id and by job_name."""

from __future__ import annotations

import os

import pendulum
from _checks import expect_notebook_result
from airflow.providers.databricks.operators.databricks import (
    DatabricksCreateJobsOperator,
    DatabricksRunNowOperator,
)
from airflow.sdk import dag, task

NOTEBOOKS = os.environ["PROVIDER_TEST_NOTEBOOKS"]
JOB_NAME = os.environ.get("PROVIDER_TEST_JOB_NAME", "provider-test-greet")
CLUSTER = {"spark_version": "15.4.x-scala2.12", "node_type_id": "Standard_DS3_v2", "num_workers": 1}


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False, tags=["test"])
def provider_run_now():
    create = DatabricksCreateJobsOperator(
        task_id="create_job",
        json={
            "name": JOB_NAME,
            "tasks": [
                {
                    "task_key": "greet",
                    "new_cluster": CLUSTER,
                    "notebook_task": {
                        "notebook_path": f"{NOTEBOOKS}/greet",
                        "base_parameters": {"greeting": "hello", "who": "job default"},
                    },
                }
            ],
            "max_concurrent_runs": 2,
        },
    )
    by_id = DatabricksRunNowOperator(
        task_id="run_by_id",
        job_id="{{ ti.xcom_pull(task_ids='create_job') }}",
        notebook_params={"who": "by id"},
        polling_period_seconds=1,
    )
    by_name = DatabricksRunNowOperator(
        task_id="run_by_name",
        job_name=JOB_NAME,
        notebook_params={"greeting": "howdy", "who": "by name"},
        polling_period_seconds=1,
    )

    @task
    def check(id_run: str, name_run: str) -> None:
        expect_notebook_result(id_run, "hello, by id")
        expect_notebook_result(name_run, "howdy, by name")

    checked = check(
        id_run="{{ ti.xcom_pull(task_ids='run_by_id', key='run_id') }}",
        name_run="{{ ti.xcom_pull(task_ids='run_by_name', key='run_id') }}",
    )
    create >> [by_id, by_name] >> checked


provider_run_now()
