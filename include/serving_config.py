"""The prod serving endpoint's settings (environments.prod.serving), checked when a DAG is parsed."""

from __future__ import annotations

from typing import Any

from include.config import ConfigError

WORKLOAD_SIZES = ("Small", "Medium", "Large")


def serving_settings(config: dict) -> dict[str, Any] | None:
    """environments.prod.serving, checked; None when the DAGs must not touch an endpoint.

    Model Serving serves Unity Catalog models only (``catalog.schema.model`` plus a version),
    so without ``registry.uri: databricks-uc`` (e.g. a self-hosted MLflow registry) or without
    the block, the release and rollback move the alias alone.
    """
    serving = config["environments"]["prod"].get("serving")
    if not serving:
        return None
    if config["registry"].get("uri") != "databricks-uc":
        return None
    model_name = config["model"]["prod_model_name"]
    where = "environments.prod.serving"
    if str(model_name).count(".") != 2:
        raise ConfigError(
            f"{where} needs a Unity Catalog model name catalog.schema.model, but model.prod_model_name "
            f"is {model_name!r}: fix the name or remove the serving block."
        )
    if not serving.get("endpoint_name"):
        raise ConfigError(f"{where}.endpoint_name is required (the serving endpoint's name).")
    if serving.get("workload_size", "Small") not in WORKLOAD_SIZES:
        raise ConfigError(
            f"{where}.workload_size is {serving.get('workload_size')!r}: use one of {list(WORKLOAD_SIZES)}."
        )
    canary = serving.get("canary") or {}
    share = canary.get("traffic_percentage", 10)
    if not isinstance(share, int) or not 1 <= share <= 99:
        raise ConfigError(f"{where}.canary.traffic_percentage is {share!r}: use a whole number from 1 to 99.")
    rate = canary.get("max_error_rate", 0.0)
    if not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise ConfigError(f"{where}.canary.max_error_rate is {rate!r}: use a share from 0 to 1 (0.01 = 1 %).")
    for key, default in (("max_p99_ms", 250), ("smoke_rows", 100)):
        value = canary.get(key, default)
        if not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"{where}.canary.{key} is {value!r}: use a positive number.")
    return {
        "endpoint_name": str(serving["endpoint_name"]),
        "model_name": model_name,
        "workload_size": serving.get("workload_size", "Small"),
        "scale_to_zero_enabled": bool(serving.get("scale_to_zero_enabled", False)),
        "timeout_seconds": float(serving.get("timeout_seconds", 1800)),
        "traffic_percentage": share,
        "max_error_rate": float(rate),
        "max_p99_ms": float(canary.get("max_p99_ms", 250)),
        "smoke_rows": int(canary.get("smoke_rows", 100)),
    }


def endpoint_operator_kwargs(config: dict, serving: dict) -> dict[str, Any]:
    """The settings every serving-endpoint task of a DAG shares: where the endpoint is, which
    model it serves, and how long and how often to wait for it (include/config ``tuning``)."""
    return {
        "databricks_conn_id": config["environments"]["prod"]["databricks_conn_id"],
        "endpoint_name": serving["endpoint_name"],
        "model_name": serving["model_name"],
        "timeout_seconds": serving["timeout_seconds"],
        "poll_interval": config["tuning"]["polling_period_seconds"],
        "deferrable": config["tuning"]["deferrable"],
    }
