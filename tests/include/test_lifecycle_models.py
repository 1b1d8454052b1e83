"""Validation and batch scoring with real MLflow models on a real MLflow server and real Spark."""

from __future__ import annotations

import shutil
import uuid

import pandas as pd
import pytest
from lifecycle.evaluation import compare_on_holdout
from lifecycle.scoring import ScoringError, score_partition
from lifecycle.training import train_and_register

FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
TRAIN = pd.read_csv("include/data/landing/diabetes/date=2026-11-22/part-00000.csv")
HOLDOUT = pd.read_csv("include/data/holdout/diabetes_holdout.csv")
SCORING = "include/data/scoring"


@pytest.fixture(scope="module")
def registered(mlflow_server):
    """Two versions of one registered model: a good ridge (v1) and an over-regularised one (v2)."""
    import mlflow

    mlflow.set_tracking_uri(mlflow_server.url)
    name = f"test.ml.diabetes_{uuid.uuid4().hex[:6]}"
    results = [
        train_and_register(
            TRAIN,
            features=FEATURES,
            target="target",
            hyperparameters={"model_type": "ridge", "alpha": alpha},
            model_name=name,
            experiment="/lifecycle-tests",
            tags={"mlops_dag_run": "test"},
        )
        for alpha in (1.0, 5000.0)
    ]
    assert [r["version"] for r in results] == ["1", "2"]
    yield name
    mlflow.set_tracking_uri(None)


def test_training_logs_params_metrics_signature_and_lineage(registered):
    from mlflow import MlflowClient

    client = MlflowClient()
    version = client.get_model_version(registered, "1")
    run = client.get_run(version.run_id)
    assert run.data.params["alpha"] == "1.0" and run.data.tags["mlops_dag_run"] == "test"
    assert {"rmse", "r2", "mae"} <= set(run.data.metrics)
    model_info = __import__("mlflow").models.get_model_info(f"models:/{registered}/1")
    assert model_info.signature is not None and "bmi" in str(model_info.signature.inputs)


def test_validation_compares_with_the_champion_found_by_alias(registered):
    from lifecycle.evaluation import validate_candidate
    from mlflow import MlflowClient

    kwargs = dict(
        features=FEATURES,
        target="target",
        candidate_model_name=registered,
        candidate_version="2",
        champion_model_name=registered,
        champion_alias="champion",
        experiment="/lifecycle-tests",
    )
    first = validate_candidate(HOLDOUT, **kwargs)
    assert first["champion_version"] is None and first["champion_metrics"] is None

    MlflowClient().set_registered_model_alias(registered, "champion", "1")
    second = validate_candidate(HOLDOUT, **kwargs)
    assert second["champion_version"] == "1"
    assert second["candidate_metrics"]["rmse"] > second["champion_metrics"]["rmse"]
    tags = MlflowClient().get_model_version(registered, "2").tags
    assert tags["mlops_evaluation_run_id"] == second["evaluation_run_id"]
    logged = MlflowClient().get_run(second["evaluation_run_id"]).data.metrics
    assert logged["candidate_rmse"] == second["candidate_metrics"]["rmse"]


def test_tree_models_are_logged_and_load_back(mlflow_server):
    import mlflow

    mlflow.set_tracking_uri(mlflow_server.url)
    name = f"test.ml.trees_{uuid.uuid4().hex[:6]}"
    for hyperparameters in (
        {"model_type": "random_forest", "n_estimators": 5},
        {"model_type": "gradient_boosting", "n_estimators": 5},
    ):
        result = train_and_register(
            TRAIN,
            features=FEATURES,
            target="target",
            hyperparameters=hyperparameters,
            model_name=name,
            experiment="/lifecycle-tests",
        )
        loaded = mlflow.pyfunc.load_model(result["model_uri"])
        assert loaded.predict(HOLDOUT[FEATURES].head(3)).shape == (3,)


def test_candidate_and_champion_are_scored_on_the_same_rows(registered):
    result = compare_on_holdout(
        HOLDOUT,
        FEATURES,
        "target",
        candidate_uri=f"models:/{registered}/2",
        champion_uri=f"models:/{registered}/1",
    )
    assert result["candidate"]["holdout_rows"] == result["champion"]["holdout_rows"] == len(HOLDOUT)
    assert result["candidate"]["rmse"] > result["champion"]["rmse"]  # v2 is the worse model


def test_first_release_has_no_champion(registered):
    result = compare_on_holdout(
        HOLDOUT, FEATURES, "target", candidate_uri=f"models:/{registered}/1", champion_uri=None
    )
    assert result["champion"] is None and result["candidate"]["r2"] > 0.3


def test_scoring_a_partition_twice_overwrites_it_and_keeps_other_dates(spark, registered, tmp_path):
    output = str(tmp_path / "predictions")
    kwargs = dict(
        model_name=registered,
        input_path=SCORING,
        output_path=output,
        features=FEATURES,
        id_column="patient_id",
    )

    first = score_partition(spark, model_version="1", date="2026-11-20", **kwargs)
    latest = score_partition(spark, model_version="1", date="latest", **kwargs)
    assert latest["date"] == "2026-11-22" and latest["rows_out"] == 250
    other = score_partition(spark, model_version="1", date="2026-11-21", **kwargs)
    again = score_partition(spark, model_version="2", date="2026-11-20", **kwargs)

    assert first["rows_in"] == first["rows_out"] == 250
    assert again["rows_out"] == again["distinct_ids"] == 250  # replaced, not appended
    day = spark.read.parquet(f"{output}/date=2026-11-20").toPandas()
    assert set(day["model_version"]) == {"2"} and set(day["model_name"]) == {registered}
    assert spark.read.parquet(f"{output}/date=2026-11-21").count() == other["rows_out"] == 250


def test_missing_input_partition_is_named_and_writes_nothing(spark, registered, tmp_path):
    output = tmp_path / "predictions"
    with pytest.raises(ScoringError, match=r"No scoring input for 1999-01-01: .*date=1999-01-01"):
        score_partition(
            spark,
            model_name=registered,
            model_version="1",
            input_path=SCORING,
            output_path=str(output),
            date="1999-01-01",
            features=FEATURES,
            id_column="patient_id",
        )
    assert not output.exists()
    shutil.rmtree(output, ignore_errors=True)
