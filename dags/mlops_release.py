"""## mlops_release

Releases a candidate to production, the way a release pipeline would, with the registry as the
single source of truth:

1. `resolve_candidate` - the version to release: the form's `version`, else the dev model's
   `challenger` alias (set by `mlops_train`, whose Asset starts this DAG).
2. `deploy_*_job` - creates or resets the validation job on **staging** and the scoring job on
   **prod** from `include/jobs/`, so the jobs always match this code.
3. `validate_candidate` - the candidate AND the current champion scored on the same held-out
   data on staging; the notebook's metrics come back as native XComs (one per key) for the gate.
   A retry after a FAILED run starts a new run; after a lost worker it re-attaches.
4. `validation_gate` - compares them with the rules of `include/config` (or the form's). A
   candidate that loses ends the run here, skipped and clearly logged; the pipeline does not fail.
5. `approve_release` (only when `require_approval`) - one of the approvers of include/config
   approves or rejects in the Airflow UI; the answer, who and when are tagged on the version
   (`approve_release=approved`, as Databricks deployment jobs read it). A rejection ends the run
   with the champion unchanged. With `separation_of_duties`, whoever triggered the candidate's
   training may not approve.
6. `promote` - copies the version into the prod model and moves `champion` to it, recording the
   previous champion for `mlops_rollback`; updates the `mlops_champion` Asset.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param, task
from mlops.approval import ReleaseApprovalOperator
from mlops.databricks_runs import DatabricksJobResultOperator
from mlops.gate import parse_rules
from mlops.jobs import DatabricksDeployJobOperator
from mlops.operators import ModelValidationGateOperator, PromoteModelVersionOperator

from include.assets import CHALLENGER, CHAMPION
from include.config import environment, load_config
from include.dag_helpers import MACROS, registry_connection, xcom
from include.jobs import render_job

CONFIG = load_config()
MODEL = CONFIG["model"]
TUNING = CONFIG["tuning"]
REGISTRY = registry_connection(CONFIG)
STAGING = environment(CONFIG, "staging")
PROD = environment(CONFIG, "prod")
APPROVAL = PROD["approval"]
_, VALIDATION_JOB = render_job("validate_model", CONFIG)
_, SCORING_JOB = render_job("batch_score", CONFIG)
GATE_RULES = CONFIG["gate"]["rules"]
parse_rules(GATE_RULES)  # a bad rule in the config fails here, when the DAG is parsed

with DAG(
    dag_id="mlops_release",
    doc_md=__doc__,
    schedule=[CHALLENGER],
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "mlops", "retries": 1, "retry_delay": pendulum.duration(seconds=30)},
    tags=["mlops", "release", "staging", "prod"],
    user_defined_macros=MACROS,
    params={
        "version": Param(
            None,
            type=["null", "string"],
            pattern=r"^[0-9]+$",
            title="Candidate version",
            description=f"Version of {MODEL['dev_model_name']} to release. Empty: the "
            f"'{MODEL['challenger_alias']}' alias.",
        ),
        "require_approval": Param(
            CONFIG["gate"]["require_approval"],
            type="boolean",
            title="Require approval",
            description="Wait for a person to approve in the Airflow UI before promoting.",
        ),
        "gate_rules": Param(
            None,
            type=["null", "object"],
            title="Gate rules override",
            description='Replaces the configured rules for this run, e.g. {"rmse": {"max": 60}}.',
        ),
        "reason": Param(
            "",
            type="string",
            maxLength=500,
            title="Reason",
            description="Recorded in the promotion history.",
        ),
    },
) as dag:

    @task
    def resolve_candidate(params: dict) -> str:
        """The version to release: the form's, else the challenger alias of the dev model."""
        from mlops.hooks import MlflowRegistryHook

        hook = MlflowRegistryHook(**REGISTRY)
        if params.get("version"):
            return str(hook.get_model_version(MODEL["dev_model_name"], params["version"]).version)
        return str(
            hook.get_model_version_by_alias(MODEL["dev_model_name"], MODEL["challenger_alias"]).version
        )

    candidate = resolve_candidate()

    deploy_validation_job = DatabricksDeployJobOperator(
        task_id="deploy_validation_job", databricks_conn_id=STAGING["databricks_conn_id"], json=VALIDATION_JOB
    )
    deploy_scoring_job = DatabricksDeployJobOperator(
        task_id="deploy_scoring_job", databricks_conn_id=PROD["databricks_conn_id"], json=SCORING_JOB
    )
    validate_candidate = DatabricksJobResultOperator(
        task_id="validate_candidate",
        databricks_conn_id=STAGING["databricks_conn_id"],
        job_id=xcom("deploy_validation_job"),
        notebook_params={"candidate_version": xcom("resolve_candidate")},
        task_key="validate_model",
        # The notebook's result, and each of its keys as an XCom of its own (read by the gate).
        multiple_outputs=True,
        # Long waits free the worker slot; how often to poll comes from include/config.
        deferrable=TUNING["deferrable"],
        polling_period_seconds=TUNING["polling_period_seconds"],
    )
    gate = ModelValidationGateOperator(
        task_id="validation_gate",
        **REGISTRY,
        model_name=MODEL["dev_model_name"],
        candidate_version=xcom("resolve_candidate"),
        champion_model_name=MODEL["prod_model_name"],
        champion_alias=MODEL["champion_alias"],
        rules="{{ (params.gate_rules or " + repr(GATE_RULES) + ") | tojson }}",
        candidate_metrics=validate_candidate.output["candidate_metrics"],
        champion_metrics=validate_candidate.output["champion_metrics"],
        on_fail="skip",
    )

    @task.branch
    def approval_needed(params: dict) -> str:
        return "approve_release" if params["require_approval"] else "promote"

    # The answer is recorded on the candidate version as Databricks deployment jobs record it:
    # tag approve_release=approved|rejected, plus who and when. A rejection skips promote.
    approve_release = ReleaseApprovalOperator(
        task_id="approve_release",
        **REGISTRY,
        model_name=MODEL["dev_model_name"],
        version=xcom("resolve_candidate"),
        approvers=APPROVAL["approvers"],
        separation_of_duties=APPROVAL["separation_of_duties"],
        subject="Release {{ params.version or 'the challenger' }} of " + MODEL["name"] + " to production?",
        body=(
            "Candidate version {{ ti.xcom_pull(task_ids='resolve_candidate') }} of "
            + MODEL["dev_model_name"]
            + " passed the validation gate.\n\nCandidate: {{ ti.xcom_pull(task_ids='validation_gate')"
            "['candidate_metrics'] }}\n\nChampion: {{ ti.xcom_pull(task_ids='validation_gate')"
            "['champion_metrics'] }}"
        ),
        # A plain timedelta: the task runner sends this timeout to its supervisor with msgpack,
        # which refuses pendulum's Duration (the task then never awaits input).
        response_timeout=timedelta(hours=APPROVAL["response_timeout_hours"]),
    )
    promote = PromoteModelVersionOperator(
        task_id="promote",
        trigger_rule="none_failed_min_one_success",
        **REGISTRY,
        model_name=MODEL["dev_model_name"],
        version=xcom("resolve_candidate"),
        alias=MODEL["champion_alias"],
        target_model_name=MODEL["prod_model_name"],
        reason="{{ params.reason or 'passed the validation gate' }} (DAG run {{ run_id }})",
        outlets=[CHAMPION],
    )

    branch = approval_needed()
    candidate >> deploy_validation_job >> validate_candidate >> gate >> branch
    deploy_scoring_job >> validate_candidate
    branch >> [approve_release, promote]
    approve_release >> promote
