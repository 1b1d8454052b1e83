"""A condition task and a for-each task in a DatabricksWorkflowTaskGroup (the provider's
DatabricksTaskOperator with ``task_config``), in a real `airflow dags test` run on the emulator."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.workspace import ImportFormat, Language

from tests.conftest import databricks_conn_uri

HERE = Path(__file__).parent
NOTEBOOKS = HERE / "provider_notebooks"
WORKSPACE_DIR = "/Shared/provider-control-flow"


@pytest.fixture(scope="module")
def imported_notebooks(workspace) -> str:
    client = WorkspaceClient(host=workspace.url, token=workspace.token)
    client.workspace.mkdirs(WORKSPACE_DIR)
    for name in ("produce", "greet"):
        client.workspace.import_(
            f"{WORKSPACE_DIR}/{name}",
            content=base64.b64encode((NOTEBOOKS / f"{name}.py").read_bytes()).decode(),
            format=ImportFormat.SOURCE,
            language=Language.PYTHON,
            overwrite=True,
        )
    return WORKSPACE_DIR


def test_condition_and_for_each_tasks_in_a_workflow_task_group(airflow, workspace, imported_notebooks):
    env = {
        "AIRFLOW_CONN_DATABRICKS_DEFAULT": databricks_conn_uri(workspace),
        "PROVIDER_TEST_NOTEBOOKS": imported_notebooks,
    }
    result = airflow.dags_test("provider_control_flow", HERE / "provider_dags", env=env)
    assert result.succeeded, f"{result.dag_id} ended {result.state}:\n{result.output[-6000:]}"
    assert "CHECKED control flow run" in result.output
    assert "iterations ['hello, east', 'hello, north', 'hello, west']" in result.output
