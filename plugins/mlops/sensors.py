"""Sensor that waits for a model version to be READY or an alias to point at a version."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowException

from mlops.hooks import MlflowRegistryHook
from mlops.triggers import ModelVersionTrigger, check_model_version

if TYPE_CHECKING:
    from airflow.sdk import Context


class ModelVersionSensor(BaseSensorOperator):
    """
    Wait until ``version`` of ``model_name`` is READY, or until ``alias`` points at a READY
    version (``expected_version`` when given). Returns the version (XCom).

    :param model_name: registered model name.
    :param version: version to wait for (exclusive with alias).
    :param alias: alias to wait for.
    :param expected_version: with alias: the version the alias must point at.
    :param mlflow_conn_id: connection of the MLflow tracking server.
    :param databricks_conn_id: connection of a Databricks workspace.
    :param registry_uri: registry URI override.
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    """

    template_fields: Sequence[str] = ("model_name", "version", "alias", "expected_version")

    def __init__(
        self,
        *,
        model_name: str,
        version: str | int | None = None,
        alias: str | None = None,
        expected_version: str | int | None = None,
        mlflow_conn_id: str = MlflowRegistryHook.default_conn_name,
        databricks_conn_id: str | None = None,
        registry_uri: str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.version = version
        self.alias = alias
        self.expected_version = expected_version
        self.mlflow_conn_id = mlflow_conn_id
        self.databricks_conn_id = databricks_conn_id
        self.registry_uri = registry_uri
        self.deferrable = deferrable
        name = type(self).__name__
        if not model_name:
            raise ValueError(f"{name}: model_name is required")
        if (version in (None, "")) == (alias in (None, "")):
            raise ValueError(
                f"{name}: give exactly one of version or alias (got version={version!r}, alias={alias!r})"
            )
        if expected_version not in (None, "") and alias in (None, ""):
            raise ValueError(f"{name}: expected_version only makes sense with alias")

    @cached_property
    def hook(self) -> MlflowRegistryHook:
        return MlflowRegistryHook(
            self.mlflow_conn_id, databricks_conn_id=self.databricks_conn_id, registry_uri=self.registry_uri
        )

    def _args(self) -> dict[str, Any]:
        def text(value: Any) -> str | None:
            return None if value in (None, "") else str(value)

        return {
            "model_name": self.model_name,
            "version": text(self.version),
            "alias": text(self.alias),
            "expected_version": text(self.expected_version),
        }

    def poke(self, context: Context) -> bool:
        args = self._args()
        done, version, seen = check_model_version(self.hook, **args)
        self.log.info("%s", seen)
        if done:
            self._found_version = version
        return done

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            super().execute(context)
            return getattr(self, "_found_version", None)
        if self.poke(context):
            return self._found_version
        timeout = self.timeout.total_seconds() if isinstance(self.timeout, timedelta) else self.timeout
        self.defer(
            trigger=ModelVersionTrigger(
                **self._args(),
                mlflow_conn_id=self.mlflow_conn_id,
                databricks_conn_id=self.databricks_conn_id,
                registry_uri=self.registry_uri,
                poke_interval=float(
                    self.poke_interval.total_seconds()
                    if isinstance(self.poke_interval, timedelta)
                    else self.poke_interval
                ),
                timeout=float(timeout) if timeout else None,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(timeout)) if timeout else None,
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> str:
        if event.get("status") != "success":
            raise AirflowException(
                f"Waiting for model {self.model_name!r} (version={self.version}, alias={self.alias}, "
                f"expected_version={self.expected_version}) ended with {event.get('status')}: {event.get('message')}"
            )
        self.log.info("%s", event.get("message"))
        return str(event["version"])
