"""The workspace's MLflow tracking (``/api/2.0/mlflow/*``), as MLflow's own client uses it.

The client runs with tracking URI ``databricks`` against the emulated workspace, exactly as it
would against Azure Databricks; everything it logs must be on the devstack's MLflow server,
where the MLflow UI reads it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid

import pytest
import requests

from devstack.workspace.mlflow.tracking_backend import (
    ArtifactSigner,
    TrackingError,
    relative_artifact_path,
)

from .jobs_support import HEADER, SMALL_CLUSTER, Api


@pytest.fixture
def api(workspace) -> Api:
    return Api(workspace.url, workspace.token)


@pytest.fixture
def folder(api) -> str:
    """A fresh workspace folder for this test's experiments."""
    path = f"/Shared/mlflow-{uuid.uuid4().hex[:8]}"
    api.ok("POST", "2.0/workspace/mkdirs", {"path": path})
    return path


@pytest.fixture
def databricks_mlflow(workspace, monkeypatch):
    """MLflow's fluent API and client on tracking URI ``databricks`` = the emulated workspace."""
    import mlflow

    for name in ("DATABRICKS_CONFIG_PROFILE", "DATABRICKS_CONFIG_FILE", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABRICKS_HOST", workspace.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", workspace.token)
    mlflow.set_tracking_uri("databricks")
    yield mlflow
    mlflow.set_tracking_uri(None)


@pytest.fixture
def server_client(mlflow_server):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.url)


def test_run_params_metrics_tags_and_model_land_on_the_mlflow_server(
    databricks_mlflow, server_client, folder, api
):
    import numpy as np
    from sklearn.linear_model import LinearRegression

    mlflow = databricks_mlflow
    experiment = mlflow.set_experiment(f"{folder}/diabetes-training")
    assert experiment.artifact_location == f"dbfs:/databricks/mlflow-tracking/{experiment.experiment_id}"

    features = np.arange(40, dtype=float).reshape(-1, 2)
    model = LinearRegression().fit(features, features.sum(axis=1))
    with mlflow.start_run(run_name="train") as run:
        mlflow.log_params({"alpha": 0.5, "model_type": "linear"})
        for step, rmse in enumerate([3.0, 2.0, 1.5]):
            mlflow.log_metric("rmse", rmse, step=step)
        mlflow.set_tag("data_date", "2026-11-29")
        logged = mlflow.sklearn.log_model(model, name="model", input_example=features[:2])
        mlflow.log_text("trained on the test grid", "notes/about.txt")

    run_id = run.info.run_id
    assert run.info.artifact_uri == (
        f"dbfs:/databricks/mlflow-tracking/{experiment.experiment_id}/{run_id}/artifacts"
    )
    # Loaded back through the workspace: from the run and from the logged model.
    expected = model.predict(features[:3])
    assert np.allclose(mlflow.pyfunc.load_model(f"runs:/{run_id}/model").predict(features[:3]), expected)
    assert np.allclose(mlflow.pyfunc.load_model(logged.model_uri).predict(features[:3]), expected)
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/notes/about.txt") == "trained on the test grid"
    history = mlflow.MlflowClient().get_metric_history(run_id, "rmse")
    assert [(m.step, m.value) for m in history] == [(0, 3.0), (1, 2.0), (2, 1.5)]

    # The same run, read on the MLflow server directly (what its UI shows).
    on_server = server_client.get_run(run_id)
    assert server_client.get_experiment(on_server.info.experiment_id).name == f"{folder}/diabetes-training"
    assert on_server.data.params == {"alpha": "0.5", "model_type": "linear"}
    assert on_server.data.metrics == {"rmse": 1.5}
    assert on_server.data.tags["data_date"] == "2026-11-29"
    assert on_server.info.status == "FINISHED"
    me = api.ok("GET", "2.0/preview/scim/v2/Me")["userName"]
    assert on_server.info.user_id == me  # the signed-in caller, as Databricks records it
    assert {f.path for f in server_client.list_artifacts(run_id)} >= {"notes"}
    server_model = server_client.get_logged_model(logged.model_id)
    assert server_model.source_run_id == run_id and server_model.status == "READY"
    assert {f.path for f in server_client.list_logged_model_artifacts(logged.model_id)} >= {
        "MLmodel",
        "model.pkl",
    }


