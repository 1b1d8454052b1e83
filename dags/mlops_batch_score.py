"""## mlops_batch_score

Scores a day of new data with the production **champion** on the **prod** workspace: every
morning on schedule, and again right after a release or rollback moves the champion.

1. `resolve_scoring_run` - fixes the champion to an exact version and the date to score
   BEFORE the job starts, so a promotion during the run changes nothing. With no champion yet
   (before the first release) the run is skipped. Scheduled runs score
   their data interval's date; runs started by a new champion (or from the UI without a date)
   score the newest input partition.
2. `score` - runs the `mlops-batch-score` job (deployed by `mlops_release`); the notebook
   overwrites that date's prediction partition only, so a re-run replaces, never duplicates.
3. `read_scoring_result` -> `check_row_counts` - rows out must equal rows in, ids unique.
"""

from __future__ import annotations

import pendulum
from airflow.providers.databricks.operators.databricks import DatabricksRunNowOperator
from airflow.sdk import DAG, Param, task
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.interval import CronDataIntervalTimetable
from mlops.notebook_results import DatabricksNotebookResultOperator

from include.assets import CHAMPION
from include.config import environment, load_config
from include.dag_helpers import IDEMPOTENCY_TOKEN, MACROS, registry_connection, xcom
from include.jobs import render_job

CONFIG = load_config()
MODEL = CONFIG["model"]
TUNING = CONFIG["tuning"]
REGISTRY = registry_connection(CONFIG)
PROD = environment(CONFIG, "prod")
SCORING = CONFIG["scoring"]
_, SCORING_JOB = render_job("batch_score", CONFIG)

with DAG(
    dag_id="mlops_batch_score",
    doc_md=__doc__,
    schedule=AssetOrTimeSchedule(
        timetable=CronDataIntervalTimetable(SCORING["schedule"], timezone="UTC"), assets=[CHAMPION]
    ),
    start_date=pendulum.parse(SCORING["start_date"], tz="UTC"),
    catchup=False,
    max_active_runs=2,
    default_args={"owner": "mlops", "retries": 1, "retry_delay": pendulum.duration(minutes=1)},
    tags=["mlops", "scoring", "prod"],
    user_defined_macros=MACROS,
    params={
        "date": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Date to score",
            description="YYYY-MM-DD of the input partition. Empty: the run's data interval, or the newest "
            "partition for runs started by a new champion.",
        ),
    },
) as dag:

    @task
    def resolve_scoring_run(params: dict, dag_run=None, data_interval_start=None) -> dict:
        """The exact champion version and the date to score, fixed before the job starts."""
        from airflow.sdk.exceptions import AirflowSkipException
        from mlops.exceptions import ModelRegistryNotFoundError
        from mlops.hooks import MlflowRegistryHook

        hook = MlflowRegistryHook(**REGISTRY)
        try:
            version = hook.get_model_version_by_alias(
                MODEL["prod_model_name"], MODEL["champion_alias"]
            ).version
        except ModelRegistryNotFoundError as exc:
            # A fresh installation scores nothing until the first release: skipped, not failed.
            raise AirflowSkipException(
                f"No {MODEL['champion_alias']} of {MODEL['prod_model_name']} yet, nothing to score: "
                f"release a model with mlops_release first. ({exc})"
            ) from exc
        if params.get("date"):
            date = params["date"]
        elif dag_run.run_type == "scheduled":
            date = data_interval_start.strftime("%Y-%m-%d")
        else:
            date = "latest"
        print(
            f"Scoring {date} with {MODEL['prod_model_name']} version {version} ({MODEL['champion_alias']})."
        )
        return {"model_version": str(version), "date": date}

    scoring_run = resolve_scoring_run()

    score = DatabricksRunNowOperator(
        task_id="score",
        databricks_conn_id=PROD["databricks_conn_id"],
        job_name=SCORING_JOB["name"],
        notebook_params={
            "model_version": xcom("resolve_scoring_run", "model_version"),
            "date": xcom("resolve_scoring_run", "date"),
        },
        idempotency_token=IDEMPOTENCY_TOKEN,
        # Long waits free the worker slot; how often to poll comes from include/config.
        deferrable=TUNING["deferrable"],
        polling_period_seconds=TUNING["polling_period_seconds"],
    )
    scoring_result = DatabricksNotebookResultOperator(
        task_id="read_scoring_result",
        databricks_conn_id=PROD["databricks_conn_id"],
        run_id="{{ ti.xcom_pull(task_ids='score', key='run_id') }}",
        task_key="batch_score",
    )

    @task
    def check_row_counts(result: dict) -> dict:
        """Every input row scored exactly once: rows out == rows in, ids unique."""
        from airflow.sdk.exceptions import AirflowFailException

        if result["rows_out"] != result["rows_in"] or result["distinct_ids"] != result["rows_out"]:
            raise AirflowFailException(
                f"Scoring of {result['date']} wrote {result['rows_out']} rows ({result['distinct_ids']} distinct "
                f"ids) for {result['rows_in']} input rows: {result['output_path']} is not trustworthy."
            )
        print(
            f"Scored {result['rows_out']} rows of {result['date']} with {result['model_name']} "
            f"v{result['model_version']} into {result['output_path']}."
        )
        return result

    scoring_run >> score >> scoring_result
    check_row_counts(scoring_result.output)
