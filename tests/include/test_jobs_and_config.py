"""The job definitions render from the config for both the workspace and the Git-folder layout."""

from __future__ import annotations

import pytest

from include.config import ConfigError, load_config
from include.jobs import JobDefinitionError, job_names, render_job


def test_every_job_renders_with_its_environment_cluster_and_workspace_notebooks():
    config = load_config(overlay="")
    for name in job_names():
        environment, settings = render_job(name, config)
        assert settings["job_clusters"][0]["new_cluster"] == config["environments"][environment]["cluster"]
        for task in settings["tasks"]:
            assert task["notebook_task"]["source"] == "WORKSPACE"
            assert task["notebook_task"]["notebook_path"].startswith("/Shared/mlops/notebooks/")
            assert "${" not in str(task)


def test_scoring_job_reads_paths_and_features_from_config():
    config = load_config(overlay="")
    _, settings = render_job("batch_score", config)
    params = settings["tasks"][0]["notebook_task"]["base_parameters"]
    assert params["input_path"] == config["environments"]["prod"]["paths"]["scoring_input"]
    assert params["features"] == ",".join(config["model"]["features"])
    assert params["registry_uri"] == "databricks-uc"


def test_git_url_pins_the_notebooks_to_a_ref():
    config = load_config(overlay="")
    config["jobs"].update(
        git_url="https://dev.azure.com/org/mlops/_git/mlops", git_ref="v1.4.0", git_ref_type="tag"
    )
    _, settings = render_job("validate_model", config)
    assert settings["git_source"] == {
        "git_url": "https://dev.azure.com/org/mlops/_git/mlops",
        "git_provider": "azureDevOpsServices",
        "git_tag": "v1.4.0",
    }
    task = settings["tasks"][0]["notebook_task"]
    assert (task["source"], task["notebook_path"]) == ("GIT", "include/notebooks/validate_model")


def test_unknown_placeholder_is_named(tmp_path, monkeypatch):
    import include.jobs as jobs

    (tmp_path / "broken.json").write_text(
        '{"name": "x", "environment": "prod", "tags": {"a": "${model.nope}"}}'
    )
    monkeypatch.setattr(jobs, "JOBS_DIR", tmp_path)
    with pytest.raises(JobDefinitionError, match=r"\$\{model.nope\}"):
        render_job("broken", load_config(overlay=""))


def test_devstack_overlay_changes_no_road():
    """The devstack runs environments.yaml's registry, data paths and connection ids: its
    overlay may only tune (polling), so the first run on Azure is not the first test."""
    base = load_config(overlay="")
    local = load_config(overlay="devstack")
    assert set(_leaf_differences(base, local)) <= {"tuning.polling_period_seconds"}
    assert local["registry"]["uri"] == "databricks-uc"
    assert local["environments"]["prod"]["paths"] == base["environments"]["prod"]["paths"]


def _leaf_differences(a, b, prefix=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in a.keys() | b.keys():
            yield from _leaf_differences(a.get(key), b.get(key), f"{prefix}{key}.")
    elif a != b:
        yield prefix.rstrip(".")


def test_unknown_overlay_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"overlay 'nope' not found.*'devstack'"):
        load_config(overlay="nope")


def test_registry_operators_use_the_databricks_connection_for_unity_catalog():
    from include.dag_helpers import registry_connection

    assert registry_connection(load_config(overlay="")) == {
        "databricks_conn_id": "databricks_dev",
        "registry_uri": "databricks-uc",
    }
    assert registry_connection(load_config(overlay="devstack")) == registry_connection(
        load_config(overlay="")
    )
    assert registry_connection({"registry": {"uri": None, "mlflow_conn_id": "mlflow_default"}}) == {
        "mlflow_conn_id": "mlflow_default"
    }
