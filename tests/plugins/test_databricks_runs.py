"""Retries that retry, without duplicates: real DAG runs against an emulated workspace.

* A run that FAILED is replaced by a new run on the retry (the same idempotency token would
  have handed back the failed run).
* A task whose worker is killed while its Databricks run is still going re-attaches on the next
  try: one Databricks run in all.
* The workflow task group's launch, run again for the same DAG run, re-attaches to the workflow
  run already going instead of starting a second.
"""

from __future__ import annotations

import base64
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.workspace import ImportFormat, Language

from tests.conftest import databricks_conn_uri

HERE = Path(__file__).parent
DAGS = HERE / "run_dags"
NOTEBOOKS = HERE / "run_notebooks"
WORKSPACE_DIR = "/Shared/mlops-retry-tests"
CLUSTER = {"spark_version": "15.4.x-scala2.12", "node_type_id": "Standard_DS3_v2", "num_workers": 1}


@pytest.fixture(scope="module")
def client(workspace) -> WorkspaceClient:
    client = WorkspaceClient(host=workspace.url, token=workspace.token)
    client.workspace.mkdirs(WORKSPACE_DIR)
    for source in NOTEBOOKS.glob("*.py"):
        client.workspace.import_(
            f"{WORKSPACE_DIR}/{source.stem}",
            content=base64.b64encode(source.read_bytes()).decode(),
            format=ImportFormat.SOURCE,
            language=Language.PYTHON,
            overwrite=True,
        )
    return client


def _job(client: WorkspaceClient, notebook: str) -> tuple[str, int]:
    name = f"retry-test-{notebook}-{uuid.uuid4().hex[:6]}"
    created = client.api_client.do(
        "POST",
        "/api/2.2/jobs/create",
        body={
            "name": name,
            "max_concurrent_runs": 4,
            "tasks": [
                {
                    "task_key": "main",
                    "new_cluster": CLUSTER,
                    "notebook_task": {"notebook_path": f"{WORKSPACE_DIR}/{notebook}"},
                }
            ],
        },
    )
    return name, created["job_id"]


def _runs(client: WorkspaceClient, job_id: int) -> list:
    return sorted(client.jobs.list_runs(job_id=job_id), key=lambda r: r.run_id)


def _env(workspace, **extra: str) -> dict[str, str]:
    return {
        "AIRFLOW_CONN_DATABRICKS_DEFAULT": databricks_conn_uri(workspace),
        "RETRY_TEST_NOTEBOOKS": WORKSPACE_DIR,
        **extra,
    }


def test_failed_run_is_replaced_by_a_new_run_on_retry(airflow, workspace, client, tmp_path):
    name, job_id = _job(client, "flaky")
    env = _env(workspace, RETRY_TEST_JOB_NAME=name, RETRY_TEST_MARKER_DIR=str(tmp_path))

    result = airflow.dags_test("mlops_retry_job", DAGS, env=env, timeout=300)

    assert result.succeeded, result.output[-6000:]
    runs = _runs(client, job_id)
    assert [r.state.result_state.value for r in runs] == ["FAILED", "SUCCESS"]
    assert runs[0].run_id != runs[1].run_id
    # The notebook's exit value crossed to the next task as a native dict, not as text.
    assert "job result {'answer': 42, 'second_run': True} of type dict" in result.output


def _wait_for(predicate, what: str, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _start_dag_run(airflow, dag_id: str, env: dict[str, str], when: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(HERE / "dag_test_driver.py"), dag_id, when],
        env=airflow.env(DAGS, env),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        cwd=HERE.parent.parent,
        start_new_session=True,
    )


