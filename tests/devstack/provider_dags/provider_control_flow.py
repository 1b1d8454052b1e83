"""## Control flow in a Databricks workflow

A DatabricksWorkflowTaskGroup whose job has a condition task (If/else) and a for-each task, given
to the provider's DatabricksTaskOperator as ``task_config``: ``produce`` sets a task value, the
condition compares it, the branch for its "true" outcome runs, and a for-each task greets every
region in parallel on the shared job cluster.

Databricks dynamic value references ({{tasks.produce.values.answer}}, {{input}}) are Jinja syntax
too. The workflow's launch task sends each operator's ``task_config`` as written; each operator
renders its own template fields later, so the DAG defines ``tasks`` and ``input`` as macros that
render back to the same reference text.
"""

from __future__ import annotations

import os

import pendulum
from _references import DatabricksReference
from airflow.providers.databricks.hooks.databricks import DatabricksHook
from airflow.providers.databricks.operators.databricks import (
    DatabricksNotebookOperator,
    DatabricksTaskOperator,
)
from airflow.providers.databricks.operators.databricks_workflow import DatabricksWorkflowTaskGroup
from airflow.sdk import dag, task

NOTEBOOKS = os.environ["PROVIDER_TEST_NOTEBOOKS"]
CLUSTER = {"spark_version": "15.4.x-scala2.12", "node_type_id": "Standard_DS3_v2", "num_workers": 1}
REGIONS = ["west", "east", "north"]


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1),
    catchup=False,
    tags=["test"],
    doc_md=__doc__,
    default_args={"owner": "tests", "retries": 0},
    user_defined_macros={"tasks": DatabricksReference("tasks"), "input": DatabricksReference("input")},
)
def provider_control_flow():
    with DatabricksWorkflowTaskGroup(
        group_id="workflow",
        databricks_conn_id="databricks_default",
        job_clusters=[{"job_cluster_key": "shared", "new_cluster": CLUSTER}],
    ) as workflow:
        produce = DatabricksNotebookOperator(
            task_id="produce",
            databricks_task_key="produce",
            notebook_path=f"{NOTEBOOKS}/produce",
            source="WORKSPACE",
            job_cluster_key="shared",
            polling_period_seconds=1,
        )
        has_answer = DatabricksTaskOperator(
            task_id="has_answer",
            databricks_task_key="has_answer",
            task_config={
                "condition_task": {
                    "op": "GREATER_THAN",
                    "left": "{{tasks.produce.values.answer}}",
                    "right": "20",
                }
            },
            polling_period_seconds=1,
        )
        # The provider writes depends_on from the Airflow dependencies; task_config's own
        # depends_on (it comes later in the task) adds the outcome this branch waits for.
        on_true = DatabricksTaskOperator(
            task_id="on_true",
            databricks_task_key="on_true",
            task_config={
                "notebook_task": {
                    "notebook_path": f"{NOTEBOOKS}/greet",
                    "source": "WORKSPACE",
                    "base_parameters": {"who": "the true branch"},
                },
                "depends_on": [{"task_key": "has_answer", "outcome": "true"}],
            },
            job_cluster_key="shared",
            polling_period_seconds=1,
        )
        per_region = DatabricksTaskOperator(
            task_id="per_region",
            databricks_task_key="per_region",
            task_config={
                "for_each_task": {
                    "inputs": str(REGIONS).replace("'", '"'),
                    "concurrency": 2,
                    "task": {
                        "task_key": "greet_region",
                        "notebook_task": {
                            "notebook_path": f"{NOTEBOOKS}/greet",
                            "source": "WORKSPACE",
                            "base_parameters": {"greeting": "hello", "who": "{{input}}"},
                        },
                        "job_cluster_key": "shared",
                    },
                }
            },
            polling_period_seconds=1,
        )
        produce >> has_answer >> on_true >> per_region

    @task
    def check(ti=None) -> None:
        run_id = int(ti.xcom_pull(task_ids="workflow.launch")["run_id"])
        hook = DatabricksHook()
        tasks = {t["task_key"]: t for t in hook.get_run(run_id)["tasks"]}
        outcome = tasks["has_answer"]["condition_task"].get("outcome")
        if outcome != "true" or "cluster_instance" in tasks["has_answer"]:
            raise AssertionError(f"condition: outcome {outcome!r}, {tasks['has_answer']}")
        branch = hook.get_run_output(tasks["on_true"]["run_id"])["notebook_output"].get("result")
        if branch != "hello, the true branch":
            raise AssertionError(f"the true branch ended with {branch!r}")
        stats = tasks["per_region"]["for_each_task"]["stats"]["task_run_stats"]
        if (stats["total_iterations"], stats["succeeded_iterations"]) != (len(REGIONS), len(REGIONS)):
            raise AssertionError(f"for-each stats {stats}")
        iterations = hook.get_run(tasks["per_region"]["run_id"])["iterations"]
        greetings = sorted(hook.get_run_output(i["run_id"])["notebook_output"]["result"] for i in iterations)
        if greetings != sorted(f"hello, {region}" for region in REGIONS):
            raise AssertionError(f"for-each iterations ended with {greetings}")
        print(f"CHECKED control flow run {run_id}: outcome true, iterations {greetings}")

    workflow >> check()


provider_control_flow()
