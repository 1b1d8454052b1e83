"""The hook's connections: URLs, credentials sent per call, nothing left in the environment."""

from __future__ import annotations

import json
import os
import tempfile

import pytest
from mlops.exceptions import ModelRegistryError
from mlops.hooks import MlflowRegistryHook, _url_from_connection
from mlops.operators import (
    PromoteModelVersionOperator,
    RegisterModelVersionOperator,
    TransitionModelVersionStageOperator,
)
from mlops_testlib import RecordingProxy

CREDENTIAL_VARS = (
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "DATABRICKS_HOST",
    "DATABRICKS_TOKEN",
)


@pytest.mark.parametrize(
    ("host", "schema", "port", "url"),
    [
        ("127.0.0.1", "http", 5000, "http://127.0.0.1:5000"),
        ("mlflow.internal", "", None, "http://mlflow.internal"),
        ("mlflow.example.com", "https", 443, "https://mlflow.example.com:443"),
        ("https://adb-1.azuredatabricks.net/", None, None, "https://adb-1.azuredatabricks.net"),
        ("http://127.0.0.1", None, 8080, "http://127.0.0.1:8080"),
    ],
)
def test_tracking_url_from_connection(host, schema, port, url):
    assert _url_from_connection(host, schema, port, "http") == url


@pytest.fixture
def proxy(sqlite_registry):
    proxy = RecordingProxy(sqlite_registry.url)
    yield proxy
    proxy.stop()


def test_bearer_token_goes_with_each_call_and_never_into_the_environment(
    sqlite_registry, proxy, model_name, monkeypatch
):
    from mlflow import MlflowClient

    for var in CREDENTIAL_VARS:
        monkeypatch.delenv(var, raising=False)
    conn = {
        "conn_type": "http",
        "host": "127.0.0.1",
        "port": proxy.port,
        "schema": "http",
        "password": "s3cr3t-token",
    }
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_SECURED", json.dumps(conn))
    hook = MlflowRegistryHook("mlflow_secured")
    assert hook.test_connection()[0] is True
    hook.create_registered_model(model_name)
    model = sqlite_registry.models[0]
    mv = hook.create_model_version(model_name, model.model_uri, run_id=model.run_id, model_id=model.model_id)
    hook.wait_until_ready(model_name, mv.version, 30)
    with tempfile.TemporaryDirectory() as tmp:  # artifact download runs on MLflow's thread pool
        local = hook.download_artifacts(hook.get_model_version_download_uri(model_name, mv.version), tmp)
        assert os.path.isfile(os.path.join(local, "MLmodel"))
    assert any("/mlflow-artifacts/" in path for _, path, _ in proxy.requests)
    assert proxy.auth_headers() == {"Bearer s3cr3t-token"}
    assert not [var for var in CREDENTIAL_VARS if var in os.environ]

    # another client in the same process sends no credentials of ours
    proxy.requests.clear()
    MlflowClient(tracking_uri=proxy.url, registry_uri=proxy.url).get_registered_model(model_name)
    assert proxy.auth_headers() == {None}


def test_login_and_password_are_sent_as_basic_auth(proxy, monkeypatch):
    conn = {
        "conn_type": "generic",
        "host": "127.0.0.1",
        "port": proxy.port,
        "schema": "http",
        "login": "ml-bot",
        "password": "pw-123456",
    }
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_BASIC", json.dumps(conn))
    MlflowRegistryHook("mlflow_basic").search_registered_model_names(max_results=1)
    assert proxy.auth_headers() == {"Basic bWwtYm90OnB3LTEyMzQ1Ng=="}


def test_databricks_connection_drives_a_workspace_registry(
    sqlite_registry, proxy, model_name, context, monkeypatch
):
    """The Databricks workspace registry speaks the MLflow REST API; the real server stands in."""
    for var in CREDENTIAL_VARS:
        monkeypatch.delenv(var, raising=False)
    conn = {
        "conn_type": "databricks",
        "host": "127.0.0.1",
        "port": proxy.port,
        "schema": "http",
        "password": "dapi-workspace-token",
    }
    monkeypatch.setenv("AIRFLOW_CONN_DATABRICKS_DEV", json.dumps(conn))
    common = {"databricks_conn_id": "databricks_dev", "registry_uri": "databricks"}
    version = RegisterModelVersionOperator(
        task_id="register", model_uri=sqlite_registry.models[0].model_uri, model_name=model_name, **common
    ).execute(context("register"))
    result = TransitionModelVersionStageOperator(
        task_id="stage", model_name=model_name, version=version, stage="Production", **common
    ).execute(context("stage"))
    assert result["stage"] == "Production"
    assert sqlite_registry.client().get_model_version(model_name, version).current_stage == "Production"
    # that registry has no aliases: the promotion says so before touching anything
    with pytest.raises(ModelRegistryError, match="workspace registry .* has no aliases"):
        PromoteModelVersionOperator(task_id="p", model_name=model_name, version=version, **common).execute(
            context("p")
        )
    mlflow_calls = {auth for _, path, auth in proxy.requests if "/api/2.0/mlflow/" in path}
    assert mlflow_calls == {"Bearer dapi-workspace-token"}
    assert not [var for var in CREDENTIAL_VARS if var in os.environ]


def test_databricks_connection_without_token_is_refused(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_DATABRICKS_NOTOKEN", json.dumps({"conn_type": "databricks", "host": "adb-1.net"})
    )
    with pytest.raises(
        Exception, match="Databricks connection .databricks_notoken. has no sign-in configured"
    ):
        _ = MlflowRegistryHook(databricks_conn_id="databricks_notoken").search_registered_model_names()
