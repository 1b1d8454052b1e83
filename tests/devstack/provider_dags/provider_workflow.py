"""DatabricksWorkflowTaskGroup: two notebook tasks sharing ONE job cluster, passing a task value."""

from __future__ import annotations

import os

import pendulum
from airflow.providers.databricks.hooks.databricks import DatabricksHook
from airflow.providers.databricks.operators.databricks import DatabricksNotebookOperator
from airflow.providers.databricks.operators.databricks_workflow import DatabricksWorkflowTaskGroup
from airflow.sdk import dag, task

NOTEBOOKS = os.environ["PROVIDER_TEST_NOTEBOOKS"]
CLUSTER = {"spark_version": "15.4.x-scala2.12", "node_type_id": "Standard_DS3_v2", "num_workers": 1}


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False, tags=["test"])
def provider_workflow():
    with DatabricksWorkflowTaskGroup(
        group_id="workflow",
        databricks_conn_id="databricks_default",
        job_clusters=[{"job_cluster_key": "shared", "new_cluster": CLUSTER}],
        notebook_params={"factor": "2"},
    ) as workflow:
        produce = DatabricksNotebookOperator(
            task_id="produce",
            databricks_task_key="produce",
            notebook_path=f"{NOTEBOOKS}/produce",
            source="WORKSPACE",
            job_cluster_key="shared",
            polling_period_seconds=1,
        )
        consume = DatabricksNotebookOperator(
            task_id="consume",
            databricks_task_key="consume",
            notebook_path=f"{NOTEBOOKS}/consume",
            source="WORKSPACE",
            job_cluster_key="shared",
            notebook_params={"upstream_task_key": "produce"},
            polling_period_seconds=1,
        )
        produce >> consume

    @task
    def check(ti=None) -> None:
        workflow_meta = ti.xcom_pull(task_ids="workflow.launch")
        hook = DatabricksHook()
        run = hook.get_run(int(workflow_meta["run_id"]))
        tasks = {t["task_key"]: t for t in run["tasks"]}
        clusters = {t["cluster_instance"]["cluster_id"] for t in tasks.values()}
        contexts = {t["cluster_instance"].get("spark_context_id") for t in tasks.values()}
        if len(clusters) != 1 or len(contexts) != 1:
            raise AssertionError(
                f"tasks ran on {clusters} / contexts {contexts}: expected ONE shared cluster"
            )
        result = hook.get_run_output(tasks["consume"]["run_id"])["notebook_output"]["result"]
        if result != "42":
            raise AssertionError(f"consume saw {result!r}, expected '42' from produce")
        print(f"CHECKED workflow run {run['run_id']}: one cluster {clusters.pop()}, task value 42")

    workflow >> check()


provider_workflow()
