"""Databricks job runs that retry, re-attach, and hand back their notebook's result.

Two faults of the provider's operators as the lifecycle used them, fixed here:

* A fixed idempotency token (DAG run + task) makes Databricks hand a retry the SAME failed run,
  so ``retries`` never re-runs anything. :class:`DatabricksJobResultOperator` keeps, in the
  task's ``task_state_store`` (it outlives tries and clears), the run id and an attempt counter
  that is part of the token. A try whose previous run is still going re-attaches to it (the
  worker died, the run did not), and so does a try whose previous run SUCCEEDED after its
  worker was lost (the result was never handed back); a try whose previous run failed, or
  succeeded and was handed back before a person cleared the task, advances the counter and so
  starts a new run.
* The workflow task group's launch calls ``run-now`` without a token, so a retried launch starts
  a second workflow run. :class:`ReattachingWorkflowTaskGroup` marks every launch with a
  notebook parameter naming the DAG run, and a retried launch re-attaches to an active run of
  the job that carries this DAG run's marker instead of starting another.

Why not only the provider's durable execution (``ResumableJobMixin``, Airflow 3.3)? It covers the
synchronous path only (not ``deferrable``), it resubmits a failed run with the operator's token
(Databricks then answers with the failed run again), and it reuses a succeeded run when a person
clears the task to re-run it. Its idea - the run id in ``task_state_store`` - is kept here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.databricks.hooks.databricks import RunState
from airflow.providers.databricks.operators.databricks import DatabricksRunNowOperator
from airflow.providers.databricks.operators.databricks_workflow import (
    DatabricksWorkflowTaskGroup,
    _CreateDatabricksWorkflowOperator,
)
from airflow.sdk.exceptions import AirflowException, AirflowFailException

if TYPE_CHECKING:
    from airflow.providers.databricks.hooks.databricks import DatabricksHook
    from airflow.sdk import Context

#: task_state_store key of :class:`DatabricksJobResultOperator`:
#: {"attempt": n, "run_id": id | None, "done": true once a try handed back that run's result}.
RUN_STATE_KEY = "mlops_databricks_run"
#: The notebook parameter a :class:`ReattachingWorkflowTaskGroup` launch carries (this DAG run).
WORKFLOW_MARKER_PARAM = "airflow_run_marker"
# A try that finds its token's run already ended advances the token at most this often.
_MAX_TOKEN_ADVANCES = 5


def idempotency_token(dag_id: str, run_id: str, task_id: str, attempt: int = 0, map_index: int = -1) -> str:
    """A Databricks idempotency token (at most 64 characters) for one attempt of one task of one DAG run.

    The same attempt always gets the same token, so a request re-sent after a lost response
    finds the run already started instead of starting another; a new attempt gets a new token.
    """
    key = f"{dag_id}\x1f{run_id}\x1f{task_id}"
    if map_index >= 0:
        key += f"\x1fmap{map_index}"
    if attempt:
        key += f"\x1fattempt{attempt}"
    return f"airflow-{hashlib.sha256(key.encode()).hexdigest()[:56]}"


def read_notebook_result(
    hook: DatabricksHook, run_id: int, task_key: str | None = None, *, parse_json: bool = True
) -> Any:
    """The exit value (``dbutils.notebook.exit``) of notebook task ``task_key`` of run ``run_id``.

    Multi-task runs answer ``runs/get-output`` only for task runs, so the task run is found by
    ``task_key`` (or is the only task of the run); when Databricks retried the task, the latest
    attempt wins. Parsed as JSON unless ``parse_json`` is false.
    """
    run = hook.get_run(run_id)
    tasks = run.get("tasks") or []
    if task_key:
        matching = sorted(
            (t for t in tasks if t.get("task_key") == task_key), key=lambda t: t.get("attempt_number", 0)
        )
        if not matching:
            keys = sorted({t.get("task_key") for t in tasks})
            raise AirflowFailException(
                f"Run {run_id} has no task {task_key!r}; its tasks are {keys} ({run.get('run_page_url')})."
            )
        task = matching[-1]
    elif len(tasks) == 1:
        task = tasks[0]
    else:
        keys = sorted(t.get("task_key") for t in tasks)
        raise AirflowFailException(f"Run {run_id} has tasks {keys}: name one with task_key.")
    state = task.get("state", {})
    if state.get("result_state") != "SUCCESS":
        raise AirflowFailException(
            f"Task {task.get('task_key')!r} of run {run_id} ended {state.get('life_cycle_state')}/"
            f"{state.get('result_state')}: {state.get('state_message')} ({task.get('run_page_url')})"
        )
    notebook = hook.get_run_output(task["run_id"]).get("notebook_output") or {}
    if notebook.get("truncated"):
        raise AirflowFailException(
            f"The exit value of task {task.get('task_key')!r} (run {task['run_id']}) was truncated by "
            "Databricks: hand back a path to larger results instead of the results themselves."
        )
    result = notebook.get("result")
    if not parse_json:
        return result
    if result is None:
        raise AirflowFailException(
            f"Task {task.get('task_key')!r} of run {run_id} exited without a value: the notebook must end "
            "with dbutils.notebook.exit(json.dumps(...))."
        )
    try:
        return json.loads(result)
    except json.JSONDecodeError as exc:
        raise AirflowFailException(
            f"Task {task.get('task_key')!r} of run {run_id} exited with non-JSON {result[:200]!r}: {exc}"
        ) from None


def _is_active(run: dict[str, Any] | None) -> bool:
    return run is not None and not RunState(**run["state"]).is_terminal


def _succeeded(run: dict[str, Any] | None) -> bool:
    return run is not None and RunState(**run["state"]).is_successful


class DatabricksJobResultOperator(DatabricksRunNowOperator):
    """
    Run a Databricks job (``run-now``) and return its notebook's exit value, retry-safe.

    Every argument of :class:`DatabricksRunNowOperator` applies, except ``idempotency_token``:
    the operator derives it from the DAG run, the task and an attempt counter kept in the
    task's ``task_state_store``:

    * previous run still going (the worker died, the run did not): re-attach, submit nothing;
    * previous run succeeded but no try handed its result back (the worker died while it ran):
      re-attach, read its result, submit nothing;
    * previous run failed or was cancelled, or succeeded and its result was handed back (a person
      cleared the task to run it again): a new token, so a new run;
    * a try that died between submitting and recording its run: the same token again, so
      Databricks answers with that run; re-attached when going or succeeded, replaced when it
      failed.

    Works deferred (the triggerer waits) and synchronously.

    :param task_key: the notebook task of the job whose exit value is returned (optional when
        the job has one task). ``None`` return when ``return_result`` is false.
    :param return_result: read and return the notebook's exit value (parsed JSON).
    """

    template_fields: Sequence[str] = tuple(
        f for f in DatabricksRunNowOperator.template_fields if f != "idempotency_token"
    ) + ("task_key",)

    def __init__(self, *, task_key: str | None = None, return_result: bool = True, **kwargs: Any) -> None:
        if kwargs.get("idempotency_token"):
            raise ValueError(
                f"{type(self).__name__} derives idempotency_token itself (per DAG run, task and attempt): "
                "remove the argument."
            )
        # The provider's durable execution is replaced by the attempt logic below (see module doc).
        kwargs.setdefault("durable", False)
        super().__init__(**kwargs)
        self.task_key = task_key
        self.return_result = return_result

    # ------------------------------------------------------------------ submit or re-attach

    def _get_run_or_none(self, run_id: int) -> dict[str, Any] | None:
        from airflow.providers.databricks.exceptions import DatabricksApiError

        try:
            return self._hook.get_run(run_id)
        except DatabricksApiError as exc:
            if exc.http_status_code == 404:  # the run's history expired or was deleted
                return None
            raise

    def _token(self, context: Context, attempt: int) -> str:
        ti = context["ti"]
        return idempotency_token(ti.dag_id, ti.run_id, ti.task_id, attempt, getattr(ti, "map_index", -1))

    def _start_or_reattach(self, context: Context) -> int:
        store = context.get("task_state_store")
        if store is None:
            # Airflow < 3.3: no state between tries; the try number keeps retries apart.
            self.log.warning("No task_state_store: a retry after a lost worker will start a new run.")
            self.idempotency_token = self._token(context, context["ti"].try_number - 1)
            return self._hook.run_now(self._prepare_run_now_json(context))

        state = dict(store.get(RUN_STATE_KEY) or {})
        attempt = int(state.get("attempt", 0))
        pending = "attempt" in state and state.get("run_id") is None
        if state.get("run_id") is not None:
            previous = self._get_run_or_none(state["run_id"])
            if _is_active(previous):
                self.log.info(
                    "Re-attaching to Databricks run %s (still %s), started by an earlier try.",
                    state["run_id"],
                    previous["state"]["life_cycle_state"],
                )
                return int(state["run_id"])
            if _succeeded(previous) and not state.get("done"):
                # The worker was lost while the run went on to succeed: its result is this task's.
                self.log.info(
                    "Re-attaching to Databricks run %s, started by an earlier try: it succeeded after that "
                    "try was lost, so its result is read, not run again.",
                    state["run_id"],
                )
                return int(state["run_id"])
            self.log.info(
                "The earlier try's Databricks run %s has ended (%s%s): starting a new run.",
                state["run_id"],
                (previous or {}).get("state", {}).get("result_state", "gone"),
                ", its result already handed back" if state.get("done") else "",
            )
            attempt += 1

        for _ in range(_MAX_TOKEN_ADVANCES):
            # Recorded BEFORE submitting: a try that dies right after run-now leaves this attempt
            # behind, and the next try asks with the same token (Databricks answers with that run).
            store.set(RUN_STATE_KEY, {"attempt": attempt, "run_id": None})
            self.idempotency_token = self._token(context, attempt)
            run_id = self._hook.run_now(self._prepare_run_now_json(context))
            if pending and not _is_active(run := self._get_run_or_none(run_id)) and not _succeeded(run):
                # An earlier try submitted this token's run and died before recording it; it failed.
                self.log.info("Run %s of an earlier try has failed: starting a new run.", run_id)
                attempt += 1
                pending = False
                continue
            store.set(RUN_STATE_KEY, {"attempt": attempt, "run_id": run_id})
            if pending:
                self.log.info("Re-attaching to Databricks run %s, started by an earlier try.", run_id)
            return run_id
        raise AirflowException(f"Could not start a new run after {_MAX_TOKEN_ADVANCES} attempts.")

    # ------------------------------------------------------------------ wait, then read the result

    def execute(self, context: Context) -> Any:
        from airflow.providers.databricks.operators.databricks import (
            XCOM_RUN_ID_KEY,
            XCOM_RUN_PAGE_URL_KEY,
            _handle_databricks_operator_execution,
        )
        from airflow.providers.databricks.triggers.databricks import DatabricksExecutionTrigger

        self.run_id = self._start_or_reattach(context)
        self.log.info("Waiting for Databricks run %s to end.", self.run_id)
        if not self.deferrable:
            _handle_databricks_operator_execution(self, self._hook, self.log, context)
            return self._result(self.run_id, context)

        run_page_url = self._hook.get_run_page_url(self.run_id)
        if self.do_xcom_push:
            context["ti"].xcom_push(key=XCOM_RUN_ID_KEY, value=self.run_id)
            context["ti"].xcom_push(key=XCOM_RUN_PAGE_URL_KEY, value=run_page_url)
        self.log.info("Databricks run %s: %s", self.run_id, run_page_url)
        run = self._hook.get_run(self.run_id)
        state = RunState(**run["state"])
        if state.is_terminal:
            return self.execute_complete(
                context,
                {
                    "run_id": self.run_id,
                    "run_page_url": run_page_url,
                    "run_state": state.to_json(),
                    "repair_run": False,
                    "errors": [],
                },
            )
        self.defer(
            trigger=DatabricksExecutionTrigger(
                run_id=self.run_id,
                databricks_conn_id=self.databricks_conn_id,
                polling_period_seconds=self.polling_period_seconds,
                retry_limit=self.databricks_retry_limit,
                retry_delay=self.databricks_retry_delay,
                retry_args=self.databricks_retry_args,
                run_page_url=run_page_url,
                repair_run=False,
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Context | None, event: dict) -> Any:
        from airflow.providers.databricks.operators.databricks import (
            _handle_deferrable_databricks_operator_completion,
        )

        state = RunState.from_json(event["run_state"])
        if not state.is_successful and not event.get("errors"):
            event = {**event, "errors": []}
        _handle_deferrable_databricks_operator_completion(event, self.log)
        return self._result(int(event["run_id"]), context)

    def _result(self, run_id: int, context: Context | None) -> Any:
        result = None
        if self.return_result:
            result = read_notebook_result(self._hook, run_id, self.task_key)
            self.log.info("Notebook %s of run %s returned: %s", self.task_key or "", run_id, result)
        # Handed back: a later try of this task (a person cleared it) runs the job again.
        store = (context or {}).get("task_state_store")
        if store is not None and (state := store.get(RUN_STATE_KEY)) and state.get("run_id") == run_id:
            store.set(RUN_STATE_KEY, {**state, "done": True})
        return result


# ---------------------------------------------------------------------- workflow task group launch


class ReattachingWorkflowLaunch(_CreateDatabricksWorkflowOperator):
    """Launch of a :class:`ReattachingWorkflowTaskGroup`: no second workflow run for one DAG run."""

    def execute(self, context: Context) -> Any:
        from airflow.providers.databricks.operators.databricks_workflow import WorkflowRunMetadata
        from airflow.providers.databricks.plugins.databricks_workflow import store_databricks_job_run_link

        ti = context["ti"]
        marker = idempotency_token(ti.dag_id, ti.run_id, self.task_group.group_id)
        self.notebook_params = {**self.notebook_params, WORKFLOW_MARKER_PARAM: marker}
        active = self._active_run_with_marker(marker)
        if active is None:
            return super().execute(context)
        job_id, run_id = active
        self.log.info(
            "Re-attaching to workflow run %s of job %s, launched by an earlier try of this DAG run.",
            run_id,
            job_id,
        )
        self.workflow_run_metadata = WorkflowRunMetadata(self.databricks_conn_id, job_id, run_id)
        store_databricks_job_run_link(context=context, metadata=self.workflow_run_metadata, logger=self.log)
        return {"conn_id": self.databricks_conn_id, "job_id": job_id, "run_id": run_id}

    def _active_run_with_marker(self, marker: str) -> tuple[int, int] | None:
        jobs = self._hook.list_jobs(job_name=self.job_name)
        if not jobs:
            return None
        job_id = jobs[0]["job_id"]
        # runs/list leaves out a run's parameters: read each active run (few: one per DAG run).
        page = self._hook._do_api_call(
            ("GET", "2.2/jobs/runs/list"), {"job_id": job_id, "active_only": True, "limit": 25}
        )
        active = page.get("runs", [])
        for summary in active:
            run = self._hook.get_run(summary["run_id"])
            params = (run.get("overriding_parameters") or {}).get("notebook_params") or {}
            if params.get(WORKFLOW_MARKER_PARAM) == marker and _is_active(run):
                return job_id, run["run_id"]
        self.log.info(
            "None of the %s active run(s) of job %s was launched for this DAG run: launching one.",
            len(active),
            job_id,
        )
        return None


class ReattachingWorkflowTaskGroup(DatabricksWorkflowTaskGroup):
    """
    A :class:`DatabricksWorkflowTaskGroup` whose launch starts no second workflow run on a retry.

    The provider's launch calls ``run-now`` without an idempotency token. This group's launch
    adds the notebook parameter ``airflow_run_marker`` (a hash of DAG id, DAG run id and group)
    to the run, and a retried or cleared launch first looks for an ACTIVE run of the group's
    job carrying this DAG run's marker: found, it re-attaches (returns that run, the group's
    notebook tasks follow it); not found (none, or it ended), it launches a new run.
    """

    def __exit__(self, exc_type, exc, tb) -> None:
        from airflow.providers.databricks.operators import databricks_workflow

        # The provider builds the launch inside __exit__ from its module global: swap in ours
        # for that moment (parsing is single-threaded).
        original = databricks_workflow._CreateDatabricksWorkflowOperator
        databricks_workflow._CreateDatabricksWorkflowOperator = ReattachingWorkflowLaunch
        try:
            return super().__exit__(exc_type, exc, tb)
        finally:
            databricks_workflow._CreateDatabricksWorkflowOperator = original
