"""## devstack example

Submits the `train_diabetes` notebook to the emulated dev workspace with the Databricks
provider's own operator, then reads the notebook's output back through the provider's hook.
"""

from __future__ import annotations

import json
import os

import pendulum
from airflow.providers.databricks.hooks.databricks import DatabricksHook
from airflow.providers.databricks.operators.databricks import DatabricksSubmitRunOperator
from airflow.sdk import dag, task

NOTEBOOK = os.environ.get("DEVSTACK_EXAMPLE_NOTEBOOK", "/Shared/devstack-example/train_diabetes")
CLUSTER = {"spark_version": "15.4.x-scala2.12", "node_type_id": "Standard_DS3_v2", "num_workers": 1}


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=__doc__,
    default_args={"owner": "mlops", "retries": 0},
    tags=["devstack", "example"],
)
def devstack_example():
    train = DatabricksSubmitRunOperator(
        task_id="train",
        databricks_conn_id="databricks_dev",
        new_cluster=CLUSTER,
        notebook_task={
            "notebook_path": NOTEBOOK,
            "base_parameters": {"experiment": "/Shared/devstack-example", "alpha": "0.5"},
        },
        idempotency_token="{{ dag_run.run_id }}-{{ ti.task_id }}",
        polling_period_seconds=1,
    )

    @task
    def report(run_id: str) -> dict:
        hook = DatabricksHook("databricks_dev")
        task_run = hook.get_run(int(run_id))["tasks"][0]["run_id"]
        output = json.loads(hook.get_run_output(task_run)["notebook_output"]["result"])
        output["run_page_url"] = hook.get_run_page_url(int(run_id))
        print("DEVSTACK_EXAMPLE_RESULT " + json.dumps(output))
        return output

    train >> report("{{ ti.xcom_pull(task_ids='train', key='run_id') }}")


devstack_example()
