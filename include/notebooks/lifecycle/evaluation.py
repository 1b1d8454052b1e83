"""Pre-prod validation: candidate and champion scored on the same held-out rows."""

from __future__ import annotations

from typing import Any

from lifecycle.training import regression_metrics


def evaluate_model(
    model_uri: str, holdout, features: list[str], target: str, *, keep_predictions: bool = False
) -> dict[str, Any]:
    """Metrics of the MLflow model at ``model_uri`` on the pandas frame ``holdout``.

    With ``keep_predictions`` the predictions come back too, under ``"predictions"`` (a list).
    """
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(model_uri)
    predictions = model.predict(holdout[features])
    metrics: dict[str, Any] = regression_metrics(holdout[target], predictions)
    metrics["holdout_rows"] = float(len(holdout))
    if keep_predictions:
        metrics["predictions"] = [_plain(v) for v in list(predictions)]
    return metrics


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value JSON (and a notebook's exit value) can carry."""
    return value.item() if hasattr(value, "item") else value


def smoke_sample(holdout, features: list[str], predictions: list[Any], rows: int) -> dict[str, Any]:
    """The first ``rows`` holdout rows (features only) and the candidate's predictions on them.

    The release's smoke check sends these rows to the serving endpoint and expects the same
    answers. They travel in the notebook's exit value, which Databricks caps (the run output API
    returns at most 5 MB), so only a bounded sample is returned, never the whole holdout.
    """
    if rows <= 0:
        return {"smoke_rows": [], "smoke_predictions": []}
    head = holdout[features].head(rows)
    records = [{k: _plain(v) for k, v in record.items()} for record in head.to_dict(orient="records")]
    return {"smoke_rows": records, "smoke_predictions": predictions[: len(records)]}


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
        "candidate": evaluate_model(candidate_uri, holdout, features, target, keep_predictions=True),
        "champion": evaluate_model(champion_uri, holdout, features, target) if champion_uri else None,
    }


def champion_version(client, model_name: str, alias: str) -> str | None:
    """The version ``alias`` points at, or None when the model or the alias does not exist yet."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model_name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def validate_candidate(
    holdout,
    *,
    features: list[str],
    target: str,
    candidate_model_name: str,
    candidate_version: str,
    champion_model_name: str,
    champion_alias: str,
    experiment: str,
    smoke_rows: int = 0,
) -> dict[str, Any]:
    """Score candidate and champion on ``holdout``, log both to one MLflow run, return the metrics.

    The champion is looked up by alias at run time; with none yet (first release) only the
    candidate is evaluated and ``champion_version`` / ``champion_metrics`` are None. With
    ``smoke_rows`` > 0 the result also carries that many holdout rows and the candidate's
    predictions on them (``smoke_rows``, ``smoke_predictions``) for the serving smoke check.
    """
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    current = champion_version(client, champion_model_name, champion_alias)
    result = compare_on_holdout(
        holdout,
        features,
        target,
        candidate_uri=f"models:/{candidate_model_name}/{candidate_version}",
        champion_uri=f"models:/{champion_model_name}/{current}" if current else None,
    )
    predictions = result["candidate"].pop("predictions")
    mlflow.set_experiment(experiment)
    tags = {
        "mlops_candidate": f"{candidate_model_name}/{candidate_version}",
        "mlops_champion": f"{champion_model_name}/{current}" if current else "none",
    }
    with mlflow.start_run(run_name=f"validate {candidate_model_name} v{candidate_version}", tags=tags) as run:
        mlflow.log_metrics({f"candidate_{k}": v for k, v in result["candidate"].items()})
        if result["champion"]:
            mlflow.log_metrics({f"champion_{k}": v for k, v in result["champion"].items()})
    # The gate operator finds the evaluation through this tag when no metrics are handed to it.
    client.set_model_version_tag(
        candidate_model_name, str(candidate_version), "mlops_evaluation_run_id", run.info.run_id
    )
    # Flat keys, so the release DAG hands each dict to the gate without unpacking.
    return {
        "candidate_model_name": candidate_model_name,
        "candidate_version": str(candidate_version),
        "candidate_metrics": result["candidate"],
        "champion_model_name": champion_model_name,
        "champion_version": current,
        "champion_metrics": result["champion"],
        "evaluation_run_id": run.info.run_id,
        **smoke_sample(holdout, features, predictions, smoke_rows),
    }
