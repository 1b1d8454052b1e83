"""Trigger that waits, in the triggerer, for a model version to be READY or an alias to move."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


def check_model_version(
    hook: Any,
    model_name: str,
    version: str | None,
    alias: str | None,
    expected_version: str | None,
) -> tuple[bool, str | None, str]:
    """One poke: (done, version, what we saw). Raises when waiting cannot succeed."""
    from mlops.exceptions import ModelRegistryError, ModelRegistryNotFoundError

    if alias:
        try:
            mv = hook.get_model_version_by_alias(model_name, alias)
        except ModelRegistryNotFoundError as exc:
            return False, None, str(exc)
        if expected_version is not None and str(mv.version) != str(expected_version):
            return (
                False,
                str(mv.version),
                (
                    f"alias {alias!r} of {model_name!r} points at version {mv.version}, waiting for {expected_version}"
                ),
            )
        version = str(mv.version)
    try:
        mv = hook.get_model_version(model_name, version)
    except ModelRegistryNotFoundError as exc:
        return False, None, str(exc)
    status = str(mv.status)
    if status == "FAILED_REGISTRATION":
        raise ModelRegistryError(
            f"Version {version} of {model_name!r} failed registration: {mv.status_message or 'no message'}"
        )
    return status == "READY", str(version), f"version {version} of {model_name!r} is {status}"


class ModelVersionTrigger(BaseTrigger):
    """
    Polls the registry until the version is READY (or the alias points at a READY version, the
    expected one when given), then yields one event with ``status`` and ``version``.

    :param model_name: registered model name.
    :param version: version to wait for.
    :param alias: alias to wait for (instead of version).
    :param expected_version: with alias, the version it must point at.
    :param mlflow_conn_id: connection of the MLflow tracking server.
    :param databricks_conn_id: connection of a Databricks workspace.
    :param registry_uri: registry URI override.
    :param poke_interval: seconds between polls.
    :param timeout: seconds after which the trigger gives up (None: the task's timeout).
    """

    def __init__(
        self,
        *,
        model_name: str,
        version: str | None = None,
        alias: str | None = None,
        expected_version: str | None = None,
        mlflow_conn_id: str = "mlflow_default",
        databricks_conn_id: str | None = None,
        registry_uri: str | None = None,
        poke_interval: float = 30.0,
        timeout: float | None = None,
    ) -> None:
        super().__init__()
        self.model_name = model_name
        self.version = version
        self.alias = alias
        self.expected_version = expected_version
        self.mlflow_conn_id = mlflow_conn_id
        self.databricks_conn_id = databricks_conn_id
        self.registry_uri = registry_uri
        self.poke_interval = poke_interval
        self.timeout = timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "model_name": self.model_name,
                "version": self.version,
                "alias": self.alias,
                "expected_version": self.expected_version,
                "mlflow_conn_id": self.mlflow_conn_id,
                "databricks_conn_id": self.databricks_conn_id,
                "registry_uri": self.registry_uri,
                "poke_interval": self.poke_interval,
                "timeout": self.timeout,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from mlops.hooks import MlflowRegistryHook

        hook = MlflowRegistryHook(
            self.mlflow_conn_id, databricks_conn_id=self.databricks_conn_id, registry_uri=self.registry_uri
        )
        # The connection is read through the async API; the MLflow client is synchronous, so each
        # poll runs in a worker thread and the triggerer's event loop stays free. On a Databricks
        # connection the provider's sync sign-in (token fetch and refresh) runs in that thread
        # too, reading the connection fetched here, never a sync lookup from the event loop.
        conn_id = self.databricks_conn_id or self.mlflow_conn_id
        try:
            hook.use_connection(await hook.aget_connection(conn_id))
        except Exception as exc:
            yield TriggerEvent({"status": "error", "message": f"connection {conn_id!r}: {exc}"})
            return
        deadline = time.monotonic() + self.timeout if self.timeout else None
        seen = ""
        while True:
            try:
                done, version, seen = await asyncio.to_thread(
                    check_model_version,
                    hook,
                    self.model_name,
                    self.version,
                    self.alias,
                    self.expected_version,
                )
            except Exception as exc:
                yield TriggerEvent({"status": "error", "message": str(exc)})
                return
            if done:
                yield TriggerEvent({"status": "success", "version": version, "message": seen})
                return
            if deadline is not None and time.monotonic() >= deadline:
                yield TriggerEvent({"status": "timeout", "message": seen})
                return
            self.log.info("Waiting: %s", seen)
            await asyncio.sleep(self.poke_interval)