def test_experiment_names_are_workspace_paths(databricks_mlflow, folder):
    from mlflow.exceptions import MlflowException

    client = databricks_mlflow.MlflowClient()
    with pytest.raises(MlflowException, match="absolute workspace path") as relative:
        client.create_experiment("diabetes-training")
    assert relative.value.error_code == "INVALID_PARAMETER_VALUE"

    with pytest.raises(MlflowException, match=f"Parent directory {folder}/missing does not exist") as parent:
        client.create_experiment(f"{folder}/missing/diabetes-training")
    assert parent.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    # /Workspace/... is the same path, as on Databricks.
    experiment_id = client.create_experiment(f"/Workspace{folder}/validation")
    assert client.get_experiment_by_name(f"{folder}/validation").experiment_id == experiment_id
    assert client.get_experiment_by_name(f"/Workspace{folder}/validation").experiment_id == experiment_id
    tags = client.get_experiment(experiment_id).tags
    assert tags["devstack.workspace"] == "dev"

    found = client.search_experiments(filter_string=f"name LIKE '{folder}/%'")
    assert [e.name for e in found] == [f"{folder}/validation"]
    assert found[0].artifact_location == f"dbfs:/databricks/mlflow-tracking/{experiment_id}"


def test_experiments_show_in_the_workspace_tree(databricks_mlflow, api, folder):
    client = databricks_mlflow.MlflowClient()

    def listed() -> dict[str, str]:
        objects = api.ok("GET", f"2.0/workspace/list?path={folder}").get("objects", [])
        return {o["path"]: o["object_type"] for o in objects}

    experiment_id = client.create_experiment(f"{folder}/training")
    assert listed() == {f"{folder}/training": "MLFLOW_EXPERIMENT"}
    client.rename_experiment(experiment_id, f"{folder}/training-v2")
    assert listed() == {f"{folder}/training-v2": "MLFLOW_EXPERIMENT"}
    client.delete_experiment(experiment_id)
    assert listed() == {}
    client.restore_experiment(experiment_id)
    assert listed() == {f"{folder}/training-v2": "MLFLOW_EXPERIMENT"}

    # A notebook already at the path: the experiment cannot take it.
    api.ok(
        "POST",
        "2.0/workspace/import",
        {"path": f"{folder}/nb", "format": "SOURCE", "language": "PYTHON", "content": ""},
    )
    taken = api.call("POST", "2.0/mlflow/experiments/create", {"name": f"{folder}/nb"})
    assert taken.status_code == 400 and taken.json()["error_code"] == "RESOURCE_ALREADY_EXISTS"
    assert "notebook already exists" in taken.json()["message"]


