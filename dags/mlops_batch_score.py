"""## mlops_batch_score

Scores a day of new data with the production **champion** on the **prod** workspace: every
morning on schedule, and again right after a release or rollback moves the champion.

1. `resolve_scoring_run` - fixes the model version AND the date to score BEFORE the job starts,
   whatever started the run (schedule, the champion Asset, the UI, a backfill), and keeps them
   for every later try of the DAG run: a retry or a clear scores the same date with the same
   version. The date: the form's; a scheduled or backfill run's data-interval date; else the
   newest input partition, listed now through the workspace's Files API. The version: the
   champion now; for a **backfill**, the version that was champion when that date's scheduled
   run was due, read from the promotion history (Param `backfill_champion=current` takes
   today's champion instead). Before the first release the run is skipped.
2. `score` - runs the `mlops-batch-score` job (deployed by `mlops_release`) and returns its
   notebook's result. The notebook overwrites that date's prediction partition only (a re-run
   replaces, never duplicates), and every output row carries the `model_version` that scored
   it. A retry after a FAILED run starts a new run; a retry after a lost worker re-attaches to
   the run still going (see plugins/mlops/README.md, "Retries").
3. `check_row_counts` - rows out must equal rows in, ids unique, scored by the fixed version.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param, task
from airflow.timetables.assets import AssetOrTimeSchedule
from airflow.timetables.interval import CronDataIntervalTimetable
from mlops.databricks_runs import DatabricksJobResultOperator

from include.assets import CHAMPION
from include.config import environment, load_config
from include.dag_helpers import champion_at, date_to_process, registry_connection
from include.jobs import render_job

CONFIG = load_config()
MODEL = CONFIG["model"]
TUNING = CONFIG["tuning"]
REGISTRY = registry_connection(CONFIG)
PROD = environment(CONFIG, "prod")
SCORING = CONFIG["scoring"]
_, SCORING_JOB = render_job("batch_score", CONFIG)
PINNED = "mlops_scoring_inputs"  # task_state_store key: the inputs a DAG run fixed on its first try

with DAG(
    dag_id="mlops_batch_score",
    doc_md=__doc__,
    schedule=AssetOrTimeSchedule(
        timetable=CronDataIntervalTimetable(SCORING["schedule"], timezone="UTC"), assets=[CHAMPION]
    ),
    start_date=pendulum.parse(SCORING["start_date"], tz="UTC"),
    catchup=False,
    max_active_runs=2,
    default_args={
        "owner": "mlops",
        "databricks_retry_limit": TUNING["databricks_retry_limit"],
        "retries": 1,
        "retry_delay": pendulum.duration(minutes=1),
    },
    tags=["mlops", "scoring", "prod"],
    params={
        "date": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Date to score",
            description="YYYY-MM-DD of the input partition. Empty: the run's data interval, or the newest "
            "partition for runs started by a new champion or from the UI.",
        ),
        "backfill_champion": Param(
            "of_the_date",
            type="string",
            enum=["of_the_date", "current"],
            title="Champion for backfills",
            description="Backfill runs score each date with the version that was champion when that "
            "date's scheduled run was due (from the promotion history), or with today's champion.",
        ),
    },
) as dag:

    @task
    def resolve_scoring_run(
        params: dict, dag_run=None, data_interval_start=None, data_interval_end=None, task_state_store=None
    ) -> dict[str, str]:
        """The exact model version and the date to score, fixed before the job starts.

        Remembered in the task's state store: a retry or a clear of this DAG run scores the same
        date with the same version, whatever landed or was promoted meanwhile.
        """
        from airflow.providers.databricks.hooks.databricks import DatabricksHook
        from airflow.sdk.exceptions import AirflowSkipException
        from mlops.exceptions import ModelRegistryNotFoundError
        from mlops.hooks import MlflowRegistryHook
        from mlops.landed_data import newest_partition
        from mlops.registry import read_history

        pinned = task_state_store.get(PINNED) if task_state_store is not None else None
        if pinned:
            print(
                f"Scoring {pinned['date']} with version {pinned['model_version']}, as fixed by the first try."
            )
            return pinned
        name, alias = MODEL["prod_model_name"], MODEL["champion_alias"]
        hook = MlflowRegistryHook(**REGISTRY)
        if dag_run.run_type == "backfill" and params["backfill_champion"] == "of_the_date":
            # The version that held the alias when this date's scheduled run was due.
            due = data_interval_end or data_interval_start
            version = champion_at(read_history(hook, name, alias), int(due.timestamp() * 1000))
            if version is None:
                raise AirflowSkipException(
                    f"{name} had no {alias} on {due.isoformat()} (the promotion history starts later): "
                    "nothing to score for that date. Choose backfill_champion=current to score it with "
                    "today's champion."
                )
            chosen = f"the {alias} on {due.isoformat()}"
        else:
            try:
                version = hook.get_model_version_by_alias(name, alias).version
            except ModelRegistryNotFoundError as exc:
                # A fresh installation scores nothing until the first release: skipped, not failed.
                raise AirflowSkipException(
                    f"No {alias} of {name} yet, nothing to score: release a model with mlops_release "
                    f"first. ({exc})"
                ) from exc
            chosen = f"the {alias} now"
        databricks = DatabricksHook(PROD["databricks_conn_id"], caller="mlops_batch_score")
        date = date_to_process(
            params.get("date"),
            dag_run.run_type,
            data_interval_start,
            lambda: newest_partition(databricks, PROD["paths"]["scoring_input"]),
        )
        print(f"Scoring {date} with {name} version {version} ({chosen}).")
        pinned = {"model_version": str(version), "date": date}
        if task_state_store is not None:
            task_state_store.set(PINNED, pinned)
        return pinned

    # The notebook parameters, as the resolved dict itself (an XComArg, no text round trip).
    scoring_run = resolve_scoring_run()

    score = DatabricksJobResultOperator(
        task_id="score",
        databricks_conn_id=PROD["databricks_conn_id"],
        job_name=SCORING_JOB["name"],
        task_key="batch_score",
        notebook_params=scoring_run,
        # Long waits free the worker slot; how often to poll comes from include/config.
        deferrable=TUNING["deferrable"],
        polling_period_seconds=TUNING["polling_period_seconds"],
    )

    @task
    def check_row_counts(result: dict, pinned: dict) -> dict:
        """Every input row scored exactly once, by the version fixed for this run."""
        from airflow.sdk.exceptions import AirflowFailException

        if result["rows_out"] != result["rows_in"] or result["distinct_ids"] != result["rows_out"]:
            raise AirflowFailException(
                f"Scoring of {result['date']} wrote {result['rows_out']} rows ({result['distinct_ids']} distinct "
                f"ids) for {result['rows_in']} input rows: {result['output_path']} is not trustworthy."
            )
        if (result["model_version"], result["date"]) != (pinned["model_version"], pinned["date"]):
            raise AirflowFailException(
                f"The scoring job scored {result['date']} with version {result['model_version']}, but this "
                f"run fixed {pinned['date']} and version {pinned['model_version']}: check the job's parameters."
            )
        print(
            f"Scored {result['rows_out']} rows of {result['date']} with {result['model_name']} "
            f"v{result['model_version']} into {result['output_path']}."
        )
        return result

    check_row_counts(score.output, scoring_run)
