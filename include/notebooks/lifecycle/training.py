"""Model training and evaluation: scikit-learn pipelines and the metrics the gate compares."""

from __future__ import annotations

from typing import Any

MODEL_TYPES = ("ridge", "random_forest", "gradient_boosting")


def build_model(hyperparameters: dict[str, Any]):
    """A scikit-learn pipeline for ``hyperparameters['model_type']`` (ridge, random_forest, ...)."""
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    model_type = hyperparameters.get("model_type", "ridge")
    seed = int(hyperparameters.get("seed", 42))
    if model_type == "ridge":
        estimator = Ridge(alpha=float(hyperparameters.get("alpha", 1.0)))
    elif model_type == "random_forest":
        estimator = RandomForestRegressor(
            n_estimators=int(hyperparameters.get("n_estimators", 100)),
            max_depth=int(hyperparameters.get("max_depth", 4)),
            random_state=seed,
            n_jobs=1,
        )
    elif model_type == "gradient_boosting":
        estimator = GradientBoostingRegressor(
            n_estimators=int(hyperparameters.get("n_estimators", 100)),
            max_depth=int(hyperparameters.get("max_depth", 3)),
            random_state=seed,
        )
    else:
        raise ValueError(f"Unknown model_type {model_type!r}: use one of {list(MODEL_TYPES)}.")
    return Pipeline([("scale", StandardScaler()), ("model", estimator)])


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """rmse, mae and r2 as plain floats (JSON- and MLflow-friendly)."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    return {
        "rmse": float(mean_squared_error(y_true, y_pred) ** 0.5),
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "r2": float(r2_score(y_true, y_pred)),
    }


def fit_and_evaluate(frame, features: list[str], target: str, hyperparameters: dict[str, Any]):
    """Fit on 80 % of ``frame`` (pandas), evaluate on the other 20 %; returns (model, metrics)."""
    from sklearn.model_selection import train_test_split

    if len(frame) < 10:
        raise ValueError(f"Only {len(frame)} training rows: need at least 10 to fit and evaluate.")
    seed = int(hyperparameters.get("seed", 42))
    train, test = train_test_split(frame, test_size=0.2, random_state=seed)
    model = build_model(hyperparameters).fit(train[features], train[target])
    metrics = regression_metrics(test[target], model.predict(test[features]))
    metrics["training_rows"] = float(len(train))
    return model, metrics


def sklearn_types_of(model) -> list[str]:
    """The scikit-learn types inside ``model`` that skops does not trust by default.

    MLflow stores scikit-learn models with skops, which refuses to load types it does not
    know (tree structures, loss objects). These are the types of the pipeline we just built,
    so they are declared trusted when the model is logged, and only those.
    """
    from skops.io import dumps, get_untrusted_types

    return [t for t in get_untrusted_types(data=dumps(model)) if t.startswith(("sklearn.", "numpy."))]


# The lineage tags that name the DAG run a training belongs to (set by mlops_train).
RUN_LINEAGE_KEYS = ("mlops_dag_id", "mlops_dag_run_id")


def _quoted(value: str) -> str:
    """A string literal of an MLflow search filter (single quotes, or double ones around a quote)."""
    return f'"{value}"' if "'" in value else f"'{value}'"


def registered_by_same_dag_run(client, experiment_id: str, model_name: str, tags: dict[str, Any]):
    """The version of ``model_name`` an earlier try of this DAG run registered, or None.

    A retried or cleared training must not register a second version for one DAG run. The MLflow
    run carries the lineage tags from its start, before anything is registered, so the search
    goes run -> versions (``run_id = ...`` is a filter Unity Catalog accepts; tag filters on
    versions are not, per mlflow's UC store docstring) and also finds a version whose own tags
    were never written because the try died right after registering.
    """
    wanted = {k: str(tags[k]) for k in RUN_LINEAGE_KEYS if tags.get(k)}
    if len(wanted) < len(RUN_LINEAGE_KEYS):
        return None  # not started by a DAG run (a notebook run by hand): always a new version
    runs = client.search_runs(
        [experiment_id],
        filter_string=" AND ".join(f"tags.{k} = {_quoted(v)}" for k, v in wanted.items()),
        order_by=["attributes.start_time ASC"],
    )
    for run in runs:
        versions = client.search_model_versions(f"run_id = {_quoted(run.info.run_id)}")
        mine = sorted((mv for mv in versions if mv.name == model_name), key=lambda mv: int(mv.version))
        if mine:
            return mine[0]
    return None


def train_and_register(
    frame,
    *,
    features: list[str],
    target: str,
    hyperparameters: dict[str, Any],
    model_name: str,
    experiment: str,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Fit, log to MLflow (params, metrics, signature, input example) and register a new version.

    When the lineage ``tags`` name a DAG run that already registered a version (a retried or
    cleared training), that version is returned instead and nothing is trained or registered.
    Returns {model_name, version, run_id, model_uri, metrics, reused}.
    """
    import mlflow
    from mlflow.models import infer_signature

    client = mlflow.MlflowClient()
    experiment_id = mlflow.set_experiment(experiment).experiment_id
    earlier = registered_by_same_dag_run(client, experiment_id, model_name, tags or {})
    if earlier is not None:
        version = str(earlier.version)
        for key, value in {**(tags or {}), "mlops_source_run_id": earlier.run_id}.items():
            client.set_model_version_tag(model_name, version, str(key), str(value))
        print(
            f"Version {version} of {model_name} was registered by an earlier try of DAG run "
            f"{tags['mlops_dag_run_id']} (MLflow run {earlier.run_id}): returning it, not registering another."
        )
        return {
            "model_name": model_name,
            "version": version,
            "run_id": earlier.run_id,
            "model_uri": f"models:/{model_name}/{version}",
            "metrics": dict(client.get_run(earlier.run_id).data.metrics),
            "reused": True,
        }

    model, metrics = fit_and_evaluate(frame, features, target, hyperparameters)
    run_name = f"{hyperparameters.get('model_type', 'ridge')} " + " ".join(
        f"{k}={v}" for k, v in sorted(hyperparameters.items()) if k != "model_type"
    )
    with mlflow.start_run(
        run_name=run_name.strip(), tags={str(k): str(v) for k, v in (tags or {}).items()}
    ) as run:
        mlflow.log_params(hyperparameters)
        mlflow.log_metrics(metrics)
        example = frame[features].head(5)
        signature = infer_signature(example, model.predict(example))
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=example,
            registered_model_name=model_name,
            skops_trusted_types=sklearn_types_of(model),
        )
    version = str(info.registered_model_version)
    # Lineage on the version itself, so the registry alone tells where a model came from.
    for key, value in {**(tags or {}), "mlops_source_run_id": run.info.run_id}.items():
        client.set_model_version_tag(model_name, version, str(key), str(value))
    return {
        "model_name": model_name,
        "version": version,
        "run_id": run.info.run_id,
        "model_uri": f"models:/{model_name}/{version}",
        "metrics": metrics,
        "reused": False,
    }
