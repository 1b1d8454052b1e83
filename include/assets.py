"""The Assets the lifecycle DAGs hand to each other (no sensors polling other DAGs)."""

from __future__ import annotations

from airflow.sdk import Asset

from include.config import load_config

_MODEL = load_config()["model"]

# Updated by mlops_train when a new candidate holds the challenger alias in the dev registry.
CHALLENGER = Asset(
    name="mlops_challenger",
    uri=f"mlflow-registry://{_MODEL['dev_model_name']}/aliases/{_MODEL['challenger_alias']}",
    group="mlops",
)
# Updated by mlops_release (and mlops_rollback) when the champion alias moves in prod.
CHAMPION = Asset(
    name="mlops_champion",
    uri=f"mlflow-registry://{_MODEL['prod_model_name']}/aliases/{_MODEL['champion_alias']}",
    group="mlops",
)
