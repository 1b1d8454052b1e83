"""Training logic: the pipelines fit the shipped data and report the metrics the gate compares."""

from __future__ import annotations

import pandas as pd
import pytest
from lifecycle.training import build_model, fit_and_evaluate, regression_metrics

FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
TRAIN = pd.read_csv("include/data/landing/diabetes/date=2026-11-22/part-00000.csv")


@pytest.mark.parametrize("model_type", ["ridge", "random_forest", "gradient_boosting"])
def test_every_model_type_learns_something(model_type):
    model, metrics = fit_and_evaluate(
        TRAIN, FEATURES, "target", {"model_type": model_type, "n_estimators": 30}
    )
    assert set(metrics) >= {"rmse", "mae", "r2"}
    assert metrics["r2"] > 0.2, metrics  # the mean predictor scores 0
    assert model.predict(TRAIN[FEATURES].head(2)).shape == (2,)


def test_stronger_regularisation_gives_a_worse_ridge_model():
    _, good = fit_and_evaluate(TRAIN, FEATURES, "target", {"model_type": "ridge", "alpha": 1.0})
    _, bad = fit_and_evaluate(TRAIN, FEATURES, "target", {"model_type": "ridge", "alpha": 5000.0})
    assert bad["rmse"] > good["rmse"] and bad["r2"] < good["r2"]


def test_unknown_model_type_is_named():
    with pytest.raises(ValueError, match="Unknown model_type 'svm'"):
        build_model({"model_type": "svm"})


def test_metrics_of_a_perfect_prediction():
    assert regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == {"rmse": 0.0, "mae": 0.0, "r2": 1.0}
