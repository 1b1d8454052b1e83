"""## mlops_recovery_lost_worker (tests/ui only)

One Databricks job run that can outlive its Airflow worker: tests/ui/test_scheduler_recovery.py
kills the task's processes while the run goes and lets the scheduler retry the task. The task
waits synchronously, so a worker process holds it for the whole run (deferred, the triggerer
would). The job to run and the file that lets its notebook end come from the DAG run's conf.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG
from mlops.databricks_runs import DatabricksJobResultOperator

from include.config import environment, load_config

DEV = environment(load_config(), "dev")

with DAG(
    dag_id="mlops_recovery_lost_worker",
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    default_args={"owner": "test", "retries": 1, "retry_delay": pendulum.duration(seconds=1)},
    tags=["test"],
):
    DatabricksJobResultOperator(
        task_id="run_job",
        databricks_conn_id=DEV["databricks_conn_id"],
        job_name="{{ dag_run.conf['job_name'] }}",
        task_key="main",
        notebook_params={"release_file": "{{ dag_run.conf['release_file'] }}"},
        deferrable=False,
        polling_period_seconds=1,
    )
