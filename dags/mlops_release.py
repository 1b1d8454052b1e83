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

### With a serving endpoint (`environments.prod.serving`, Unity Catalog registry)

The prod workspace's Model Serving endpoint follows the champion. After the gate (and the
approval) the steps are:

1. `copy_to_prod` - the version is copied into the prod model; **the alias does not move yet**.
2. `plan_serving` - fixed once: the previous champion and the route. `start_canary` adds the
   candidate beside the serving champion with the configured share of traffic; on the first
   release (no endpoint or no champion yet) `deploy_candidate` creates the endpoint on the
   candidate directly.
3. `smoke_check` - the validation run's holdout rows go to the candidate's served entity alone:
   its answers must equal the validation run's predictions, with error rate and p99 latency
   within the configured bounds.
4. `promote_endpoint` - the candidate gets 100 % of the traffic.
5. `promote` - `champion` moves to the candidate, **last**.
6. If any of 2-5 fails, `revert_endpoint` puts the endpoint back on the previous champion alone,
   and `release_outcome` ends the run as a blocked gate does: skipped, with the reason logged,
   champion unchanged. A failure it cannot repair fails the run.

Why this order: the alias is the registry's promise and batch scoring reads it; the endpoint is
what online clients get. Moving the endpoint first and the alias only when the endpoint serves
the candidate well, and putting the endpoint back when anything before the alias move fails,
means that when a run ends the champion alias and the endpoint name the same version. The
other order would leave a champion that nothing serves whenever the endpoint update failed.
The self-hosted MLflow road has no Unity Catalog names, so there the release moves the alias
only (no serving tasks).
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
from mlops.release import CopyModelVersionOperator
from mlops.serving import (
    PromoteServingCanaryOperator,
    RevertServingCanaryOperator,
    ServingEndpointOperator,
    ServingSmokeCheckOperator,
    StartServingCanaryOperator,
)

from include.assets import CHALLENGER, CHAMPION
from include.config import environment, load_config
from include.dag_helpers import MACROS, registry_connection, xcom
from include.jobs import render_job
from include.serving_config import endpoint_operator_kwargs, serving_settings

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
# None: no endpoint to move (no serving block, or a registry without Unity Catalog names).
SERVING = serving_settings(CONFIG)
parse_rules(GATE_RULES)  # a bad rule in the config fails here, when the DAG is parsed

with DAG(
    dag_id="mlops_release",
    doc_md=__doc__,
    schedule=[CHALLENGER],
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "mlops",
        "databricks_retry_limit": TUNING["databricks_retry_limit"],
        "retries": 1,
        "retry_delay": pendulum.duration(seconds=30),
    },
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
        notebook_params={
            "candidate_version": xcom("resolve_candidate"),
            # Holdout rows and the candidate's predictions on them, for the serving smoke check.
            "smoke_rows": str(SERVING["smoke_rows"] if SERVING else 0),
        },
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

    AFTER_APPROVAL = "copy_to_prod" if SERVING else "promote"

    @task.branch
    def approval_needed(params: dict) -> str:
        return "approve_release" if params["require_approval"] else AFTER_APPROVAL

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
        # After approval or straight from the gate; with serving, only once the endpoint serves it.
        trigger_rule="all_success" if SERVING else "none_failed_min_one_success",
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
    if SERVING is None:
        branch >> [approve_release, promote]
        approve_release >> promote
    else:
        endpoint = endpoint_operator_kwargs(CONFIG, SERVING)
        copy_to_prod = CopyModelVersionOperator(
            task_id="copy_to_prod",
            trigger_rule="none_failed_min_one_success",
            **REGISTRY,
            model_name=MODEL["dev_model_name"],
            version=xcom("resolve_candidate"),
            target_model_name=MODEL["prod_model_name"],
        )

        @task
        def plan_serving(prod_version: str) -> dict:
            """Fixed once, before the endpoint moves: the route and the champion to go back to."""
            from mlops.hooks import MlflowRegistryHook
            from mlops.release import plan_release_serving
            from mlops.serving import ServingEndpointHook

            return plan_release_serving(
                MlflowRegistryHook(**REGISTRY),
                ServingEndpointHook(PROD["databricks_conn_id"]),
                endpoint_name=SERVING["endpoint_name"],
                model_name=SERVING["model_name"],
                alias=MODEL["champion_alias"],
                candidate=prod_version,
            )

        plan = plan_serving(copy_to_prod.output)

        @task.branch
        def serving_route(plan: dict) -> str:
            return plan["route"]

        start_canary = StartServingCanaryOperator(
            task_id="start_canary",
            **endpoint,
            candidate_version=plan["candidate"],
            traffic_percentage=SERVING["traffic_percentage"],
        )
        deploy_candidate = ServingEndpointOperator(
            task_id="deploy_candidate",
            **endpoint,
            version=plan["candidate"],
            workload_size=SERVING["workload_size"],
            scale_to_zero_enabled=SERVING["scale_to_zero_enabled"],
        )
        smoke_check = ServingSmokeCheckOperator(
            task_id="smoke_check",
            trigger_rule="none_failed_min_one_success",
            databricks_conn_id=PROD["databricks_conn_id"],
            endpoint_name=SERVING["endpoint_name"],
            served_entity=plan["candidate_served_entity"],
            rows=validate_candidate.output["smoke_rows"],
            expected_predictions=validate_candidate.output["smoke_predictions"],
            max_error_rate=SERVING["max_error_rate"],
            max_p99_ms=SERVING["max_p99_ms"],
        )
        promote_endpoint = PromoteServingCanaryOperator(
            task_id="promote_endpoint", **endpoint, version=plan["candidate"]
        )

        @task.short_circuit(trigger_rule="one_failed", ignore_downstream_trigger_rules=False)
        def champion_to_return_to(plan: dict | None) -> bool:
            """Something failed before the alias moved: is there a champion to put back?"""
            if plan and plan.get("previous_champion"):
                return True
            print("No champion existed before this release: there is no version to put the endpoint back on.")
            return False

        revert_endpoint = RevertServingCanaryOperator(
            task_id="revert_endpoint", **endpoint, version=plan["previous_champion"]
        )
        guarded = [start_canary, deploy_candidate, smoke_check, promote_endpoint, promote]

        @task(trigger_rule="all_done")
        def release_outcome(plan: dict | None, **context) -> str:
            """End as a blocked gate does when the endpoint went back; fail on anything else."""
            from mlops.release import release_verdict

            ti, run_id = context["ti"], context["run_id"]
            states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[run_id]).get(run_id, {})
            states.pop(ti.task_id, None)
            verdict = release_verdict(
                states,
                promoted_task=promote.task_id,
                revert_task=revert_endpoint.task_id,
                guarded_tasks=[t.task_id for t in guarded],
                candidate=(plan or {}).get("candidate"),
                previous_champion=(plan or {}).get("previous_champion"),
                endpoint_name=SERVING["endpoint_name"],
                model_name=MODEL["prod_model_name"],
            )
            print(verdict)
            return verdict

        route = serving_route(plan)
        branch >> [approve_release, copy_to_prod]
        approve_release >> copy_to_prod
        route >> [start_canary, deploy_candidate] >> smoke_check >> promote_endpoint >> promote
        guarded >> champion_to_return_to(plan) >> revert_endpoint
        [promote, revert_endpoint] >> release_outcome(plan)
