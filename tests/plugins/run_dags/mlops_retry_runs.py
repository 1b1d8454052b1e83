"""DatabricksJobResultOperator and ReattachingWorkflowTaskGroup in real DAG runs (see test_databricks_runs.py)."""

from __future__ import annotations

import os

import pendulum
from airflow.providers.databricks.operators.databricks import DatabricksNotebookOperator
from airflow.sdk import DAG, task
from mlops.databricks_runs import DatabricksJobResultOperator, ReattachingWorkflowTaskGroup

JOB_NAME = os.environ.get("RETRY_TEST_JOB_NAME", "unset")
NOTEBOOKS = os.environ.get("RETRY_TEST_NOTEBOOKS", "/unset")
CLUSTER = {"spark_version": "15.4.x-scala2.12", "node_type_id": "Standard_DS3_v2", "num_workers": 1}
DEFAULTS = {"owner": "test", "retries": 1, "retry_delay": pendulum.duration(seconds=1)}

with DAG(
    dag_id="mlops_retry_job",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1),
    catchup=False,
    tags=["test"],
    default_args=DEFAULTS,
    render_template_as_native_obj=True,
):
    run = DatabricksJobResultOperator(
        task_id="run_job",
        job_name=JOB_NAME,
        task_key="main",
        notebook_params={
            "marker_dir": os.environ.get("RETRY_TEST_MARKER_DIR", "-"),
            "release_file": os.environ.get("RETRY_TEST_RELEASE_FILE", "-"),
        },
        deferrable=os.environ.get("RETRY_TEST_DEFERRABLE", "1") == "1",
        polling_period_seconds=1,
    )

    @task
    def show(result: dict) -> None:
        print(f"job result {result!r} of type {type(result).__name__}")

    show(run.output)


with DAG(
    dag_id="mlops_retry_workflow",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1),
    catchup=False,
    tags=["test"],
    default_args=DEFAULTS,
):
    with ReattachingWorkflowTaskGroup(
        group_id="workflow",
        databricks_conn_id="databricks_default",
        job_clusters=[{"job_cluster_key": "c", "new_cluster": CLUSTER}],
        notebook_params={"release_file": os.environ.get("RETRY_TEST_RELEASE_FILE", "")},
    ):
        DatabricksNotebookOperator(
            task_id="slow",
            databricks_conn_id="databricks_default",
            notebook_path=f"{NOTEBOOKS}/slow",
            source="WORKSPACE",
            job_cluster_key="c",
            polling_period_seconds=1,
        )


class LosesItsWorkerOnFirstTry(DatabricksJobResultOperator):
    """Its first try stops dead once its run is going, as a lost worker does: no cancel, no cleanup.

    The next try, once it has decided (re-attach or start), lets the notebook end.
    """

    def _start_or_reattach(self, context):
        import time
        from pathlib import Path

        run_id = super()._start_or_reattach(context)
        if context["ti"].try_number == 1:
            while self._hook.get_run_state(run_id).life_cycle_state != "RUNNING":
                time.sleep(0.5)
            raise RuntimeError(f"worker lost while Databricks run {run_id} is RUNNING")
        Path(os.environ["RETRY_TEST_RELEASE_FILE"]).touch()
        return run_id


with DAG(
    dag_id="mlops_retry_lost_worker",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1),
    catchup=False,
    tags=["test"],
    default_args=DEFAULTS,
):
    LosesItsWorkerOnFirstTry(
        task_id="run_job",
        job_name=JOB_NAME,
        task_key="main",
        notebook_params={"release_file": os.environ.get("RETRY_TEST_RELEASE_FILE", "-")},
        deferrable=os.environ.get("RETRY_TEST_DEFERRABLE", "1") == "1",
        polling_period_seconds=1,
    )
