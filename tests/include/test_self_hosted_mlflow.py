"""The self-hosted MLflow road: `registry.uri: null` with `registry.tracking_uri` sends the
notebooks' tracking and registry to the team's own server (config, DAG, jobs, notebook setup)."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from lifecycle.tracking import TrackingConfigError, configure_mlflow

from include.config import ConfigError, load_config
from include.jobs import render_job

ROOT = Path(__file__).resolve().parents[2]
OVERLAY = ROOT / "tests" / "e2e" / "self_hosted_mlflow.yaml"
SERVER = "http://127.0.0.1:5999"  # only written into configs here, never contacted


def _overlay(tmp_path, text: str) -> str:
    path = tmp_path / "overlay.yaml"
    path.write_text(text)
    return str(path)


def test_a_self_hosted_registry_without_tracking_uri_is_refused_naming_both_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"registry\.uri is null.*registry\.tracking_uri is not set"):
        load_config(overlay=_overlay(tmp_path, "registry: {uri: null}\n"))


def test_a_tracking_uri_that_is_not_a_server_url_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"registry\.tracking_uri is 'databricks'.*http://"):
        load_config(overlay=_overlay(tmp_path, "registry: {uri: null, tracking_uri: databricks}\n"))


def test_a_secret_scope_without_a_server_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"tracking_secret_scope is 'mlflow'.*tracking_uri is not set"):
        load_config(overlay=_overlay(tmp_path, "registry: {tracking_secret_scope: mlflow}\n"))


def test_the_azure_road_passes_no_server_to_the_notebooks():
    for name in ("validate_model", "batch_score"):
        _, settings = render_job(name, load_config(overlay=""))
        params = settings["tasks"][0]["notebook_task"]["base_parameters"]
        assert (params["registry_uri"], params["tracking_uri"], params["tracking_secret_scope"]) == (
            "databricks-uc",
            "",
            "",
        )


@pytest.fixture
def self_hosted_env(monkeypatch):
    monkeypatch.setenv("MLOPS_SELF_HOSTED_MLFLOW_URL", SERVER)
    monkeypatch.setenv("MLOPS_CONFIG_OVERLAY", str(OVERLAY))


def test_validation_and_scoring_jobs_carry_the_server_to_their_notebooks(self_hosted_env):
    config = load_config()
    for name in ("validate_model", "batch_score"):
        _, settings = render_job(name, config)
        params = settings["tasks"][0]["notebook_task"]["base_parameters"]
        assert (params["registry_uri"], params["tracking_uri"]) == ("", SERVER), name
    _, scoring = render_job("batch_score", config)
    assert scoring["tasks"][0]["notebook_task"]["base_parameters"]["model_name"] == "diabetes"


def test_training_passes_the_server_and_registry_operators_use_mlflow_default(self_hosted_env):
    from airflow.dag_processing.dagbag import DagBag

    dagbag = DagBag(dag_folder=str(ROOT / "dags" / "mlops_train.py"))
    assert dagbag.import_errors == {}
    dag = dagbag.dags["mlops_train"]
    params = dag.get_task("train_workflow.train_model").notebook_params
    assert (params["tracking_uri"], params["registry_uri"], params["model_name"]) == (
        SERVER,
        "",
        "diabetes-dev",
    )
    set_challenger = dag.get_task("set_challenger")
    assert set_challenger.mlflow_conn_id == "mlflow_default"
    assert not getattr(set_challenger, "databricks_conn_id", None)


# --------------------------------------------------------------------------- notebook setup


@pytest.fixture
def reset_mlflow():
    import mlflow

    yield mlflow
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def test_notebook_tracks_and_registers_on_the_server(reset_mlflow, mlflow_server, monkeypatch):
    mlflow = reset_mlflow
    # As a Databricks runtime sets them up: configure_mlflow must override both.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "databricks")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "databricks-uc")
    chosen = configure_mlflow(tracking_uri=mlflow_server.url)
    assert mlflow.get_tracking_uri() == mlflow.get_registry_uri() == mlflow_server.url
    assert mlflow_server.url in chosen

    name = f"self-hosted-{uuid.uuid4().hex[:6]}"
    mlflow.MlflowClient().create_registered_model(name)
    independent = mlflow.MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    assert independent.get_registered_model(name).name == name


def test_without_a_server_only_the_registry_uri_is_applied(reset_mlflow, monkeypatch):
    mlflow = reset_mlflow
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "databricks")
    configure_mlflow(registry_uri="databricks")
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == ("databricks", "databricks")
    with pytest.raises(TrackingConfigError, match="tracking_secret_scope 'mlflow'.*tracking_uri is empty"):
        configure_mlflow(secret_scope="mlflow")


class _Recorder(BaseHTTPRequestHandler):
    """An MLflow server's search endpoint that remembers the Authorization header it got."""

    seen: list[str | None] = []

    def do_GET(self):  # noqa: N802
        self.seen.append(self.headers.get("Authorization"))
        body = json.dumps({"experiments": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args):
        pass


@pytest.fixture
def recording_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Recorder.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.seen
    server.shutdown()


@pytest.fixture
def secrets(workspace):
    """``dbutils.secrets`` of the driver runtime, reading a scope of the emulated workspace."""
    from databricks.sdk import WorkspaceClient

    from devstack.workspace.runtime.dbutils import SecretsUtils
    from devstack.workspace.runtime.wsclient import WorkspaceClient as DriverClient

    admin = WorkspaceClient(host=workspace.url, token=workspace.token)
    scope = f"mlflow-{uuid.uuid4().hex[:6]}"
    admin.secrets.create_scope(scope)
    yield admin, scope, SecretsUtils(DriverClient(workspace.url, workspace.token))
    admin.secrets.delete_scope(scope)


@pytest.mark.parametrize(
    "stored, header",
    [
        ({"mlflow-tracking-token": "s3cr3t-token"}, "Bearer s3cr3t-token"),
        (
            {"mlflow-tracking-username": "svc-mlops", "mlflow-tracking-password": "pw"},
            "Basic c3ZjLW1sb3BzOnB3",  # base64("svc-mlops:pw")
        ),
    ],
)
def test_the_sign_in_comes_from_the_secret_scope(
    reset_mlflow, recording_server, secrets, monkeypatch, stored, header
):
    for var in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(var, "")  # recorded, so what configure_mlflow sets is undone after
        monkeypatch.delenv(var)
    url, seen = recording_server
    admin, scope, dbutils_secrets = secrets
    for key, value in stored.items():
        admin.secrets.put_secret(scope, key, string_value=value)

    chosen = configure_mlflow(tracking_uri=url, secret_scope=scope, secrets=dbutils_secrets)
    reset_mlflow.MlflowClient().search_experiments()
    assert seen and seen[-1] == header
    assert "pw" not in chosen and "s3cr3t" not in chosen


def test_a_scope_without_the_sign_in_keys_names_them(reset_mlflow, secrets):
    admin, scope, dbutils_secrets = secrets
    admin.secrets.put_secret(scope, "other", string_value="x")
    with pytest.raises(TrackingConfigError, match=rf"{scope}.*mlflow-tracking-token.*put-secret"):
        configure_mlflow(tracking_uri=SERVER, secret_scope=scope, secrets=dbutils_secrets)
