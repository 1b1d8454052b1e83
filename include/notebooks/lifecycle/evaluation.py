"""Pre-prod validation: candidate and champion scored on the same held-out rows."""

from __future__ import annotations

from typing import Any

from lifecycle.training import regression_metrics


def evaluate_model(model_uri: str, holdout, features: list[str], target: str) -> dict[str, float]:
    """Metrics of the MLflow model at ``model_uri`` on the pandas frame ``holdout``."""
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(model_uri)
    predictions = model.predict(holdout[features])
    metrics = regression_metrics(holdout[target], predictions)
    metrics["holdout_rows"] = float(len(holdout))
    return metrics


def compare_on_holdout(
    holdout,
    features: list[str],
    target: str,
    *,
    candidate_uri: str,
    champion_uri: str | None,
) -> dict[str, Any]:
    """{"candidate": metrics, "champion": metrics or None} on the same rows: a fair comparison."""
    missing = [c for c in [*features, target] if c not in holdout.columns]
    if missing:
        raise ValueError(f"Holdout data is missing column(s) {missing}; it has {list(holdout.columns)}.")
    if holdout.empty:
        raise ValueError("Holdout data has no rows: nothing to validate the candidate on.")
    return {
        "candidate": evaluate_model(candidate_uri, holdout, features, target),
        "champion": evaluate_model(champion_uri, holdout, features, target) if champion_uri else None,
    }
