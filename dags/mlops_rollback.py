"""## mlops_rollback

Puts the previous production model back, from the Airflow UI: moves the `champion` alias of
the prod model to the version it held before (from the promotion history), or to the version
you name, and records who, when and why. Updates the `mlops_champion` Asset, so batch scoring
re-scores the newest data with the restored model. No model version is deleted.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param
from mlops.operators import RollbackModelOperator

from include.assets import CHAMPION
from include.config import load_config
from include.dag_helpers import registry_connection

CONFIG = load_config()
MODEL = CONFIG["model"]
REGISTRY = registry_connection(CONFIG)

with DAG(
    dag_id="mlops_rollback",
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "mlops", "retries": 0},
    tags=["mlops", "rollback", "prod"],
    params={
        "reason": Param(
            type="string",
            minLength=5,
            maxLength=500,
            title="Reason",
            description="Why the champion is rolled back (kept in the model's audit history).",
        ),
        "to_version": Param(
            None,
            type=["null", "string"],
            pattern=r"^[0-9]+$",
            title="Roll back to version",
            description=f"A version of {MODEL['prod_model_name']}. Empty: the previous champion.",
        ),
    },
) as dag:
    RollbackModelOperator(
        task_id="rollback_champion",
        **REGISTRY,
        model_name=MODEL["prod_model_name"],
        alias=MODEL["champion_alias"],
        to_version="{{ params.to_version or '' }}",
        reason="{{ params.reason }}",
        outlets=[CHAMPION],
    )
