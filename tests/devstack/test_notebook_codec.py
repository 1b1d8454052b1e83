"""One notebook codec for the workspace files service and the driver: a notebook path may not
climb out of where notebooks live, on the workspace road as on the git road."""

from __future__ import annotations

import base64

import pytest
from databricks.sdk.errors import InvalidParameterValue
from databricks.sdk.service.jobs import GitProvider, GitSource, NotebookTask, Source, SubmitTask
from databricks.sdk.service.workspace import ImportFormat, Language

from devstack.workspace.repos.backend import GitSourceCheckouts
from devstack.workspace.runtime.notebook import NotebookNotFound, NotebookRef, load
from tests.devstack.jobs_support import small_cluster

SECRET = "# Databricks notebook source\ndbutils.notebook.exit('read from outside')\n"


def test_dotdot_is_refused_on_the_workspace_road(ws_sdk):
    ws_sdk.workspace.mkdirs("/Shared/codec")
    with pytest.raises(InvalidParameterValue, match=r"\.\."):
        ws_sdk.workspace.import_(
            "/Shared/codec/../escaped",
            content=base64.b64encode(SECRET.encode()).decode(),
            format=ImportFormat.SOURCE,
            language=Language.PYTHON,
        )
    with pytest.raises(InvalidParameterValue, match=r"\.\."):
        ws_sdk.workspace.get_status("/Shared/codec/../codec")


def test_dotdot_is_refused_on_the_git_road(tmp_path, git_project):
    root = GitSourceCheckouts(tmp_path / "git-cache").checkout(
        {"git_url": git_project.url, "git_branch": "main"}
    )
    # A notebook right next to the checkout: only the rule keeps the driver from reading it.
    (root.parent / "outside.py").write_text(SECRET)
    assert load(NotebookRef("GIT", "notebooks/train", str(root)), client=None).cells

    for path in ("../outside", "notebooks/../../outside", ".git/config"):
        with pytest.raises(NotebookNotFound, match=r"inside the git checkout"):
            load(NotebookRef("GIT", path, str(root)), client=None)
    # %run and dbutils.notebook.run targets resolve against the notebook, inside the checkout only.
    train = NotebookRef("GIT", "notebooks/train", str(root))
    assert train.resolve("../notebooks/helpers").path == "notebooks/helpers"
    with pytest.raises(NotebookNotFound, match="outside the git checkout"):
        train.resolve("../../outside")


def test_a_git_source_run_with_dotdot_fails_naming_the_rule(ws_sdk, git_project):
    run = ws_sdk.jobs.submit(
        run_name="codec-dotdot",
        git_source=GitSource(git_url=git_project.url, git_provider=GitProvider.GIT_HUB, git_branch="main"),
        tasks=[
            SubmitTask(
                task_key="escape",
                new_cluster=small_cluster(),
                notebook_task=NotebookTask(notebook_path="notebooks/../../outside", source=Source.GIT),
            )
        ],
    ).result()
    assert run.state.result_state.value == "FAILED", run.state
    output = ws_sdk.jobs.get_run_output(run.tasks[0].run_id)
    assert "inside the git checkout" in (output.error or ""), output
