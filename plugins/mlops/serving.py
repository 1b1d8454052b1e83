"""Model Serving: keep an endpoint on an exact model version, and what a canary release needs.

Built on databricks-sdk's ``w.serving_endpoints``, signed in per request exactly as
:class:`~mlops.hooks.MlflowRegistryHook` signs in on a Databricks connection (the provider's
``DatabricksHook``: personal access token, Entra ID service principal, managed identity,
Databricks OAuth).

- :class:`ServingEndpointOperator` creates the endpoint or updates it to serve one version with
  all traffic, and waits (in the triggerer when deferrable) until the config is live. Serving
  endpoints take an exact version, never an alias: resolve the alias first.
- :class:`StartServingCanaryOperator` adds a candidate beside the version the endpoint serves,
  with a share of the traffic; :class:`PromoteServingCanaryOperator` gives the candidate 100 %;
  :class:`RevertServingCanaryOperator` puts the endpoint back on the version it served.
- :func:`smoke_check` / :class:`ServingSmokeCheckOperator` send rows to one served entity and
  check its answers, error rate and p99 latency.

A failed update (a version that cannot load) fails the task with the reason; Databricks keeps
the old config serving, and the message says which version that is.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook, BaseOperator
from airflow.sdk.configuration import conf
from airflow.triggers.base import BaseTrigger, TriggerEvent

from mlops.exceptions import ModelRegistryError

if TYPE_CHECKING:
    from airflow.sdk import Context
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.serving import ServingEndpointDetailed

WORKLOAD_SIZES = ("Small", "Medium", "Large")


class ServingEndpointError(ModelRegistryError):
    """A serving endpoint is missing, failed to update, or is in a state the operator cannot act on."""


class ServingSmokeCheckError(ServingEndpointError):
    """A served entity answered wrongly, too often with errors, or too slowly."""


def served_entity_name(model_name: str, version: str | int) -> str:
    """The served entity's name: ``<model>-<version>`` (the last part of the UC name)."""
    return f"{model_name.split('.')[-1]}-{version}"


def _exact_version(value: Any, what: str = "version") -> str:
    text = str(value).strip() if value is not None else ""
    if not text.isdigit():
        raise ServingEndpointError(
            f"{what} must be an exact model version number, got {value!r}: serving endpoints do not take "
            "aliases, resolve the alias to its version first."
        )
    return text


# --------------------------------------------------------------------------- hook


class _ProviderSignIn:
    """databricks-sdk credentials: the provider's sign-in, fresh for each request."""

    def __init__(self, registry_hook: Any):
        self.registry_hook = registry_hook

    def auth_type(self) -> str:
        return "airflow-databricks-connection"

    def __call__(self, cfg: Any):
        def headers() -> dict[str, str]:
            env, extra = self.registry_hook._workspace_credentials()
            if env.get("DATABRICKS_TOKEN"):
                return {**extra, "Authorization": f"Bearer {env['DATABRICKS_TOKEN']}"}
            import base64

            basic = base64.b64encode(f"{env['DATABRICKS_USERNAME']}:{env['DATABRICKS_PASSWORD']}".encode())
            return {**extra, "Authorization": f"Basic {basic.decode()}"}

        return headers


