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
    fixture = "mlflow_server" if request.param == "sqlite" else "mlflow_server_pg"
    reg = _registry(request.param, request.getfixturevalue(fixture))
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", reg.conn_json())
    return reg


@pytest.fixture(scope="session")
def mlflow_server_pg(tmp_path_factory):
    """A real `mlflow server` on PostgreSQL through psycopg2; skipped where no PostgreSQL answers.

    The shared ``mlflow_server_postgres`` passes a bare ``postgresql://`` URI, which SQLAlchemy
    2.1 maps to the psycopg (3) driver that is not installed; this one names psycopg2.
    """
    import psycopg2

    from devstack.services import (
        POSTGRES_DSN,
        create_postgres_database,
        postgres_available,
        start_mlflow_server,
    )

    if not postgres_available():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    db = f"mlops_plugin_mlflow_{uuid.uuid4().hex[:8]}"
    dsn = create_postgres_database(db).replace("postgresql://", "postgresql+psycopg2://", 1)
    service = start_mlflow_server(tmp_path_factory.mktemp("mlflow-pg"), backend_store_uri=dsn, name="mlflow-pg")
    yield service
    service.stop()
    conn = psycopg2.connect(POSTGRES_DSN, connect_timeout=5)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    conn.close()


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
