"""A retried or cleared training registers no second model version for the same DAG run
(real MLflow server)."""

from __future__ import annotations

import uuid

import pandas as pd
import pytest
from lifecycle.training import train_and_register

FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
TRAIN = pd.read_csv("include/data/landing/diabetes/date=2026-11-22/part-00000.csv")
EXPERIMENT = "/lifecycle-tests-once"


@pytest.fixture
def tracking(mlflow_server):
    import mlflow

    mlflow.set_tracking_uri(mlflow_server.url)
    yield mlflow.MlflowClient()
    mlflow.set_tracking_uri(None)


def _train(name: str, tags: dict[str, str]) -> dict:
    return train_and_register(
        TRAIN,
        features=FEATURES,
        target="target",
        hyperparameters={"model_type": "ridge", "alpha": 1.0},
        model_name=name,
        experiment=EXPERIMENT,
        tags=tags,
    )


def _versions(client, name: str) -> list[str]:
    return sorted(mv.version for mv in client.search_model_versions(f"name = '{name}'"))


def test_a_retried_training_returns_the_version_its_dag_run_registered(tracking):
    name = f"test.ml.once_{uuid.uuid4().hex[:6]}"
    lineage = {"mlops_dag_id": "mlops_train", "mlops_dag_run_id": f"manual__{uuid.uuid4().hex[:8]}"}
    first = _train(name, lineage)
    retry = _train(name, lineage)
    assert first["reused"] is False and retry["reused"] is True
    assert (retry["version"], retry["run_id"]) == (first["version"], first["run_id"])
    assert retry["metrics"]["rmse"] == pytest.approx(first["metrics"]["rmse"])
    assert _versions(tracking, name) == [first["version"]]

    # Another DAG run trains and registers its own version.
    other = _train(name, {**lineage, "mlops_dag_run_id": "scheduled__2026-11-30T00:00:00+00:00"})
    assert other["version"] != first["version"]
    assert _versions(tracking, name) == sorted([first["version"], other["version"]])


def test_a_version_whose_try_died_before_tagging_it_is_found_by_its_run(tracking):
    """The try registered the version, then died before writing the version's lineage tags."""
    import mlflow
    from sklearn.linear_model import Ridge

    name = f"test.ml.once_{uuid.uuid4().hex[:6]}"
    lineage = {"mlops_dag_id": "mlops_train", "mlops_dag_run_id": f"manual__{uuid.uuid4().hex[:8]}"}
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(tags=lineage) as run:
        model = Ridge().fit(TRAIN[FEATURES], TRAIN["target"])
        mlflow.sklearn.log_model(model, name="model", registered_model_name=name)
    assert _versions(tracking, name) == ["1"]

    retry = _train(name, lineage)
    assert (retry["version"], retry["run_id"], retry["reused"]) == ("1", run.info.run_id, True)
    assert _versions(tracking, name) == ["1"]
    assert tracking.get_model_version(name, "1").tags["mlops_dag_run_id"] == lineage["mlops_dag_run_id"]


def test_training_outside_a_dag_run_always_registers(tracking):
    name = f"test.ml.once_{uuid.uuid4().hex[:6]}"
    assert [_train(name, {})["version"] for _ in range(2)] == ["1", "2"]
