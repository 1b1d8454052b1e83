"""Job definitions reach the (emulated) workspace as written: Databricks, not Airflow, resolves
their dynamic value references."""

from __future__ import annotations

import json

import pendulum
import pytest
from jinja2.exceptions import UndefinedError
from mlops.jobs import DatabricksDeployJobOperator

from include.config import load_config
from tests.conftest import databricks_conn_uri

DEFINITION = {
    "name": "mlops-refs-test",
    "environment": "prod",
    "job_clusters": [{"job_cluster_key": "main", "new_cluster": "${cluster}"}],
    "tasks": [
        {
            "task_key": "prepare",
            "job_cluster_key": "main",
            "notebook_task": {"notebook_path": "prepare_data"},
        },
        {
            "task_key": "score",
            "depends_on": [{"task_key": "prepare"}],
            "job_cluster_key": "main",
            "notebook_task": {
                "notebook_path": "batch_score",
                "base_parameters": {
                    "databricks_run_id": "{{job.run_id}}",
                    "rows": "{{tasks.prepare.values.rows}}",
                    "model_name": "${model.prod_model_name}",
                },
            },
        },
    ],
}


@pytest.fixture
def settings(tmp_path, monkeypatch) -> dict:
    import include.jobs as jobs

    (tmp_path / "refs.json").write_text(json.dumps(DEFINITION))
    monkeypatch.setattr(jobs, "JOBS_DIR", tmp_path)
    return jobs.render_job("refs", load_config(overlay=""))[1]


def _deploy(operator_class, settings):
    from airflow.sdk import DAG

    with DAG("deploy_refs", schedule=None, start_date=pendulum.datetime(2026, 11, 1, tz="UTC")) as dag:
        op = operator_class(task_id="deploy", databricks_conn_id="databricks_refs", json=settings)
    context = {"params": {}, "run_id": "manual__refs", "dag": dag}
    op.render_template_fields(context, jinja_env=dag.get_template_env())  # what the task runner does
    return op, context


def test_dynamic_value_references_reach_databricks_unrendered(workspace, settings, monkeypatch):
    from airflow.providers.databricks.operators.databricks import DatabricksCreateJobsOperator
    from databricks.sdk import WorkspaceClient

    monkeypatch.setenv("AIRFLOW_CONN_DATABRICKS_REFS", databricks_conn_uri(workspace))
    # The provider's operator renders json with Jinja: the reference never reaches Databricks.
    with pytest.raises(UndefinedError, match="job"):
        _deploy(DatabricksCreateJobsOperator, settings)

    op, context = _deploy(DatabricksDeployJobOperator, settings)
    job_id = op.execute(context)
    job = WorkspaceClient(host=workspace.url, token=workspace.token).jobs.get(job_id)
    params = job.settings.tasks[1].notebook_task.base_parameters
    assert params["databricks_run_id"] == "{{job.run_id}}"
    assert params["rows"] == "{{tasks.prepare.values.rows}}"
    assert params["model_name"] == "prod.ml.diabetes"  # include/config placeholders are filled

    # A second deployment resets the same job, references still intact.
    assert op.execute(context) == job_id
    again = WorkspaceClient(host=workspace.url, token=workspace.token).jobs.get(job_id)
    assert again.settings.tasks[1].notebook_task.base_parameters["databricks_run_id"] == "{{job.run_id}}"


def test_release_dag_deploys_its_jobs_without_jinja():
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder="dags/mlops_release.py").dags["mlops_release"]
    deploys = [t for t in dag.tasks if t.task_id.startswith("deploy_") and t.task_id.endswith("_job")]
    assert {t.task_id for t in deploys} == {"deploy_validation_job", "deploy_scoring_job"}
    assert deploys and all(isinstance(t, DatabricksDeployJobOperator) for t in deploys)
    assert all("json" not in t.template_fields for t in deploys)
