"""
## Wait for an alias (plugin test DAG)

A deferrable `ModelVersionSensor` that waits in the triggerer until `champion` points at the
expected version. Used by tests/plugins to exercise the trigger in a real DAG run.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param
from mlops.sensors import ModelVersionSensor

with DAG(
    dag_id="mlops_plugin_wait_alias",
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"owner": "mlops", "retries": 0},
    tags=["mlops", "test"],
    params={
        "model_name": Param(type="string", title="Model", description="e.g. prod.ml.diabetes"),
        "expected_version": Param(
            type="string", title="Expected version", description="champion must point here"
        ),
    },
):
    ModelVersionSensor(
        task_id="wait_champion",
        model_name="{{ params.model_name }}",
        alias="champion",
        expected_version="{{ params.expected_version }}",
        deferrable=True,
        poke_interval=2,
        timeout=180,
    )