def test_unknown_experiment_and_run_are_resource_does_not_exist(databricks_mlflow, api):
    from mlflow.exceptions import MlflowException

    client = databricks_mlflow.MlflowClient()
    with pytest.raises(MlflowException) as experiment:
        client.get_experiment("987654321")
    assert experiment.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert "987654321" in str(experiment.value)

    answer = api.call("GET", "2.0/mlflow/runs/get", params={"run_id": "0" * 32})
    assert answer.status_code == 404
    assert answer.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"

    answer = api.call(
        "POST", "2.0/mlflow/artifacts/credentials-for-write", {"run_id": "0" * 32, "path": ["x"]}
    )
    assert answer.status_code == 404 and answer.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_signed_artifact_urls_move_bytes_and_refuse_tampering(api, workspace, folder, server_client):
    experiment_id = api.ok("POST", "2.0/mlflow/experiments/create", {"name": f"{folder}/signed"})[
        "experiment_id"
    ]
    run_id = api.ok("POST", "2.0/mlflow/runs/create", {"experiment_id": experiment_id})["run"]["info"][
        "run_id"
    ]

    write = api.ok(
        "POST", "2.0/mlflow/artifacts/credentials-for-write", {"run_id": run_id, "path": ["a/b.bin"]}
    )
    [credential] = write["credential_infos"]
    assert credential["type"] == "AWS_PRESIGNED_URL" and credential["path"] == "a/b.bin"
    assert credential["signed_uri"].startswith(f"{workspace.url}/devstack/mlflow-artifacts?")

    payload = bytes(range(256)) * 10
    assert requests.put(credential["signed_uri"], data=payload, timeout=30).status_code == 200
    # No Authorization header: the signature is the credential. A changed one is refused.
    tampered = credential["signed_uri"].replace("sp=w", "sp=r")
    assert requests.get(tampered, timeout=30).status_code == 403
    assert requests.put(credential["signed_uri"] + "x", data=b"no", timeout=30).status_code == 403

    read = api.ok(
        "POST", "2.0/mlflow/artifacts/credentials-for-read", {"run_id": run_id, "path": ["a/b.bin"]}
    )
    assert requests.get(read["credential_infos"][0]["signed_uri"], timeout=30).content == payload
    # The bytes are the MLflow server's artifacts.
    local = server_client.download_artifacts(run_id, "a/b.bin")
    with open(local, "rb") as f:
        assert f.read() == payload

    listed = api.ok("GET", f"2.0/mlflow/artifacts/list?run_id={run_id}&path=a")
    assert listed["root_uri"] == f"dbfs:/databricks/mlflow-tracking/{experiment_id}/{run_id}/artifacts"
    assert listed["files"] == [{"path": "a/b.bin", "is_dir": False, "file_size": len(payload)}]

    climbing = api.call(
        "POST", "2.0/mlflow/artifacts/credentials-for-write", {"run_id": run_id, "path": ["../x"]}
    )
    assert climbing.status_code == 400 and climbing.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_signer_refuses_expired_and_foreign_urls():
    signer = ArtifactSigner(key=b"k" * 32, ttl_seconds=60)
    query = dict(p.split("=", 1) for p in signer.query("1/run/artifacts/x", "r").split("&"))
    signer.check("1/run/artifacts/x", "r", query["se"], query["sig"])  # valid
    with pytest.raises(TrackingError, match="does not match"):
        ArtifactSigner(key=b"o" * 32).check("1/run/artifacts/x", "r", query["se"], query["sig"])
    with pytest.raises(TrackingError, match="does not match"):
        signer.check("1/run/artifacts/y", "r", query["se"], query["sig"])
    stale = dict(
        p.split("=", 1) for p in signer.query("1/run/artifacts/x", "r", now=time.time() - 3600).split("&")
    )
    with pytest.raises(TrackingError, match="expired"):
        signer.check("1/run/artifacts/x", "r", stale["se"], stale["sig"])
    assert relative_artifact_path("model/./MLmodel") == "model/MLmodel"
    with pytest.raises(TrackingError):
        relative_artifact_path("model/../../other-run")


NOTEBOOK = """
import hashlib, json, os
import mlflow

dbutils.widgets.text("pat_sha256", "")

mlflow.set_experiment("{experiment}")
with mlflow.start_run() as run:
    mlflow.log_param("source", "notebook")
    mlflow.log_metric("score", 0.75)
    mlflow.log_text("from a notebook", "out/hello.txt")
names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "DATABRICKS_HOST")
dbutils.notebook.exit(json.dumps({{
    "run_id": run.info.run_id,
    "artifact_uri": run.info.artifact_uri,
    "tracking_uri": mlflow.get_tracking_uri(),
    "registry_uri": mlflow.get_registry_uri(),
    "env": {{name: os.environ.get(name) for name in names}},
    "has_token": bool(os.environ.get("DATABRICKS_TOKEN")),
    "token_is_the_pat": hashlib.sha256(os.environ["DATABRICKS_TOKEN"].encode()).hexdigest()
    == dbutils.widgets.get("pat_sha256"),
    "context_token_is_the_run_token": dbutils.notebook.entry_point.getDbutils().notebook().getContext()
    .apiToken().get() == os.environ["DATABRICKS_TOKEN"],
}}))
"""


def test_notebook_without_mlflow_settings_logs_through_its_workspace(
    api, workspace, mlflow_server, server_client, folder
):
    experiment = f"{folder}/from-notebook"
    api.ok(
        "POST",
        "2.0/workspace/import",
        {
            "path": f"{folder}/log_run",
            "format": "SOURCE",
            "language": "PYTHON",
            "content": base64.b64encode((HEADER + NOTEBOOK.format(experiment=experiment)).encode()).decode(),
        },
    )
    run = api.ok(
        "POST",
        "2.1/jobs/runs/submit",
        {
            "run_name": "mlflow from a notebook",
            "tasks": [
                {
                    "task_key": "log",
                    "notebook_task": {
                        "notebook_path": f"{folder}/log_run",
                        "base_parameters": {
                            "pat_sha256": hashlib.sha256(workspace.token.encode()).hexdigest()
                        },
                    },
                    "new_cluster": SMALL_CLUSTER,
                }
            ],
        },
    )
    finished = api.wait(run["run_id"], timeout=180)
    task_run = finished["tasks"][0]["run_id"]
    output = api.ok("GET", f"2.1/jobs/runs/get-output?run_id={task_run}")
    assert finished["state"]["result_state"] == "SUCCESS", output
    result = json.loads(output["notebook_output"]["result"])

    assert result["tracking_uri"] == "databricks" and result["registry_uri"] == "databricks-uc"
    assert result["env"]["DATABRICKS_HOST"] == workspace.url and result["has_token"]
    assert not result["token_is_the_pat"], "notebooks get a short-lived token, not the workspace's PAT"
    assert result["context_token_is_the_run_token"]
    assert not any(mlflow_server.url in (value or "") for value in result["env"].values())
    assert result["artifact_uri"].startswith("dbfs:/databricks/mlflow-tracking/")

    on_server = server_client.get_run(result["run_id"])
    assert server_client.get_experiment(on_server.info.experiment_id).name == experiment
    assert on_server.data.params == {"source": "notebook"} and on_server.data.metrics == {"score": 0.75}
    local = server_client.download_artifacts(result["run_id"], "out/hello.txt")
    with open(local) as f:
        assert f.read() == "from a notebook"


