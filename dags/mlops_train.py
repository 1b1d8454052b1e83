"""## mlops_train

Trains a candidate model on the **dev** workspace and hands it to the release.

1. `resolve_training_data` - fixes the data date (the form's `data_date`; a scheduled run's
   interval date; else the newest landed partition) and lists that date's files through the
   workspace's Files API, BEFORE any cluster starts: a date with no data fails here, naming
   the date and the path. The date, path and files become the model's lineage tags.
2. `train_workflow` - one Databricks job on ONE shared job cluster:
   `prepare_data` (schema and range checks, bad rows quarantined) -> `train_model`
   (scikit-learn pipeline logged to MLflow and registered as a new version of the dev model).
   A retried launch re-attaches to this DAG run's workflow run if it is still going (the run
   carries the notebook parameter `airflow_run_marker`), so a retry starts no second one.
3. `read_training_result` - the version the notebook registered, its run and metrics.
4. `set_challenger` - moves the `challenger` alias to that version and updates the
   `mlops_challenger` Asset, which starts `mlops_release`.

Trigger it from the UI to change hyperparameters; the form checks them before a run starts.
"""

from __future__ import annotations

import json

import pendulum
from airflow.providers.databricks.operators.databricks import DatabricksNotebookOperator
from airflow.sdk import DAG, Param, task
from mlops.databricks_runs import ReattachingWorkflowTaskGroup
from mlops.notebook_results import DatabricksNotebookResultOperator
from mlops.operators import SetModelAliasOperator

from include.assets import CHALLENGER
from include.config import environment, load_config
from include.dag_helpers import (
    MODEL_TYPES,
    date_to_process,
    hyperparameters_template,
    lineage_template,
    registry_connection,
    xcom,
)
from include.jobs import git_source, notebook_location

CONFIG = load_config()
MODEL = CONFIG["model"]
TUNING = CONFIG["tuning"]
REGISTRY = registry_connection(CONFIG)
DEV = environment(CONFIG, "dev")
# With jobs.git_url, training runs from the same repository and ref as validation and scoring.
GIT_SOURCE = git_source(CONFIG)
DEFAULTS = MODEL["hyperparameters"]

with DAG(
    dag_id="mlops_train",
    doc_md=__doc__,
    schedule=CONFIG.get("training", {}).get("schedule"),
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "mlops",
        "databricks_retry_limit": TUNING["databricks_retry_limit"],
        "retries": 1,
        "retry_delay": pendulum.duration(seconds=30),
    },
    tags=["mlops", "training", "dev"],
    params={
        "model_type": Param(
            DEFAULTS["model_type"],
            type="string",
            enum=list(MODEL_TYPES),
            title="Model type",
            description="The scikit-learn estimator to train.",
        ),
        "alpha": Param(
            DEFAULTS["alpha"],
            type="number",
            minimum=0,
            maximum=10000,
            title="alpha (ridge)",
            description="Regularisation strength of the ridge model.",
        ),
        "max_depth": Param(
            DEFAULTS["max_depth"],
            type="integer",
            minimum=1,
            maximum=32,
            title="max_depth (trees)",
            description="Depth of each tree for random_forest and gradient_boosting.",
        ),
        "n_estimators": Param(
            DEFAULTS["n_estimators"],
            type="integer",
            minimum=1,
            maximum=2000,
            title="n_estimators (trees)",
            description="Number of trees for random_forest and gradient_boosting.",
        ),
        "data_date": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Data date",
            description="Date of the landed data the model is trained on. Empty: a scheduled run's "
            "interval date, else the newest landed date.",
        ),
    },
) as dag:

    @task
    def resolve_training_data(params: dict, dag_run=None, data_interval_start=None) -> dict:
        """The date to train on and its files, fixed (and checked) before any cluster starts."""
        from airflow.providers.databricks.hooks.databricks import DatabricksHook
        from mlops.landed_data import landed_files, newest_partition

        hook = DatabricksHook(DEV["databricks_conn_id"], caller="mlops_train")
        root = DEV["paths"]["landing"]
        date = date_to_process(
            params.get("data_date"),
            dag_run.run_type,
            data_interval_start,
            lambda: newest_partition(hook, root),
        )
        data = landed_files(hook, root, date)
        print(f"Training on {date}: {len(data['files'])} file(s), {data['bytes']} bytes in {data['path']}.")
        return data

    training_data = resolve_training_data()

    with ReattachingWorkflowTaskGroup(
        group_id="train_workflow",
        databricks_conn_id=DEV["databricks_conn_id"],
        job_clusters=[{"job_cluster_key": "training", "new_cluster": DEV["cluster"]}],
        extra_job_params={"git_source": GIT_SOURCE} if GIT_SOURCE else None,
        # Run-level parameters reach every notebook task of the job; the launch renders them (the
        # launch does not render its tasks' own notebook_params: templates belong here).
        notebook_params={
            "hyperparameters": hyperparameters_template(),
            "lineage": lineage_template(),
            # The date's files as listed before the run: prepare_data reads exactly these.
            "landing_path": "{{ ti.xcom_pull(task_ids='resolve_training_data')['path'] }}",
            "landing_files": "{{ ti.xcom_pull(task_ids='resolve_training_data')['files'] | tojson }}",
        },
    ) as train_workflow:
        prepare_data = DatabricksNotebookOperator(
            task_id="prepare_data",
            databricks_task_key="prepare_data",
            databricks_conn_id=DEV["databricks_conn_id"],
            **notebook_location(CONFIG, "prepare_data"),
            job_cluster_key="training",
            notebook_params={
                "curated_path": DEV["paths"]["curated"],
                "quarantine_path": DEV["paths"]["quarantine"],
                "features": ",".join(MODEL["features"]),
                "target": MODEL["target"],
                "ranges": json.dumps(CONFIG["data"]["ranges"]),
                "max_bad_fraction": str(CONFIG["data"]["max_bad_fraction"]),
            },
            polling_period_seconds=TUNING["polling_period_seconds"],
        )
        train_model = DatabricksNotebookOperator(
            task_id="train_model",
            databricks_task_key="train_model",
            databricks_conn_id=DEV["databricks_conn_id"],
            **notebook_location(CONFIG, "train_model"),
            job_cluster_key="training",
            notebook_params={
                "curated_path": DEV["paths"]["curated"],
                "features": ",".join(MODEL["features"]),
                "target": MODEL["target"],
                "model_name": MODEL["dev_model_name"],
                "experiment": f"/Shared/mlops/{MODEL['name']}-training",
                "registry_uri": CONFIG["registry"]["uri"] or "",
                "tracking_uri": CONFIG["registry"]["tracking_uri"] or "",
                "tracking_secret_scope": CONFIG["registry"]["tracking_secret_scope"] or "",
            },
            polling_period_seconds=TUNING["polling_period_seconds"],
        )
        prepare_data >> train_model

    training_result = DatabricksNotebookResultOperator(
        task_id="read_training_result",
        databricks_conn_id=DEV["databricks_conn_id"],
        run_id=xcom("train_workflow.launch", "run_id"),
        task_key="train_model",
    )
    set_challenger = SetModelAliasOperator(
        task_id="set_challenger",
        **REGISTRY,
        model_name=MODEL["dev_model_name"],
        alias=MODEL["challenger_alias"],
        version=xcom("read_training_result", "version"),
        outlets=[CHALLENGER],
    )
    training_data >> train_workflow >> training_result >> set_challenger
