"""
## Registry release (plugin test DAG)

Registers a logged model as a candidate, marks it `challenger`, gates it against the current
`champion`, promotes it into the production model (copy + alias move) and waits, deferred, until
the alias is in place. Used by tests/plugins to exercise the operators in real DAG runs.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param
from mlops.operators import (
    ModelValidationGateOperator,
    PromoteModelVersionOperator,
    RegisterModelVersionOperator,
    SetModelAliasOperator,
)
from mlops.sensors import ModelVersionSensor

CANDIDATE = "{{ ti.xcom_pull(task_ids='register') }}"

with DAG(
    dag_id="mlops_plugin_release",
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"owner": "mlops", "retries": 0},
    tags=["mlops", "test"],
    params={
        "model_uri": Param(type="string", title="Logged model URI", description="runs:/... or models:/m-..."),
        "model_name": Param(type="string", title="Candidate model", description="e.g. dev.ml.diabetes"),
        "target_model_name": Param(
            type="string", title="Production model", description="e.g. prod.ml.diabetes"
        ),
        "reason": Param(
            "release", type="string", title="Reason", description="Recorded in the audit history"
        ),
    },
):
    register = RegisterModelVersionOperator(
        task_id="register",
        model_uri="{{ params.model_uri }}",
        model_name="{{ params.model_name }}",
        tags={"release_dag": "{{ dag.dag_id }}"},
    )
    challenger = SetModelAliasOperator(
        task_id="set_challenger", model_name="{{ params.model_name }}", alias="challenger", version=CANDIDATE
    )
    ready = ModelVersionSensor(
        task_id="wait_ready",
        model_name="{{ params.model_name }}",
        version=CANDIDATE,
        poke_interval=1,
        timeout=60,
    )
    gate = ModelValidationGateOperator(
        task_id="gate",
        model_name="{{ params.model_name }}",
        candidate_version=CANDIDATE,
        champion_model_name="{{ params.target_model_name }}",
        rules={"rmse": {"max": 70, "max_regression": 0.02}, "r2": {"min": 0.3, "min_improvement": 0.0}},
        on_fail="skip",
    )
    promote = PromoteModelVersionOperator(
        task_id="promote",
        model_name="{{ params.model_name }}",
        version=CANDIDATE,
        alias="champion",
        remove_alias="challenger",
        target_model_name="{{ params.target_model_name }}",
        reason="{{ params.reason }}",
    )
    champion = ModelVersionSensor(
        task_id="wait_champion",
        model_name="{{ params.target_model_name }}",
        alias="champion",
        expected_version="{{ ti.xcom_pull(task_ids='promote')['version'] }}",
        deferrable=True,
        poke_interval=1,
        timeout=60,
    )
    register >> challenger >> ready >> gate >> promote >> champion
