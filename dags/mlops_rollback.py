"""## mlops_rollback

Puts the previous production model back, from the Airflow UI: moves the `champion` alias of
the prod model to the version it held before (from the promotion history), or to the version
you name, and records who, when and why. Updates the `mlops_champion` Asset, so batch scoring
re-scores the newest data with the restored model. No model version is deleted.

With a serving endpoint (`environments.prod.serving`, Unity Catalog registry) the endpoint moves
with the alias, endpoint first:

1. `plan_rollback` - the version to go back to and the current champion, fixed once (a cleared
   run finds the target its earlier try chose instead of walking one more step back).
2. `serve_rollback_target` - the endpoint serves that version alone (created if missing).
3. `rollback_champion` - then `champion` moves to it.
4. `restore_endpoint` - if 2 or 3 failed, the endpoint goes back to the champion it served, so
   the champion alias and the endpoint name the same version when the run ends; the run fails.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param, task
from mlops.operators import RollbackModelOperator
from mlops.serving import ServingEndpointOperator

from include.assets import CHAMPION
from include.config import load_config
from include.dag_helpers import registry_connection
from include.serving_config import endpoint_operator_kwargs, serving_settings

CONFIG = load_config()
MODEL = CONFIG["model"]
REGISTRY = registry_connection(CONFIG)
TUNING = CONFIG["tuning"]
PROD = CONFIG["environments"]["prod"]
# None: no endpoint to move (no serving block, or a registry without Unity Catalog names).
SERVING = serving_settings(CONFIG)

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
    if SERVING is None:
        RollbackModelOperator(
            task_id="rollback_champion",
            **REGISTRY,
            model_name=MODEL["prod_model_name"],
            alias=MODEL["champion_alias"],
            to_version="{{ params.to_version or '' }}",
            reason="{{ params.reason }}",
            outlets=[CHAMPION],
        )
    else:

        @task
        def plan_rollback(params: dict, **context) -> dict:
            """The version to go back to and the current champion, before anything moves."""
            from mlops.hooks import MlflowRegistryHook
            from mlops.release import plan_rollback as plan

            return plan(
                MlflowRegistryHook(**REGISTRY),
                model_name=MODEL["prod_model_name"],
                alias=MODEL["champion_alias"],
                to_version=params.get("to_version"),
                context=context,
                rollback_task_id="rollback_champion",
            )

        target = plan_rollback()
        endpoint = endpoint_operator_kwargs(CONFIG, SERVING)
        serve_target = ServingEndpointOperator(
            task_id="serve_rollback_target",
            **endpoint,
            version=target["version"],
            workload_size=SERVING["workload_size"],
            scale_to_zero_enabled=SERVING["scale_to_zero_enabled"],
        )
        rollback = RollbackModelOperator(
            task_id="rollback_champion",
            **REGISTRY,
            model_name=MODEL["prod_model_name"],
            alias=MODEL["champion_alias"],
            # The version fixed above, not the history read again.
            to_version=target["version"],
            reason="{{ params.reason }}",
            outlets=[CHAMPION],
        )

        @task.short_circuit(trigger_rule="one_failed", ignore_downstream_trigger_rules=False)
        def champion_to_restore(plan: dict | None) -> bool:
            """The rollback failed: is there a champion the endpoint should serve again?"""
            return bool(plan and plan.get("previous_version"))

        restore = ServingEndpointOperator(
            task_id="restore_endpoint", **endpoint, version=target["previous_version"]
        )

        @task(trigger_rule="all_done")
        def rollback_outcome(plan: dict | None, **context) -> dict:
            """Fail the run unless the alias moved, even when the endpoint was restored."""
            from airflow.sdk.exceptions import AirflowFailException

            result = context["ti"].xcom_pull(task_ids="rollback_champion")
            if not result:
                restored = context["ti"].xcom_pull(task_ids="restore_endpoint")
                raise AirflowFailException(
                    f"Rollback of {MODEL['prod_model_name']} did not complete: champion unchanged"
                    + (f" (v{plan['previous_version']})" if plan and plan.get("previous_version") else "")
                    + ("; the endpoint serves it again." if restored else "; check the endpoint.")
                    + " See the failed task's log."
                )
            print(f"Endpoint {SERVING['endpoint_name']!r} and alias champion both on v{result['version']}.")
            return result

        serve_target >> rollback
        [serve_target, rollback] >> champion_to_restore(target) >> restore
        [rollback, restore] >> rollback_outcome(target)
