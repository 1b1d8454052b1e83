"""Fixtures of the mlops plugin tests: real MLflow servers with a few tiny logged models.

Models are logged once per server and session; each test registers versions of them under a
model name of its own, so tests never see each other's registry state.
"""

from __future__ import annotations

import uuid

import pytest
from mlops_testlib import Registry, _registry, make_context


@pytest.fixture(params=["sqlite", "postgres"])
def registry(request, monkeypatch) -> Registry:
    """The registry under test (SQLite and PostgreSQL backends), as connection mlflow_default."""
    fixture = "mlflow_server" if request.param == "sqlite" else "mlflow_server_postgres"
    reg = _registry(request.param, request.getfixturevalue(fixture))
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", reg.conn_json())
    return reg


@pytest.fixture
def sqlite_registry(mlflow_server, monkeypatch) -> Registry:
    reg = _registry("sqlite", mlflow_server)
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", reg.conn_json())
    return reg


@pytest.fixture
def remote_registry(mlflow_server_remote, monkeypatch) -> Registry:
    """The second, independent server (a central registry), as connection mlflow_central."""
    reg = _registry("remote", mlflow_server_remote)
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_CENTRAL", reg.conn_json())
    return reg


@pytest.fixture
def model_name(request) -> str:
    """A Unity-Catalog style name unique to the test: dev.ml.<test>_<random>."""
    base = request.node.name.split("[")[0].removeprefix("test_")[:40]
    return f"dev.ml.{base}_{uuid.uuid4().hex[:6]}"


@pytest.fixture
def context():
    return make_context
