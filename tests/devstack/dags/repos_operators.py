"""The provider's Repos operators, unmodified: create a Git folder at a tag, move it to a branch, delete it.

The git URL and workspace path come from the test (REPOS_TEST_GIT_URL, REPOS_TEST_PATH); the
branch comes from the run's conf, so one DAG can move the checkout anywhere.
"""

from __future__ import annotations

import os

import pendulum
from airflow.providers.databricks.operators.databricks_repos import (
    DatabricksReposCreateOperator,
    DatabricksReposDeleteOperator,
    DatabricksReposUpdateOperator,
)
from airflow.sdk import dag

GIT_URL = os.environ.get("REPOS_TEST_GIT_URL", "https://github.com/example/project.git")
REPO_PATH = os.environ.get("REPOS_TEST_PATH", "/Repos/airflow/project")
DEFAULTS = {"owner": "devstack-tests", "retries": 0}


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1),
    catchup=False,
    default_args=DEFAULTS,
    tags=["test"],
)
def repos_checkout():
    create = DatabricksReposCreateOperator(
        task_id="create_repo",
        git_url=GIT_URL,
        git_provider="gitHub",  # a local path says nothing about its provider
        repo_path=REPO_PATH,
        tag="v1",
        ignore_existing_repo=True,
    )
    update = DatabricksReposUpdateOperator(
        task_id="update_repo",
        repo_path=REPO_PATH,
        branch="{{ dag_run.conf.get('branch', 'main') }}",
    )
    create >> update


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1),
    catchup=False,
    default_args=DEFAULTS,
    tags=["test"],
)
def repos_delete():
    DatabricksReposDeleteOperator(task_id="delete_repo", repo_path=REPO_PATH)


repos_checkout()
repos_delete()