class ServingEndpointHook(BaseHook):
    """
    databricks-sdk's ``serving_endpoints`` on the workspace of a Databricks connection.

    :param databricks_conn_id: Airflow connection of the Databricks workspace.
    """

    conn_name_attr = "databricks_conn_id"
    default_conn_name = "databricks_default"
    conn_type = "databricks"
    hook_name = "Databricks Model Serving"

    def __init__(self, databricks_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.databricks_conn_id = databricks_conn_id

    @cached_property
    def _signin(self) -> Any:
        """The registry hook's provider-based sign-in, reused (one sign-in road for the project)."""
        from mlops.hooks import MlflowRegistryHook

        return MlflowRegistryHook(databricks_conn_id=self.databricks_conn_id)

    def use_connection(self, conn: Any) -> None:
        """Use ``conn`` (fetched asynchronously in a trigger) instead of looking it up."""
        self._signin.use_connection(conn)

    @cached_property
    def client(self) -> WorkspaceClient:
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.config import Config

        env, _ = self._signin._workspace_credentials()
        config = Config(host=env["DATABRICKS_HOST"], credentials_strategy=_ProviderSignIn(self._signin))
        return WorkspaceClient(config=config)

    def _call(self, what: str, fn, *args: Any, **kwargs: Any) -> Any:
        from databricks.sdk.errors import DatabricksError

        try:
            return fn(*args, **kwargs)
        except DatabricksError as exc:
            raise ServingEndpointError(
                f"{what} on {self.client.config.host} failed: {exc.error_code or type(exc).__name__}: {exc}"
            ) from exc

    def get_endpoint(self, name: str) -> ServingEndpointDetailed | None:
        from databricks.sdk.errors import NotFound

        try:
            return self._call(f"Reading serving endpoint {name!r}", self.client.serving_endpoints.get, name)
        except ServingEndpointError as exc:
            if isinstance(exc.__cause__, NotFound):
                return None
            raise

    def create_endpoint(
        self, name: str, entities: list[dict[str, Any]], routes: dict[str, int], **extra: Any
    ) -> Any:
        from databricks.sdk.service.serving import EndpointCoreConfigInput

        config = EndpointCoreConfigInput.from_dict({"name": name, **_config_dict(entities, routes, **extra)})
        return self._call(
            f"Creating serving endpoint {name!r}", self.client.serving_endpoints.create, name, config=config
        ).response

    def update_config(
        self, name: str, entities: list[dict[str, Any]], routes: dict[str, int], **extra: Any
    ) -> Any:
        from databricks.sdk.service.serving import EndpointCoreConfigInput

        config = EndpointCoreConfigInput.from_dict(_config_dict(entities, routes, **extra))
        return self._call(
            f"Updating the config of serving endpoint {name!r}",
            self.client.serving_endpoints.update_config,
            name,
            served_entities=config.served_entities,
            traffic_config=config.traffic_config,
            auto_capture_config=config.auto_capture_config,
        ).response

    def invoke(self, name: str, body: dict[str, Any], served_entity: str | None = None) -> dict[str, Any]:
        """POST a query to the endpoint, or to one served entity (raises DatabricksError)."""
        path = f"/serving-endpoints/{name}"
        path += f"/served-models/{served_entity}/invocations" if served_entity else "/invocations"
        return self.client.api_client.do("POST", path, body=body)


def _config_dict(
    entities: list[dict[str, Any]], routes: dict[str, int], auto_capture_config: dict[str, Any] | None = None
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "served_entities": entities,
        "traffic_config": {
            "routes": [{"served_entity_name": n, "traffic_percentage": p} for n, p in routes.items()]
        },
    }
    if auto_capture_config:
        config["auto_capture_config"] = auto_capture_config
    return config


# --------------------------------------------------------------------------- reading endpoints


def serving_routes(endpoint: Any) -> dict[str, int]:
    """``{served entity name: traffic percentage}`` of the endpoint's live config."""
    config = getattr(endpoint, "config", None)
    if config is None or config.traffic_config is None:
        return {}
    return {
        r.served_entity_name or r.served_model_name: r.traffic_percentage
        for r in config.traffic_config.routes or []
    }


def serving_entities(config: Any) -> dict[str, Any]:
    return {e.name: e for e in (getattr(config, "served_entities", None) or [])}


def describe(endpoint: Any) -> str:
    """What an endpoint serves, for messages: ``diabetes-3 (prod.ml.diabetes v3) 100%``."""
    if endpoint is None or endpoint.config is None:
        return "nothing (no config has loaded)"
    routes = serving_routes(endpoint)
    return ", ".join(
        f"{n} ({e.entity_name} v{e.entity_version}) {routes.get(n, 0)}%"
        for n, e in serving_entities(endpoint.config).items()
    )


def check_endpoint(hook: ServingEndpointHook, name: str, expected: dict[str, list]) -> tuple[bool, str]:
    """One poll: is ``expected`` (served entity -> [model, version, share]) live? Raises on failure."""
    endpoint = hook.get_endpoint(name)
    if endpoint is None:
        raise ServingEndpointError(f"Serving endpoint {name!r} does not exist (deleted while updating?).")
    update = endpoint.state.config_update.value if endpoint.state and endpoint.state.config_update else ""

    def matches(config: Any, routes: dict[str, int]) -> bool:
        entities = serving_entities(config)
        if set(entities) != set(expected):
            return False
        return all(
            entities[n].entity_name == m
            and str(entities[n].entity_version) == str(v)
            and routes.get(n, 0) == share
            for n, (m, v, share) in expected.items()
        )

    if update == "UPDATE_FAILED":
        reasons = "; ".join(
            f"{n}: {e.state.deployment_state_message}"
            for n, e in serving_entities(endpoint.pending_config).items()
            if e.state and e.state.deployment and e.state.deployment.value == "DEPLOYMENT_FAILED"
        )
        raise ServingEndpointError(
            f"Serving endpoint {name!r} failed to update ({reasons or 'no reason given'}). It keeps serving "
            f"{describe(endpoint)}. Check the build logs of the failed entity "
            f"(GET /api/2.0/serving-endpoints/{name}/served-models/<entity>/build-logs)."
        )
    if update == "NOT_UPDATING":
        if matches(endpoint.config, serving_routes(endpoint)):
            return True, f"endpoint {name!r} serves {describe(endpoint)}"
        raise ServingEndpointError(
            f"Serving endpoint {name!r} finished updating but serves {describe(endpoint)}, not the config "
            "this task set: another update replaced it. Re-run the task once that update is settled."
        )
    return False, f"endpoint {name!r} is {update or 'in an unknown state'}; it serves {describe(endpoint)}"


class ServingEndpointTrigger(BaseTrigger):
    """
    Polls a serving endpoint until the expected config is live; yields one event.

    :param endpoint_name: the serving endpoint.
    :param expected: served entity name -> [model name, version, traffic percentage].
    :param databricks_conn_id: Airflow connection of the workspace.
    :param poll_interval: seconds between polls.
    :param timeout: seconds after which the trigger gives up (None: the task's timeout).
    """

    def __init__(
        self,
        *,
        endpoint_name: str,
        expected: dict[str, list],
        databricks_conn_id: str = ServingEndpointHook.default_conn_name,
        poll_interval: float = 10.0,
        timeout: float | None = None,
    ) -> None:
        super().__init__()
        self.endpoint_name = endpoint_name
        self.expected = expected
        self.databricks_conn_id = databricks_conn_id
        self.poll_interval = poll_interval
        self.timeout = timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "endpoint_name": self.endpoint_name,
                "expected": self.expected,
                "databricks_conn_id": self.databricks_conn_id,
                "poll_interval": self.poll_interval,
                "timeout": self.timeout,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = ServingEndpointHook(self.databricks_conn_id)
        # As ModelVersionTrigger: the connection is fetched with the async API; the SDK is
        # synchronous, so each poll (and the provider's sign-in) runs in a worker thread.
        try:
            hook.use_connection(await hook.aget_connection(self.databricks_conn_id))
        except Exception as exc:
            yield TriggerEvent(
                {"status": "error", "message": f"connection {self.databricks_conn_id!r}: {exc}"}
            )
            return
        deadline = time.monotonic() + self.timeout if self.timeout else None
        while True:
            try:
                done, seen = await asyncio.to_thread(check_endpoint, hook, self.endpoint_name, self.expected)
            except Exception as exc:
                yield TriggerEvent({"status": "error", "message": str(exc)})
                return
            if done:
                # The expected config rides in the event too: `airflow dags test` resumes the
                # task with the event alone, dropping the kwargs given to defer().
                yield TriggerEvent({"status": "success", "message": seen, "expected": self.expected})
                return
            if deadline is not None and time.monotonic() >= deadline:
                yield TriggerEvent({"status": "timeout", "message": seen})
                return
            self.log.info("Waiting: %s", seen)
            await asyncio.sleep(self.poll_interval)


# --------------------------------------------------------------------------- operators


class _ServingOperator(BaseOperator):
    """Connection, waiting and deferral shared by the serving operators.

    Subclasses compute the config they want (:meth:`plan`); this base applies it (create, update,
    or nothing when it is already live: a retry re-attaches to an update still in progress) and
    waits until it is live.
    """

    def __init__(
        self,
        *,
        endpoint_name: str,
        model_name: str,
        databricks_conn_id: str = ServingEndpointHook.default_conn_name,
        timeout_seconds: float = 1800.0,
        poll_interval: float = 10.0,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.endpoint_name = endpoint_name
        self.model_name = model_name
        self.databricks_conn_id = databricks_conn_id
        self.timeout_seconds = timeout_seconds
        self.poll_interval = poll_interval
        self.deferrable = deferrable
        if not endpoint_name:
            raise ValueError(f"{type(self).__name__}: endpoint_name is required")
        # A templated name is checked once rendered (plan() uses it as the entity name).
        if not model_name or ("{{" not in model_name and model_name.count(".") != 2):
            raise ValueError(
                f"{type(self).__name__}: model_name must be a Unity Catalog name catalog.schema.model, got {model_name!r}"
            )

    @cached_property
    def hook(self) -> ServingEndpointHook:
        return ServingEndpointHook(self.databricks_conn_id)

    def plan(self, endpoint: Any) -> tuple[list[dict[str, Any]], dict[str, int], dict[str, Any] | None]:
        """(served entities, routes, auto_capture_config) the endpoint must end up with."""
        raise NotImplementedError

    def _entity(self, version: str, like: Any = None, **overrides: Any) -> dict[str, Any]:
        """A served entity of ``version``; settings copied from ``like`` (an entity it replaces or sits beside)."""
        entity = {
            "name": served_entity_name(self.model_name, version),
            "entity_name": self.model_name,
            "entity_version": version,
            "workload_size": getattr(like, "workload_size", None) or "Small",
            "scale_to_zero_enabled": bool(getattr(like, "scale_to_zero_enabled", False)),
        }
        env = getattr(like, "environment_vars", None)
        if env:
            entity["environment_vars"] = dict(env)
        entity.update({k: v for k, v in overrides.items() if v is not None})
        return entity

    def execute(self, context: Context) -> dict[str, Any]:
        if self.model_name.count(".") != 2:
            raise ServingEndpointError(
                f"model_name must be a Unity Catalog name catalog.schema.model, got {self.model_name!r}"
            )
        endpoint = self.hook.get_endpoint(self.endpoint_name)
        entities, routes, capture = self.plan(endpoint)
        expected = {
            e["name"]: [e["entity_name"], e["entity_version"], routes.get(e["name"], 0)] for e in entities
        }
        pending = getattr(endpoint, "pending_config", None)
        in_progress = (
            endpoint is not None
            and endpoint.state.config_update
            and endpoint.state.config_update.value == "IN_PROGRESS"
        )
        if endpoint is None:
            self.log.info("Creating serving endpoint %s: %s", self.endpoint_name, expected)
            self.hook.create_endpoint(self.endpoint_name, entities, routes, auto_capture_config=capture)
        elif in_progress:
            # A retry after a lost worker: re-attach when the update in progress is this one.
            ours = {n: [e.entity_name, str(e.entity_version)] for n, e in serving_entities(pending).items()}
            if ours != {n: v[:2] for n, v in expected.items()}:
                raise ServingEndpointError(
                    f"Serving endpoint {self.endpoint_name!r} is in the middle of another update (to "
                    f"{ours}); it serves {describe(endpoint)}. Retry once that update has finished."
                )
            self.log.info(
                "Endpoint %s is already updating to %s: waiting for it", self.endpoint_name, expected
            )
        elif _live(endpoint, expected) and capture is None:
            self.log.info(
                "Endpoint %s already serves %s: nothing to change", self.endpoint_name, describe(endpoint)
            )
            return self._result(expected)
        else:
            self.log.info(
                "Updating serving endpoint %s from %s to %s", self.endpoint_name, describe(endpoint), expected
            )
            self.hook.update_config(self.endpoint_name, entities, routes, auto_capture_config=capture)
        if self.deferrable:
            self.defer(
                trigger=ServingEndpointTrigger(
                    endpoint_name=self.endpoint_name,
                    expected=expected,
                    databricks_conn_id=self.databricks_conn_id,
                    poll_interval=float(self.poll_interval),
                    timeout=float(self.timeout_seconds),
                ),
                method_name="execute_complete",
                kwargs={"expected": expected},
                timeout=timedelta(seconds=float(self.timeout_seconds) + 60),
            )
        deadline = time.monotonic() + self.timeout_seconds
        while True:
            done, seen = check_endpoint(self.hook, self.endpoint_name, expected)
            if done:
                self.log.info("%s", seen)
                return self._result(expected)
            if time.monotonic() >= deadline:
                raise ServingEndpointError(
                    f"Serving endpoint {self.endpoint_name!r} did not finish updating within "
                    f"{self.timeout_seconds:.0f} s: {seen}"
                )
            self.log.info("Waiting: %s", seen)
            time.sleep(self.poll_interval)

    def execute_complete(
        self, context: Context, event: dict[str, Any], expected: dict[str, list] | None = None
    ) -> dict[str, Any]:
        expected = expected or event.get("expected") or {}
        if event.get("status") != "success":
            raise ServingEndpointError(
                f"Waiting for serving endpoint {self.endpoint_name!r} ended with {event.get('status')}: "
                f"{event.get('message')}"
            )
        self.log.info("%s", event.get("message"))
        return self._result(expected)

    def _result(self, expected: dict[str, list]) -> dict[str, Any]:
        """XCom: the endpoint and what it serves."""
        return {
            "endpoint_name": self.endpoint_name,
            "served_entities": {
                n: {"model_name": m, "version": str(v), "traffic_percentage": p}
                for n, (m, v, p) in expected.items()
            },
        }


def _live(endpoint: Any, expected: dict[str, list]) -> bool:
    if endpoint is None or endpoint.config is None:
        return False
    if not endpoint.state.config_update or endpoint.state.config_update.value != "NOT_UPDATING":
        return False  # updating, or a failed update to clear by applying the config again
    entities, routes = serving_entities(endpoint.config), serving_routes(endpoint)
    return set(entities) == set(expected) and all(
        entities[n].entity_name == m and str(entities[n].entity_version) == str(v) and routes.get(n, 0) == p
        for n, (m, v, p) in expected.items()
    )


class ServingEndpointOperator(_ServingOperator):
    """
    Keep ``endpoint_name`` on exactly ``version`` of ``model_name`` with all traffic: create the
    endpoint if it does not exist, update it otherwise, and wait until the version serves.
    Returns (XCom) the endpoint name and its served entities.

    :param endpoint_name: the serving endpoint.
    :param model_name: Unity Catalog model, ``catalog.schema.model``.
    :param version: exact version to serve (templated; resolve aliases before).
    :param workload_size: Small, Medium or Large (default: the current entity's, else Small).
    :param scale_to_zero_enabled: stop when idle (default: the current entity's, else False).
    :param environment_vars: environment of the served model.
    :param auto_capture_config: inference table settings (catalog_name, schema_name,
        table_name_prefix, enabled), or None to keep the endpoint's.
    :param databricks_conn_id: Airflow connection of the workspace.
    :param timeout_seconds: how long the update may take.
    :param poll_interval: seconds between polls of the endpoint.
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    """

    template_fields: Sequence[str] = ("endpoint_name", "model_name", "version", "environment_vars")

    def __init__(
        self,
        *,
        version: str | int,
        workload_size: str | None = None,
        scale_to_zero_enabled: bool | None = None,
        environment_vars: dict[str, str] | None = None,
        auto_capture_config: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.version = version
        self.workload_size = workload_size
        self.scale_to_zero_enabled = scale_to_zero_enabled
        self.environment_vars = environment_vars
        self.auto_capture_config = auto_capture_config
        if workload_size is not None and workload_size not in WORKLOAD_SIZES:
            raise ValueError(
                f"{type(self).__name__}: workload_size must be one of {WORKLOAD_SIZES}, got {workload_size!r}"
            )

    def _like(self, endpoint: Any) -> Any:
        """The entity whose settings a new one inherits: this version's, else the model's first."""
        entities = serving_entities(getattr(endpoint, "config", None))
        name = served_entity_name(self.model_name, _exact_version(self.version))
        if name in entities:
            return entities[name]
        return next((e for e in entities.values() if e.entity_name == self.model_name), None)

    def plan(self, endpoint: Any):
        version = _exact_version(self.version)
        entity = self._entity(
            version,
            like=self._like(endpoint),
            workload_size=self.workload_size,
            scale_to_zero_enabled=self.scale_to_zero_enabled,
            environment_vars=self.environment_vars,
        )
        return [entity], {entity["name"]: 100}, self.auto_capture_config


class StartServingCanaryOperator(_ServingOperator):
    """
    Serve ``candidate_version`` beside the version the endpoint serves now, with
    ``traffic_percentage`` of the traffic. The endpoint must serve exactly one version of
    ``model_name`` (the champion); the candidate inherits its settings. Returns (XCom) the
    endpoint, its served entities, ``champion_version`` and ``candidate_served_entity``.

    :param endpoint_name: the serving endpoint.
    :param model_name: Unity Catalog model, ``catalog.schema.model``.
    :param candidate_version: exact version of the candidate (templated).
    :param traffic_percentage: the candidate's share, 1 to 99.
    """

    template_fields: Sequence[str] = (
        "endpoint_name",
        "model_name",
        "candidate_version",
        "traffic_percentage",
    )

    def __init__(self, *, candidate_version: str | int, traffic_percentage: int = 10, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.candidate_version = candidate_version
        self.traffic_percentage = traffic_percentage

    def plan(self, endpoint: Any):
        candidate = _exact_version(self.candidate_version, "candidate_version")
        share = int(self.traffic_percentage)
        if not 1 <= share <= 99:
            raise ServingEndpointError(f"traffic_percentage must be 1 to 99 for a canary, got {share}")
        if endpoint is None or endpoint.config is None:
            raise ServingEndpointError(
                f"Serving endpoint {self.endpoint_name!r} does not serve a version yet, so there is nothing to "
                "put a canary beside: deploy the champion first (ServingEndpointOperator)."
            )
        candidate_name = served_entity_name(self.model_name, candidate)
        entities, routes = serving_entities(endpoint.config), serving_routes(endpoint)
        champions = [e for n, e in entities.items() if n != candidate_name and routes.get(n, 0) > 0]
        if len(champions) != 1 or champions[0].entity_name != self.model_name:
            raise ServingEndpointError(
                f"Serving endpoint {self.endpoint_name!r} serves {describe(endpoint)}; a canary needs it to serve "
                f"one version of {self.model_name!r}. Put it back on the champion first (RevertServingCanaryOperator)."
            )
        champion = champions[0]
        if str(champion.entity_version) == candidate:
            raise ServingEndpointError(
                f"Version {candidate} of {self.model_name!r} already serves all traffic of {self.endpoint_name!r}: "
                "there is no new candidate to try."
            )
        keep = self._entity(str(champion.entity_version), like=champion, name=champion.name)
        new = self._entity(candidate, like=champion)
        self._champion_version = str(champion.entity_version)
        return [keep, new], {keep["name"]: 100 - share, new["name"]: share}, None

    def execute(self, context: Context) -> dict[str, Any]:
        result = super().execute(context)
        return self._canary_result(result)

    def execute_complete(
        self, context: Context, event: dict[str, Any], expected: dict[str, list] | None = None
    ) -> dict[str, Any]:
        return self._canary_result(super().execute_complete(context, event, expected))

    def _canary_result(self, result: dict[str, Any]) -> dict[str, Any]:
        candidate = _exact_version(self.candidate_version, "candidate_version")
        name = served_entity_name(self.model_name, candidate)
        champion = next(v["version"] for n, v in result["served_entities"].items() if n != name)
        return {**result, "champion_version": champion, "candidate_served_entity": name}


class PromoteServingCanaryOperator(ServingEndpointOperator):
    """
    Give the canary's candidate all the traffic (the champion's entity is removed). Same as
    :class:`ServingEndpointOperator` on ``version`` = the candidate, keeping its settings;
    refused when the endpoint serves neither the candidate nor only it.
    """

    def plan(self, endpoint: Any):
        version = _exact_version(self.version)
        if served_entity_name(self.model_name, version) not in serving_entities(
            getattr(endpoint, "config", None)
        ):
            raise ServingEndpointError(
                f"Serving endpoint {self.endpoint_name!r} serves {describe(endpoint)}: version {version} of "
                f"{self.model_name!r} is not on it, so there is no canary to promote. Start the canary first."
            )
        return super().plan(endpoint)


class RevertServingCanaryOperator(ServingEndpointOperator):
    """
    Put the endpoint back on ``version`` (the champion it served before the canary) with all
    traffic. Also clears a failed canary update. Same as :class:`ServingEndpointOperator`.
    """


# --------------------------------------------------------------------------- smoke check


def _p99(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


def smoke_check(
    hook: ServingEndpointHook,
    endpoint_name: str,
    rows: list[dict[str, Any]],
    *,
    served_entity: str | None = None,
    expected_predictions: list[Any] | None = None,
    max_error_rate: float = 0.0,
    max_p99_ms: float = 1000.0,
    tolerance: float = 1e-6,
) -> dict[str, Any]:
    """Send each row as one request (``dataframe_records``) and check the answers.

    Returns a report (requests, errors, error_rate, p50_ms, p99_ms, mismatches, first_error);
    raises :class:`ServingSmokeCheckError` when the error rate, the p99 latency or an answer
    that differs from ``expected_predictions`` (beyond ``tolerance``) breaks the bounds.
    """
    from databricks.sdk.errors import DatabricksError

    if not rows:
        raise ServingSmokeCheckError(f"No rows to send to serving endpoint {endpoint_name!r}.")
    if expected_predictions is not None and len(expected_predictions) != len(rows):
        raise ServingSmokeCheckError(
            f"{len(rows)} rows but {len(expected_predictions)} expected predictions: give one per row."
        )
    latencies, errors, mismatches, first_error = [], 0, [], None
    for i, row in enumerate(rows):
        started = time.monotonic()
        try:
            answer = hook.invoke(endpoint_name, {"dataframe_records": [row]}, served_entity)
        except DatabricksError as exc:
            errors += 1
            first_error = first_error or f"row {i}: {exc.error_code}: {exc}"
            continue
        finally:
            latencies.append((time.monotonic() - started) * 1000)
        if expected_predictions is not None:
            got = (answer.get("predictions") or [None])[0]
            want = expected_predictions[i]
            if not _same(got, want, tolerance):
                mismatches.append({"row": i, "expected": want, "got": got})
    ordered = sorted(latencies)
    report = {
        "endpoint_name": endpoint_name,
        "served_entity": served_entity,
        "requests": len(rows),
        "errors": errors,
        "error_rate": errors / len(rows),
        "p50_ms": round(ordered[len(ordered) // 2], 2),
        "p99_ms": round(_p99(latencies), 2),
        "mismatches": len(mismatches),
        "first_error": first_error,
        "first_mismatches": mismatches[:5],
    }
    target = f"{served_entity or 'the endpoint'} of {endpoint_name!r}"
    problems = []
    if report["error_rate"] > max_error_rate:
        problems.append(
            f"error rate {report['error_rate']:.1%} > {max_error_rate:.1%} (first: {first_error})"
        )
    if report["p99_ms"] > max_p99_ms:
        problems.append(f"p99 latency {report['p99_ms']} ms > {max_p99_ms} ms")
    if mismatches:
        problems.append(
            f"{len(mismatches)} of {len(rows)} answers differ from the expected predictions "
            f"(first: {mismatches[:3]})"
        )
    if problems:
        raise ServingSmokeCheckError(
            f"Smoke check of {target} failed: {'; '.join(problems)}. Report: {report}"
        )
    return report


def _same(got: Any, want: Any, tolerance: float) -> bool:
    if isinstance(got, (int, float)) and isinstance(want, (int, float)):
        return abs(float(got) - float(want)) <= tolerance * max(1.0, abs(float(want)))
    return got == want


class ServingSmokeCheckOperator(BaseOperator):
    """
    Send ``rows`` through a serving endpoint (or one served entity of it) and fail unless the
    answers equal ``expected_predictions`` and the error rate and p99 latency stay in bounds.
    Returns the report (XCom).

    :param endpoint_name: the serving endpoint.
    :param rows: records to send, one request each (templated; an XCom of records works).
    :param served_entity: query this served entity only (the canary's candidate), or None.
    :param expected_predictions: one expected answer per row (e.g. the validation run's).
    :param max_error_rate: highest share of failed requests allowed.
    :param max_p99_ms: highest p99 latency allowed (ms).
    :param tolerance: relative tolerance when comparing numeric predictions.
    :param databricks_conn_id: Airflow connection of the workspace.
    """

    template_fields: Sequence[str] = ("endpoint_name", "rows", "served_entity", "expected_predictions")

    def __init__(
        self,
        *,
        endpoint_name: str,
        rows: list[dict[str, Any]] | str,
        served_entity: str | None = None,
        expected_predictions: list[Any] | str | None = None,
        max_error_rate: float = 0.0,
        max_p99_ms: float = 1000.0,
        tolerance: float = 1e-6,
        databricks_conn_id: str = ServingEndpointHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.endpoint_name = endpoint_name
        self.rows = rows
        self.served_entity = served_entity
        self.expected_predictions = expected_predictions
        self.max_error_rate = max_error_rate
        self.max_p99_ms = max_p99_ms
        self.tolerance = tolerance
        self.databricks_conn_id = databricks_conn_id
        if not 0 <= max_error_rate <= 1:
            raise ValueError(f"{type(self).__name__}: max_error_rate must be in [0, 1], got {max_error_rate}")

    @cached_property
    def hook(self) -> ServingEndpointHook:
        return ServingEndpointHook(self.databricks_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        report = smoke_check(
            self.hook,
            self.endpoint_name,
            list(self.rows),
            served_entity=self.served_entity,
            expected_predictions=None
            if self.expected_predictions is None
            else list(self.expected_predictions),
            max_error_rate=self.max_error_rate,
            max_p99_ms=self.max_p99_ms,
            tolerance=self.tolerance,
        )
        self.log.info("Smoke check passed: %s", report)
        return report