def test_profile_uri_and_home_folder_experiment(workspace, api, tmp_path, monkeypatch):
    """``databricks://<profile>`` from a config file, an experiment in the caller's home folder."""
    import mlflow

    for name in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_CONFIG_PROFILE", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "databrickscfg"
    profile = f"host = {workspace.url}\ntoken = {workspace.token}\n"
    # MLflow 3.17's databricks artifact repositories build a default WorkspaceClient() whatever the
    # profile (mlflow/store/artifact/databricks_sdk_artifact_repo.py), as against real Databricks:
    # without a DEFAULT profile (or DATABRICKS_HOST/TOKEN) a databricks://<profile> client cannot
    # log artifacts at all.
    config.write_text(f"[devws]\n{profile}\n[DEFAULT]\n{profile}")
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(config))
    me = api.ok("GET", "2.0/preview/scim/v2/Me")["userName"]

    client = mlflow.MlflowClient(tracking_uri="databricks://devws")
    experiment_id = client.create_experiment(f"/Users/{me}/profile-{uuid.uuid4().hex[:6]}")
    run = client.create_run(experiment_id)
    client.log_param(run.info.run_id, "via", "profile")
    client.log_text(run.info.run_id, "profile text", "notes.txt")
    client.set_terminated(run.info.run_id)

    assert client.get_run(run.info.run_id).data.params == {"via": "profile"}
    local = client.download_artifacts(run.info.run_id, "notes.txt", str(tmp_path))
    with open(local) as f:
        assert f.read() == "profile text"


def test_notebooks_reach_their_workspace_at_its_own_address_behind_a_published_port(tmp_path):
    """In docker-compose the workspace listens on 0.0.0.0:8000 and browsers use 127.0.0.1:8001."""
    from devstack.workspace.clusters import databricks_runtime_env
    from devstack.workspace.context import WorkspaceContext
    from devstack.workspace.store import Store

    ctx = WorkspaceContext(
        name="dev",
        host="0.0.0.0",
        port=8000,
        data_dir=tmp_path,
        token="dapi-x",
        store=Store(tmp_path / "ws.db"),
        public_url="http://127.0.0.1:8001",
    )
    env = databricks_runtime_env(ctx, "run-token")
    assert (env["DATABRICKS_HOST"], env["DATABRICKS_TOKEN"]) == ("http://127.0.0.1:8000", "run-token")
    assert (env["MLFLOW_TRACKING_URI"], env["MLFLOW_REGISTRY_URI"]) == ("databricks", "databricks-uc")
    ctx.store.close()


def test_a_workspace_without_mlflow_server_says_how_to_get_one(tmp_path):
    from devstack.workspace.app import Workspace
    from devstack.workspace.context import WorkspaceContext
    from devstack.workspace.http import ApiError, Request
    from devstack.workspace.store import Store

    ctx = WorkspaceContext(
        name="dev", host="127.0.0.1", port=0, data_dir=tmp_path, token="t", store=Store(tmp_path / "ws.db")
    )
    workspace = Workspace(ctx)
    try:
        handler, params = workspace.router.match("POST", "/api/2.0/mlflow/experiments/create")
        with pytest.raises(ApiError) as refused:
            handler(
                Request("POST", "/api/2.0/mlflow/experiments/create", {}, {"name": "/Shared/x"}, {}, params)
            )
    finally:
        workspace.close()
    assert refused.value.status == 501 and "--mlflow-tracking-uri" in refused.value.message
