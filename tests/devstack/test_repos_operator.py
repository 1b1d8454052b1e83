"""The provider's Repos operators, unmodified, in real `airflow dags test` runs on the emulator."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from databricks.sdk.errors import NotFound

from tests.conftest import databricks_conn_uri

DAGS = Path(__file__).parent / "dags"
REPO_PATH = "/Repos/airflow/operator-project"


def test_repos_operators_create_update_and_delete_a_git_folder(airflow, workspace, ws_sdk, git_project):
    env = {
        "AIRFLOW_CONN_DATABRICKS_DEFAULT": databricks_conn_uri(workspace),
        "REPOS_TEST_GIT_URL": str(git_project.path),
        "REPOS_TEST_PATH": REPO_PATH,
    }

    result = airflow.dags_test("repos_checkout", DAGS, conf={"branch": "feature"}, env=env)
    assert result.succeeded, f"repos_checkout ended {result.state}:\n{result.output[-6000:]}"
    repo_id = ws_sdk.workspace.get_status(REPO_PATH).object_id
    repo = ws_sdk.repos.get(repo_id)
    assert (repo.branch, repo.head_commit_id) == ("feature", git_project.commits["feature"])
    source = base64.b64decode(ws_sdk.workspace.export(f"{REPO_PATH}/notebooks/train").content).decode()
    assert "VERSION = 'feature'" in source

    result = airflow.dags_test("repos_delete", DAGS, env=env)
    assert result.succeeded, f"repos_delete ended {result.state}:\n{result.output[-6000:]}"
    with pytest.raises(NotFound):
        ws_sdk.repos.get(repo_id)
    with pytest.raises(NotFound):
        ws_sdk.workspace.get_status(REPO_PATH)
