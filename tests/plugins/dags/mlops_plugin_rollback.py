"""
## Registry rollback (plugin test DAG)

Moves `champion` of a model back to the version it pointed at before the current promotion,
with an audit entry. Used by tests/plugins to exercise the rollback in a real DAG run.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param
from mlops.operators import RollbackModelOperator

with DAG(
    dag_id="mlops_plugin_rollback",
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={"owner": "mlops", "retries": 0},
    tags=["mlops", "test"],
    params={
        "model_name": Param(type="string", title="Model", description="e.g. prod.ml.diabetes"),
        "reason": Param(
            "rollback", type="string", title="Reason", description="Recorded in the audit history"
        ),
    },
):
    RollbackModelOperator(
        task_id="rollback", model_name="{{ params.model_name }}", reason="{{ params.reason }}"
    )
