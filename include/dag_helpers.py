"""Small pieces the lifecycle DAG files share (templates, macros), kept out of the DAG files."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from mlops.notebook_results import idempotency_token

# Passed as user_defined_macros, so templates can say
# "{{ idempotency_token(dag_run.dag_id, dag_run.run_id, ti.task_id) }}".
# (Job runs started by mlops.databricks_runs.DatabricksJobResultOperator derive their token
# per attempt themselves: a retry after a FAILED run starts a new run.)
MACROS = {"idempotency_token": idempotency_token}
IDEMPOTENCY_TOKEN = "{{ idempotency_token(dag_run.dag_id, dag_run.run_id, ti.task_id) }}"


def date_to_process(
    explicit: str | None, run_type: str, interval_start: datetime | None, newest: Callable[[], str]
) -> str:
    """The data date a run works on, fixed once before any remote work starts.

    The form's date when given; a scheduled or backfill run's data-interval date; otherwise
    (a run started by an Asset or from the UI without a date) the newest landed partition,
    looked up now so every try of the run sees the same date.
    """
    if explicit:
        return str(explicit)
    if run_type in ("scheduled", "backfill") and interval_start is not None:
        return interval_start.strftime("%Y-%m-%d")
    return newest()


def champion_at(history: list[dict[str, Any]], when_ms: int) -> str | None:
    """The version an alias pointed at, at epoch-millisecond ``when_ms``, from its audit history.

    ``history`` is :func:`mlops.registry.read_history` (oldest first); only applied moves count
    (pending, failed and superseded ones never held the alias). None: no move before ``when_ms``.
    """
    holder = None
    for entry in history:
        if int(entry.get("ts", 0)) > when_ms:
            break
        if entry.get("status", "applied") == "applied":
            holder = str(entry["version"])
    return holder


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
        + _DATA_LINEAGE
    )


# What training actually read, from the task that fixed the date and listed its files before
# the run (tag values stay under Unity Catalog's 1000 characters).
_DATA_LINEAGE = (
    "{% set data = ti.xcom_pull(task_ids='resolve_training_data') %}"
    '"mlops_data_date": "{{ data.date }}", "mlops_data_path": {{ data.path | tojson }}, '
    '"mlops_data_files": {{ (data.files | map("replace", data.path ~ "/", "") | join(","))[:900] | tojson }}}'
)
