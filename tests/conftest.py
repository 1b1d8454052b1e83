"""Session-wide services for the tests: real MLflow servers, emulated workspaces, Airflow.

Each server starts once per session on 127.0.0.1 and is stopped when the session ends.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

# Airflow reads its settings when first imported: give the in-process imports (DagBag, operators
# run directly) a throwaway home and DB, never the developer's ~/airflow.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="mlops-tests-airflow-")
atexit.register(shutil.rmtree, _AIRFLOW_HOME, True)
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME}/airflow.db"
os.environ.pop("MLOPS_CONFIG_OVERLAY", None)

import pytest  # noqa: E402

from devstack.airflow_runner import AirflowRunner, DagRunResult  # noqa: E402
from devstack.services import (  # noqa: E402
    Service,
    create_postgres_database,
    drop_postgres_database,
    postgres_available,
    start_mlflow_server,
    start_workspace,
)

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


# --------------------------------------------------------------------------- MLflow


@contextlib.contextmanager
def _mlflow_process_uris_kept():
    """MLflow's process-wide tracking and registry URIs as they were, once the block ends.

    Code that configures MLflow as a notebook does (``mlflow.set_registry_uri("databricks-uc")``)
    sets module globals AND exports them to the environment, and ``set_registry_uri(None)``
    clears only the global: the tests after it would reach a workspace that no longer runs.
    """
    import sys

    def uris_modules():
        # Only once the test process has imported mlflow: importing it here would defeat the
        # parse-time test that checks DAG files load no heavy library.
        if "mlflow" not in sys.modules:
            return None, None
        from mlflow.tracking._model_registry import utils as registry_utils
        from mlflow.tracking._tracking_service import utils as tracking_utils

        return tracking_utils, registry_utils

    env_names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved_env = {name: os.environ.get(name) for name in env_names}
    tracking_utils, registry_utils = uris_modules()
    saved = (tracking_utils._tracking_uri, registry_utils._registry_uri) if tracking_utils else (None, None)
    try:
        yield
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        tracking_utils, registry_utils = uris_modules()
        if tracking_utils:
            tracking_utils._tracking_uri, registry_utils._registry_uri = saved


@pytest.fixture(autouse=True)
def _mlflow_uris_per_test():
    with _mlflow_process_uris_kept():
        yield


@pytest.fixture(autouse=True, scope="module")
def _mlflow_uris_per_module():
    """The same around a module, for its module-scoped fixtures."""
    with _mlflow_process_uris_kept():
        yield


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
    drop_postgres_database(db)


@pytest.fixture(scope="session")
def mlflow_server_remote(tmp_path_factory) -> Service:
    """A second, independent MLflow server: the 'central' registry of cross-registry tests."""
    service = start_mlflow_server(tmp_path_factory.mktemp("mlflow-remote"), name="mlflow-remote")
    yield service
    service.stop()


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


class RecordingAirflowRunner(AirflowRunner):
    """Keeps every DAG run's output under test-artifacts/ for reading after a failure."""

    def dags_test(self, dag_id: str, dags_folder: Path, **kwargs) -> DagRunResult:
        result = super().dags_test(dag_id, dags_folder, **kwargs)
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
        conn = create_postgres_database(db_name)
    else:
        conn = f"sqlite:///{home / 'airflow.db'}"
    runner = RecordingAirflowRunner(home, conn)
    runner.migrate()
    yield runner
    if db_name:
        drop_postgres_database(db_name)
