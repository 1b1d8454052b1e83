"""One code ref per release: with jobs.git_url set, training runs from the same repository and
ref as the validation and scoring jobs (checked on the emulated workspace's runs/get)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from mlops_testlib import FakeTaskInstance

from tests.conftest import databricks_conn_uri

ROOT = Path(__file__).resolve().parents[2]


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def pinned_release(tmp_path, monkeypatch) -> dict:
    """A git repository holding include/notebooks, tagged v1.4.0, and an overlay pinning it."""
    repo = tmp_path / "mlops-repo"
    shutil.copytree(
        ROOT / "include" / "notebooks",
        repo / "include" / "notebooks",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "release 1.4.0")
    _git(repo, "tag", "v1.4.0")
    overlay = tmp_path / "pinned.yaml"
    jobs = {"git_url": repo.as_uri(), "git_provider": "gitHub", "git_ref": "v1.4.0", "git_ref_type": "tag"}
    overlay.write_text(yaml.safe_dump({"jobs": jobs}))
    monkeypatch.setenv("MLOPS_CONFIG_OVERLAY", str(overlay))
    return {"git_url": repo.as_uri(), "git_provider": "gitHub", "git_tag": "v1.4.0"}


def _dag(name: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags" / f"{name}.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[name]


def test_training_runs_from_the_pinned_ref_like_validation_and_scoring(
    pinned_release, workspace, monkeypatch
):
    from databricks.sdk import WorkspaceClient

    release = _dag("mlops_release")
    for task_id in ("deploy_validation_job", "deploy_scoring_job"):
        assert release.get_task(task_id).json["git_source"] == pinned_release

    monkeypatch.setenv("AIRFLOW_CONN_DATABRICKS_DEV", databricks_conn_uri(workspace))
    launch = _dag("mlops_train").get_task("train_workflow.launch")
    ti = FakeTaskInstance("mlops_train", "manual__pinned", "train_workflow.launch")
    started = launch.execute({"ti": ti, "task_instance": ti, "params": {}, "run_id": ti.run_id})

    client = WorkspaceClient(host=workspace.url, token=workspace.token)
    try:
        run = client.jobs.get_run(started["run_id"])
        assert run.git_source.as_dict() == pinned_release
        notebooks = {t.task_key: t.notebook_task for t in run.tasks}
        assert set(notebooks) == {"prepare_data", "train_model"}
        for key, task in notebooks.items():
            assert (task.source.value, task.notebook_path) == ("GIT", f"include/notebooks/{key}")
    finally:
        client.jobs.cancel_run(started["run_id"])
