"""The Databricks provider's operators, unmodified, in real `airflow dags test` runs on the emulator."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.workspace import ImportFormat, Language

from tests.conftest import databricks_conn_uri

HERE = Path(__file__).parent
DAGS = HERE / "provider_dags"
NOTEBOOKS = HERE / "provider_notebooks"
WORKSPACE_DIR = "/Shared/provider-tests"

DAG_IDS = (
    "provider_submit_run",
    "provider_run_now",
    "provider_task_operators",
    "provider_workflow",
    "provider_failing",
)


@pytest.fixture(scope="module")
def imported_notebooks(workspace) -> str:
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
    return WORKSPACE_DIR


@pytest.fixture(scope="module")
def dag_runs(airflow, workspace, imported_notebooks):
    """Run every provider DAG once.

    One after another: concurrent `airflow dags test` processes on one metadata DB were seen to
    race on registering a DAG (a duplicate key on the `dag` table) even with one DAG file each.
    """
    env = {
        "AIRFLOW_CONN_DATABRICKS_DEFAULT": databricks_conn_uri(workspace),
        "PROVIDER_TEST_NOTEBOOKS": imported_notebooks,
    }
    return {dag_id: airflow.dags_test(dag_id, DAGS, env=env) for dag_id in DAG_IDS}


def _assert_succeeded(result, *checked: str) -> None:
    assert result.succeeded, f"{result.dag_id} ended {result.state}:\n{result.output[-6000:]}"
    for line in checked:
        assert line in result.output


def test_submit_run_operator_sync_and_deferrable(dag_runs):
    result = dag_runs["provider_submit_run"]
    _assert_succeeded(result, "notebook result 'hello, sync'", "notebook result 'hi, deferred'")


def test_run_now_operator_by_job_id_and_job_name_with_params(dag_runs):
    result = dag_runs["provider_run_now"]
    _assert_succeeded(result, "notebook result 'hello, by id'", "notebook result 'howdy, by name'")


def test_notebook_and_task_operators(dag_runs):
    result = dag_runs["provider_task_operators"]
    _assert_succeeded(result)
    assert "Task succeeded. Final state SUCCESS." in result.output


def test_workflow_task_group_shares_one_job_cluster(dag_runs):
    result = dag_runs["provider_workflow"]
    _assert_succeeded(result, "task value 42")


def test_failing_notebook_error_reaches_the_airflow_task_log(dag_runs):
    result = dag_runs["provider_failing"]
    assert result.state == "failed", result.output[-4000:]
    assert "the input table dbfs:/landing/empty.csv has no rows" in result.output