def _kill_then_continue(airflow, dag_id, env, tmp_path, is_running, waiting: str) -> str:
    """Start the DAG run, SIGKILL its process once ``is_running()``, then run it on: the output.

    The notebook ends only when the release file appears, which the test creates once the
    continued run logs ``waiting`` (it has decided: re-attached or started a run).
    """
    # A DAG run of its own (tokens are per DAG run id, and Databricks keeps them workspace-wide).
    when = (
        f"2026-11-21T{random.randrange(24):02d}:{random.randrange(60):02d}:{random.randrange(60):02d}+00:00"
    )
    first = _start_dag_run(airflow, dag_id, env, when, tmp_path / "first.log")
    try:
        _wait_for(is_running, "the Databricks run to be RUNNING")
        time.sleep(2)  # let the task record its run and start waiting
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    second_log = tmp_path / "second.log"
    second = _start_dag_run(airflow, dag_id, env, when, second_log)
    try:
        _wait_for(lambda: waiting in second_log.read_text(), f"{waiting!r} in the continued run's log")
    finally:
        Path(env["RETRY_TEST_RELEASE_FILE"]).touch()
        second.wait(timeout=300)
    return (tmp_path / "first.log").read_text() + "\n----- continued -----\n" + second_log.read_text()


@pytest.mark.parametrize("deferrable", ["1", "0"], ids=["deferrable", "sync"])
def test_retry_after_a_lost_worker_reattaches_to_the_run_still_going(
    airflow, workspace, client, tmp_path, deferrable
):
    """One DAG run: the first try dies while its run is RUNNING; the retry finds the run in the
    task's state store and waits on it instead of starting another."""
    name, job_id = _job(client, "slow")
    env = _env(
        workspace,
        RETRY_TEST_JOB_NAME=name,
        RETRY_TEST_RELEASE_FILE=str(tmp_path / "release"),
        RETRY_TEST_DEFERRABLE=deferrable,
    )

    result = airflow.dags_test("mlops_retry_lost_worker", DAGS, env=env, timeout=300)

    assert result.succeeded, result.output[-6000:]
    assert "worker lost while Databricks run" in result.output
    assert "Re-attaching to Databricks run" in result.output
    runs = _runs(client, job_id)
    assert [r.state.result_state.value for r in runs] == ["SUCCESS"]


@pytest.mark.parametrize("deferrable", ["1", "0"], ids=["deferrable", "sync"])
def test_killed_worker_reattaches_to_the_run_still_going(airflow, workspace, client, tmp_path, deferrable):
    name, job_id = _job(client, "slow")
    env = _env(
        workspace,
        RETRY_TEST_JOB_NAME=name,
        RETRY_TEST_RELEASE_FILE=str(tmp_path / "release"),
        RETRY_TEST_DEFERRABLE=deferrable,
    )

    def running():
        return any(r.state.life_cycle_state.value == "RUNNING" for r in _runs(client, job_id))

    output = _kill_then_continue(
        airflow, "mlops_retry_job", env, tmp_path, running, "Waiting for Databricks run"
    )

    runs = _runs(client, job_id)
    assert len(runs) == 1, output[-6000:]
    assert runs[0].state.result_state.value == "SUCCESS"
    assert "state=success" in output.split("----- continued -----")[1], output[-6000:]


def test_workflow_launch_reattaches_instead_of_starting_a_second_run(airflow, workspace, client, tmp_path):
    env = _env(workspace, RETRY_TEST_RELEASE_FILE=str(tmp_path / "release"))
    job_name = "mlops_retry_workflow.workflow"

    def running():
        jobs = list(client.jobs.list(name=job_name))
        return jobs and any(
            r.state.life_cycle_state.value == "RUNNING" for r in _runs(client, jobs[0].job_id)
        )

    before = {j.job_id: len(_runs(client, j.job_id)) for j in client.jobs.list(name=job_name)}
    output = _kill_then_continue(
        airflow, "mlops_retry_workflow", env, tmp_path, running, "starting task_id=workflow.slow"
    )

    (job,) = list(client.jobs.list(name=job_name))
    new_runs = _runs(client, job.job_id)[before.get(job.job_id, 0) :]
    assert len(new_runs) == 1, "; ".join(
        f"{r.run_id}: {r.state.result_state} {r.state.state_message}" for r in new_runs
    )
    assert new_runs[0].state.result_state.value == "SUCCESS"
    assert "Re-attaching to workflow run" in output
