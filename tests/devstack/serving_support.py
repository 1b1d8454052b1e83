"""A prod workspace with Unity Catalog models to serve: shared by the serving emulator and operator tests.

Two versions of a small scikit-learn model with named columns (age, bmi, bp) are logged to the
session's MLflow server and registered in ``prod.ml`` through the workspace's ``databricks-uc``
registry, exactly as a training notebook or the promotion does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.services import Service, start_workspace
from devstack.workspace.unity_catalog.backend import Metastore

TOKEN = "dapi-serving-test"
COLUMNS = ["age", "bmi", "bp"]


@dataclass
class ServingStack:
    workspace: Service
    metastore_dir: Path
    mlflow_url: str
    config_file: Path

    def sdk(self):
        from databricks.sdk import WorkspaceClient

        return WorkspaceClient(host=self.workspace.url, token=TOKEN)


def start_serving_workspace(
    root: Path, mlflow_url: str, *, idle_seconds: float = 1800.0, tls_dir: Path | None = None
) -> ServingStack:
    """The workspace; with ``tls_dir`` its port also speaks TLS, certified by the devstack CA there."""
    metastore_dir = root / "metastore"
    tls_args: list[str] = []
    if tls_dir is not None:
        from devstack import tls

        cert, key = tls.issue_server_cert(tls_dir, root / "cert")
        tls_args = ["--tls-cert", str(cert), "--tls-key", str(key)]
    metastore = Metastore(metastore_dir)
    metastore.create_catalog("prod")
    metastore.create_schema("prod", "ml")
    metastore.close()
    workspace = start_workspace(
        "serving-prod",
        root / "prod",
        token=TOKEN,
        mlflow_tracking_uri=mlflow_url,
        extra_args=[
            *("--metastore-dir", str(metastore_dir), "--serving-idle-seconds", str(idle_seconds)),
            *tls_args,
        ],
    )
    config = root / "databrickscfg"
    config.write_text(f"[DEFAULT]\nhost = {workspace.url}\ntoken = {TOKEN}\n")
    return ServingStack(workspace, metastore_dir, mlflow_url, config)


def frame(rows: int = 20, seed: int = 3):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(rows, 3)), columns=COLUMNS)


def register_versions(stack: ServingStack, model_name: str, coefficients: list[list[float]]) -> list[Any]:
    """Register one version per coefficient set under ``model_name``; returns the fitted models.

    MLflow's client talks to the workspace's UC registry (``databricks-uc``) with the
    workspace's token from a config file, and to the MLflow server for tracking.
    """
    import os

    import mlflow
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    saved = {k: os.environ.get(k) for k in ("DATABRICKS_CONFIG_FILE", "DATABRICKS_HOST", "DATABRICKS_TOKEN")}
    os.environ.pop("DATABRICKS_HOST", None)
    os.environ.pop("DATABRICKS_TOKEN", None)
    os.environ["DATABRICKS_CONFIG_FILE"] = str(stack.config_file)
    models = []
    try:
        mlflow.set_tracking_uri(stack.mlflow_url)
        mlflow.set_registry_uri("databricks-uc")
        x = frame(60, seed=11)
        for coef in coefficients:
            y = x.to_numpy() @ coef + 1.0
            model = LinearRegression().fit(x, y)
            with mlflow.start_run():
                info = mlflow.sklearn.log_model(
                    model, name="model", signature=infer_signature(x, model.predict(x))
                )
            mlflow.register_model(info.model_uri, model_name)
            models.append(model)
    finally:
        mlflow.set_registry_uri(None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return models
