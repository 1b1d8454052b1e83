"""Session-wide services for the tests: real MLflow servers, emulated workspaces, Airflow.

Each server starts once per session on 127.0.0.1 and is stopped when the session ends.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.services import (
    Service,
    create_postgres_database,
    postgres_available,
    start_mlflow_server,
    start_workspace,
)

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
ARTIFACTS = ROOT / "test-artifacts"


# --------------------------------------------------------------------------- MLflow


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Service:
    """A real `mlflow server` with a SQLite backend store."""
    service = start_mlflow_server(tmp_path_factory.mktemp("mlflow-sqlite"), name="mlflow-sqlite")
    yield service
    service.stop()


@pytest.fixture(scope="session")
def mlflow_server_postgres(tmp_path_factory) -> Service:
    """A real `mlflow server` on PostgreSQL; skipped where no PostgreSQL answers."""
    if not postgres_available():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    db = f"mlops_test_mlflow_{uuid.uuid4().hex[:8]}"
    dsn = create_postgres_database(db)
    service = start_mlflow_server(
        tmp_path_factory.mktemp("mlflow-pg"), backend_store_uri=dsn, name="mlflow-postgres"
    )
    yield service
    service.stop()
    _drop_postgres_database(db)


@pytest.fixture(scope="session")
def mlflow_server_remote(tmp_path_factory) -> Service:
    """A second, independent MLflow server: the 'central' registry of cross-registry tests."""
    service = start_mlflow_server(tmp_path_factory.mktemp("mlflow-remote"), name="mlflow-remote")
    yield service
    service.stop()


def _drop_postgres_database(name: str) -> None:
    import psycopg2

    from devstack.services import POSTGRES_DSN

    conn = psycopg2.connect(POSTGRES_DSN, connect_timeout=5)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


# --------------------------------------------------------------------------- workspaces

WORKSPACE_TOKEN = "dapi-devstack-test-token"


@pytest.fixture(scope="session")
def workspace(tmp_path_factory, mlflow_server) -> Service:
    """One emulated Databricks workspace ("dev") wired to the session's MLflow server."""
    service = start_workspace(
        "dev",
        tmp_path_factory.mktemp("ws-dev"),
        token=WORKSPACE_TOKEN,
        mlflow_tracking_uri=mlflow_server.url,
        extra_args=["--max-parallel-runs", "4"],
    )
    yield service
    service.stop()


def databricks_conn_uri(service: Service) -> str:
    """An Airflow connection (JSON form) that points the Databricks provider at ``service``."""
    return json.dumps(
        {
            "conn_type": "databricks",
            "host": "127.0.0.1",
            "port": service.port,
            "schema": "http",
            "password": service.token,
        }
    )


# --------------------------------------------------------------------------- Airflow


@dataclass
class DagRunResult:
    dag_id: str
    returncode: int
    output: str

    @property
    def state(self) -> str | None:
        found = re.findall(r"DagRun Finished: .*?state=(\w+)", self.output)
        return found[-1] if found else None

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0 and self.state == "success"


class AirflowRunner:
    """Runs `airflow dags test` against a session-wide metadata DB (PostgreSQL when available)."""

    def __init__(self, home: Path, sql_alchemy_conn: str):
        self.home = home
        self.sql_alchemy_conn = sql_alchemy_conn

    def env(self, dags_folder: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_", "AIRFLOW__"))
        }
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sql_alchemy_conn,
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
                "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins")]),
                "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            }
        )
        env.update(extra or {})
        return env

    def migrate(self) -> None:
        proc = subprocess.run(
            [str(VENV_BIN / "airflow"), "db", "migrate"],
            env=self.env(self.home / "dags"),
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")

    def dags_test(
        self,
        dag_id: str,
        dags_folder: Path,
        *,
        conf: dict | None = None,
        logical_date: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 600,
    ) -> DagRunResult:
        """Run one real DAG run with `airflow dags test` and return its output and final state."""
        cmd = [str(VENV_BIN / "airflow"), "dags", "test", dag_id]
        if logical_date:
            cmd.append(logical_date)
        if conf is not None:
            cmd += ["--conf", json.dumps(conf)]
        proc = subprocess.run(
            cmd,
            env=self.env(dags_folder, env),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
        )
        result = DagRunResult(dag_id, proc.returncode, proc.stdout + proc.stderr)
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"dags-test-{dag_id}-{uuid.uuid4().hex[:6]}.log").write_text(result.output)
        return result


@pytest.fixture(scope="session")
def airflow(tmp_path_factory) -> AirflowRunner:
    """A migrated Airflow metadata DB for the session: PostgreSQL when reachable, else SQLite."""
    home = tmp_path_factory.mktemp("airflow-home")
    (home / "dags").mkdir()
    db_name = None
    if postgres_available():
        db_name = f"mlops_test_airflow_{uuid.uuid4().hex[:8]}"
        dsn = create_postgres_database(db_name)
        conn = dsn.replace("postgresql://", "postgresql+psycopg2://", 1)
    else:
        conn = f"sqlite:///{home / 'airflow.db'}"
    runner = AirflowRunner(home, conn)
    runner.migrate()
    yield runner
    if db_name:
        _drop_postgres_database(db_name)
