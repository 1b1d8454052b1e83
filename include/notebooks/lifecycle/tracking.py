"""Where a notebook's MLflow calls go: the Databricks runtime's MLflow, or a self-hosted server.

On Databricks the runtime points MLflow at the workspace (tracking ``databricks``, registry
``databricks-uc``). Teams with their own MLflow server (include/config ``registry.uri: null``)
pass its URL as the ``tracking_uri`` widget: the notebook then tracks AND registers there, where
Airflow's registry operators (connection ``mlflow_default``) look for the versions.
"""

from __future__ import annotations

import os
from typing import Any

# Keys of the secret scope ``registry.tracking_secret_scope`` (the notebooks' sign-in to the
# server), mapped to the environment variables MLflow's REST client reads on every request.
TOKEN_KEY = "mlflow-tracking-token"
USERNAME_KEY = "mlflow-tracking-username"
PASSWORD_KEY = "mlflow-tracking-password"


class TrackingConfigError(ValueError):
    """The notebook's MLflow settings are incomplete."""


def configure_mlflow(
    *, tracking_uri: str = "", registry_uri: str = "", secret_scope: str = "", secrets: Any = None
) -> str:
    """Point MLflow at the configured server before anything is logged; return what was chosen.

    ``tracking_uri`` empty: the runtime's defaults, only ``registry_uri`` (if any) applied.
    ``tracking_uri`` set: tracking goes there, and so does the registry unless ``registry_uri``
    names another. ``secret_scope`` (read through ``secrets``, i.e. ``dbutils.secrets``) holds a
    bearer token or a username and password for that server.
    """
    import mlflow

    if not tracking_uri:
        if secret_scope:
            raise TrackingConfigError(
                f"tracking_secret_scope {secret_scope!r} is set but tracking_uri is empty: the scope "
                "signs in to a self-hosted MLflow server; pass its URL as tracking_uri."
            )
        if registry_uri:
            mlflow.set_registry_uri(registry_uri)
        return f"the Databricks runtime's MLflow (registry {registry_uri or 'default'})"

    if secret_scope:
        _sign_in_from(secrets, secret_scope)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri or tracking_uri)
    signed = f", signed in from secret scope {secret_scope}" if secret_scope else ""
    return f"MLflow server {tracking_uri} (registry {registry_uri or tracking_uri}{signed})"


def _sign_in_from(secrets: Any, scope: str) -> None:
    """MLFLOW_TRACKING_TOKEN or _USERNAME/_PASSWORD from the scope (MLflow reads them per request)."""
    keys = {s.key for s in secrets.list(scope)}
    if TOKEN_KEY in keys:
        os.environ["MLFLOW_TRACKING_TOKEN"] = secrets.get(scope, TOKEN_KEY)
    elif {USERNAME_KEY, PASSWORD_KEY} <= keys:
        os.environ["MLFLOW_TRACKING_USERNAME"] = secrets.get(scope, USERNAME_KEY)
        os.environ["MLFLOW_TRACKING_PASSWORD"] = secrets.get(scope, PASSWORD_KEY)
    else:
        raise TrackingConfigError(
            f"Secret scope {scope!r} has neither {TOKEN_KEY!r} nor both {USERNAME_KEY!r} and "
            f"{PASSWORD_KEY!r} (it has {sorted(keys)}): put the MLflow server's sign-in there, e.g. "
            f"`databricks secrets put-secret {scope} {TOKEN_KEY}`."
        )
