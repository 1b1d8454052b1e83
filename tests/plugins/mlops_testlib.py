"""Helpers of the mlops plugin tests: tiny logged models, a minimal Airflow context.

Models are logged once per server and session; each test registers versions of them under a
model name of its own, so tests never see each other's registry state.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from devstack.services import Service

# Metrics of the logged models: index 1 is better than 0, index 2 is worse, 3 is close to 0.
MODEL_METRICS = [
    {"rmse": 60.0, "r2": 0.40, "mae": 48.0},
    {"rmse": 55.0, "r2": 0.45, "mae": 45.0},
    {"rmse": 80.0, "r2": 0.20, "mae": 66.0},
    {"rmse": 60.6, "r2": 0.399, "mae": 48.2},
]


@dataclass
class LoggedModel:
    model_uri: str
    run_uri: str
    run_id: str
    model_id: str
    metrics: dict[str, float]


@dataclass
class Registry:
    """A running MLflow server, its tiny logged models and the Airflow connection pointing at it."""

    name: str
    service: Service
    models: list[LoggedModel] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.service.url

    def conn_json(self, **extra: Any) -> str:
        return json.dumps(
            {"conn_type": "http", "host": "127.0.0.1", "port": self.service.port, "schema": "http", **extra}
        )

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.url, registry_uri=self.url)

    def log_model(self, metrics: dict[str, float], experiment: str = "mlops-plugin-tests") -> LoggedModel:
        return log_tiny_model(self.url, metrics, experiment)


def log_tiny_model(
    url: str, metrics: dict[str, float], experiment: str = "mlops-plugin-tests"
) -> LoggedModel:
    """Fit and log a 2-feature linear regression with ``metrics`` on its run."""
    import mlflow
    import numpy as np
    from sklearn.linear_model import LinearRegression

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(url)
    try:
        mlflow.set_experiment(experiment)
        x = np.arange(20, dtype=float).reshape(10, 2)
        y = x @ np.array([1.5, -0.5]) + metrics.get("rmse", 0.0)
        with mlflow.start_run() as run:
            info = mlflow.sklearn.log_model(
                LinearRegression().fit(x, y), name="model", pip_requirements=["scikit-learn"]
            )
            mlflow.log_metrics(metrics)
        return LoggedModel(
            model_uri=info.model_uri,
            run_uri=f"runs:/{run.info.run_id}/model",
            run_id=run.info.run_id,
            model_id=info.model_id,
            metrics=dict(metrics),
        )
    finally:
        mlflow.set_tracking_uri(previous)


_POOLS: dict[str, Registry] = {}


def _registry(name: str, service: Service) -> Registry:
    if service.url not in _POOLS:
        registry = Registry(name, service)
        registry.models = [registry.log_model(m) for m in MODEL_METRICS]
        _POOLS[service.url] = registry
    return _POOLS[service.url]


class FakeTaskInstance:
    """What the operators read from ``context["ti"]``, and an XCom store for pushes."""

    def __init__(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1):
        self.dag_id, self.run_id, self.task_id = dag_id, run_id, task_id
        self.try_number = try_number
        self.map_index = -1
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def make_context(
    task_id: str = "task", *, run_id: str | None = None, try_number: int = 1, user: str = "alice"
) -> dict[str, Any]:
    """A minimal Airflow context: ti, dag_run and params, as the operators use them."""
    run_id = run_id or f"manual__{uuid.uuid4().hex[:8]}"
    ti = FakeTaskInstance("plugin_tests", run_id, task_id, try_number)
    dag_run = SimpleNamespace(
        dag_id="plugin_tests", run_id=run_id, triggering_user_name=user, run_type="manual"
    )
    return {"ti": ti, "dag_run": dag_run, "params": {}, "run_id": run_id}


def artifacts_dir(service: Service, artifact_location: str) -> Path:
    """Local directory of an ``mlflow-artifacts:/...`` location on a devstack server."""
    prefix = "mlflow-artifacts:/"
    assert artifact_location.startswith(prefix), artifact_location
    return service.data_dir / "artifacts" / artifact_location[len(prefix) :]


class RecordingProxy:
    """A pass-through HTTP proxy on 127.0.0.1 in front of a real server, recording auth headers.

    It lets a test see what the MLflow client actually sent (the Authorization header of every
    request) while the real MLflow server behind it does the work.
    """

    def __init__(self, target_url: str):
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        target = urlsplit(target_url)
        self.requests: list[tuple[str, str, str | None]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                proxy.requests.append((self.command, self.path, self.headers.get("Authorization")))
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def auth_headers(self) -> set[str | None]:
        return {auth for _, _, auth in self.requests}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
