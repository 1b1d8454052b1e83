"""Small pieces the lifecycle DAG files share (templates, macros), kept out of the DAG files."""

from __future__ import annotations

from mlops.notebook_results import idempotency_token

# Passed as user_defined_macros, so templates can say
# "{{ idempotency_token(dag_run.dag_id, dag_run.run_id, ti.task_id) }}".
MACROS = {"idempotency_token": idempotency_token}
IDEMPOTENCY_TOKEN = "{{ idempotency_token(dag_run.dag_id, dag_run.run_id, ti.task_id) }}"


def registry_connection(config: dict) -> dict[str, str]:
    """How the registry operators and hook reach the registry of ``config`` (their kwargs)."""
    registry = config["registry"]
    if registry.get("uri"):
        return {"databricks_conn_id": registry["databricks_conn_id"], "registry_uri": registry["uri"]}
    return {"mlflow_conn_id": registry["mlflow_conn_id"]}


def xcom(task_id: str, key: str | None = None) -> str:
    """A template pulling one task's return value (or one key of it)."""
    value = f"ti.xcom_pull(task_ids='{task_id}')"
    return "{{ " + (f"{value}['{key}']" if key else value) + " }}"


# The trigger form's choices; tests check they match lifecycle.training.MODEL_TYPES.
MODEL_TYPES = ("ridge", "random_forest", "gradient_boosting")


def hyperparameters_template() -> str:
    """JSON of the trigger form's hyperparameters, rendered by Airflow at run time."""
    return (
        '{"model_type": "{{ params.model_type }}", "alpha": {{ params.alpha }}, '
        '"max_depth": {{ params.max_depth }}, "n_estimators": {{ params.n_estimators }}}'
    )


def lineage_template() -> str:
    """JSON of the tags that tie a model version to the DAG run, code and data that made it."""
    return (
        '{"mlops_dag_id": "{{ dag.dag_id }}", "mlops_dag_run_id": "{{ run_id }}", '
        "\"mlops_git_sha\": \"{{ var.value.get('mlops_git_sha', 'unknown') }}\", "
        # Who started the training: a release with separation of duties refuses them as approver.
        "\"mlops_triggered_by\": {{ (dag_run.triggering_user_name or 'airflow:' ~ dag_run.run_type) | tojson }}, "
        '"mlops_data_date": "{{ params.data_date or (logical_date or dag_run.run_after) | ds }}"}'
    )
