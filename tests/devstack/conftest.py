"""Fixtures of the devstack tests."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient

# --------------------------------------------------------------------------- workspace objects, repos


@pytest.fixture
def ws_sdk(workspace) -> WorkspaceClient:
    """databricks-sdk's client pointed at the session's emulated workspace."""
    return WorkspaceClient(host=workspace.url, token=workspace.token)


def git(cwd: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=Dev Stack", "-c", "user.email=devstack@example.com", *args]
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


NOTEBOOK = "# Databricks notebook source\nVERSION = {version!r}\n\n# COMMAND ----------\n\nprint(VERSION)\n"


@dataclass
class GitProject:
    """A local git repository: main (2 commits, tag v1 on the first) and branch feature."""

    path: Path
    commits: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.path.as_uri()

    def commit_version(self, version: str) -> str:
        (self.path / "notebooks" / "train.py").write_text(NOTEBOOK.format(version=version))
        git(self.path, "commit", "-qam", f"train {version}")
        return git(self.path, "rev-parse", "HEAD")


@pytest.fixture
def git_project(tmp_path) -> GitProject:
    path = tmp_path / "project"
    (path / "notebooks").mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "notebooks" / "train.py").write_text(NOTEBOOK.format(version="v1"))
    (path / "notebooks" / "helpers.py").write_text("def helper():\n    return 1\n")
    (path / "README.md").write_text("# project\n")
    git(path, "add", ".")
    git(path, "commit", "-qm", "first")
    project = GitProject(path)
    project.commits["v1"] = git(path, "rev-parse", "HEAD")
    git(path, "tag", "v1")
    project.commits["main"] = project.commit_version("main-2")
    git(path, "checkout", "-qb", "feature")
    project.commits["feature"] = project.commit_version("feature")
    git(path, "checkout", "-q", "main")
    return project
