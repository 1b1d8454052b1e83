"""Hook for an MLflow model registry: an MLflow tracking server or a Databricks workspace."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.sdk import BaseHook

from mlops._auth import ContextThreadPool, auth_headers, default_uris, scoped_env
from mlops.exceptions import ModelRegistryError, ModelRegistryNotFoundError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion, RegisteredModel

_NOT_FOUND_CODES = {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}


def _error_code(exc: BaseException) -> str | None:
    return getattr(exc, "error_code", None)


_SIGNIN_HELP = (
    "a personal access token in the password (no login); or an Entra ID service principal: login = "
    "client id, password = client secret, extra azure_tenant_id (and azure_resource_id if it is not "
    "a workspace user); or extra use_azure_managed_identity: true; or a Databricks OAuth secret: "
    "login = client id, password = secret, extra service_principal_oauth: true"
)


def _signin_method(conn: Any) -> str:
    """Which of the provider's sign-in flows the connection selects (its order), for messages."""
    extra = conn.extra_dejson
    if "token" in extra or (conn.password and not conn.login):
        return "personal access token"
    if "azure_tenant_id" in extra:
        return "Entra ID service principal"
    if extra.get("use_azure_managed_identity"):
        return "Azure managed identity"
    if extra.get("use_default_azure_credential"):
        return "DefaultAzureCredential"
    if extra.get("service_principal_oauth"):
        return "Databricks OAuth M2M"
    if extra.get("federated_token_provider") or extra.get("federated_aws") or extra.get("federated_k8s"):
        return "OIDC token federation"
    return "basic auth" if conn.login and conn.password else "no sign-in configured"


def _redact(text: str, *secrets: str | None) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def _url_from_connection(host: str | None, schema: str | None, port: int | None, default_scheme: str) -> str:
    """``http://host:port`` from an Airflow connection that holds either a URL or a bare host."""
    if not host:
        raise ValueError("the connection has no host")
    if "://" in host:
        parts = urlsplit(host)
        netloc = parts.netloc
        if port and ":" not in netloc:
            netloc = f"{netloc}:{port}"
        return f"{parts.scheme}://{netloc}{parts.path}".rstrip("/")
    scheme = schema if schema in ("http", "https") else default_scheme
    return f"{scheme}://{host}{f':{port}' if port else ''}".rstrip("/")


class MlflowRegistryHook(BaseHook):
    """
    Talks to an MLflow model registry through ``mlflow.MlflowClient``.

    Either an MLflow tracking server (``mlflow_conn_id``: conn type http or generic with host,
    port and schema; a password alone is sent as bearer token, login + password as basic auth;
    extra ``registry_uri`` for a separate registry) or a Databricks workspace
    (``databricks_conn_id``: signed in per call by the provider's ``DatabricksHook`` exactly as
    for its operators: personal access token, Entra ID service principal, managed identity or
    Databricks OAuth; the registry is ``databricks-uc`` unless ``registry_uri`` or the
    connection's extra ``registry_uri`` says ``databricks``).

    :param mlflow_conn_id: Airflow connection of the MLflow tracking server.
    :param databricks_conn_id: Airflow connection of a Databricks workspace; wins when given.
    :param registry_uri: registry URI overriding the connection's (e.g. ``databricks``).
    """

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "mlflow_default"
    # Connections of type "http" or "generic" are accepted; "http" is what the UI should offer.
    conn_type = "http"
    hook_name = "MLflow Model Registry"

    def __init__(
        self,
        mlflow_conn_id: str = default_conn_name,
        *,
        databricks_conn_id: str | None = None,
        registry_uri: str | None = None,
    ) -> None:
        super().__init__()
        self.mlflow_conn_id = mlflow_conn_id
        self.databricks_conn_id = databricks_conn_id
        self.registry_uri_override = registry_uri
        self._connections: dict[str, Any] = {}

    def use_connection(self, conn: Any) -> None:
        """Use ``conn`` (fetched elsewhere, e.g. asynchronously in a trigger) instead of looking it up."""
        self._connections[conn.conn_id] = conn

    def _connection(self, conn_id: str) -> Any:
        return self._connections.get(conn_id) or self.get_connection(conn_id)

    # ------------------------------------------------------------------ connection

    @cached_property
    def _settings(self) -> dict[str, Any]:
        """URIs and the per-call credentials (headers or env) from the Airflow connection."""
        if self.databricks_conn_id:
            conn = self._connection(self.databricks_conn_id)
            extra = conn.extra_dejson
            host = _url_from_connection(conn.host, conn.schema, conn.port, "https")
            registry = self.registry_uri_override or extra.get("registry_uri") or "databricks-uc"
            if registry.split(":", 1)[0] not in ("databricks", "databricks-uc"):
                raise ModelRegistryError(
                    f"registry_uri {registry!r} is not a Databricks registry; use 'databricks' "
                    "(workspace registry) or 'databricks-uc' (Unity Catalog) with a Databricks connection."
                )
            # No credentials here: the provider's hook signs in per call (see _workspace_credentials).
            return {
                "tracking_uri": "databricks",
                "registry_uri": registry,
                "label": f"{registry} on {host}",
                "headers": None,
                "env": None,
            }
        conn = self._connection(self.mlflow_conn_id)
        if conn.conn_type not in ("http", "generic", "mlflow", None, ""):
            self.log.warning(
                "Connection %s has conn_type %s; reading host, port, schema and password as for http.",
                self.mlflow_conn_id,
                conn.conn_type,
            )
        extra = conn.extra_dejson
        url = _url_from_connection(conn.host, conn.schema, conn.port, "http")
        headers: dict[str, str] = {}
        token = extra.get("token") or (conn.password if not conn.login else None)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif conn.login and conn.password:
            import base64

            basic = base64.b64encode(f"{conn.login}:{conn.password}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        registry = self.registry_uri_override or extra.get("registry_uri") or url
        return {
            "tracking_uri": url,
            "registry_uri": registry,
            "label": registry,
            "headers": headers,
            "env": None,
        }

    @property
    def tracking_uri(self) -> str:
        return self._settings["tracking_uri"]

    @property
    def registry_uri(self) -> str:
        return self._settings["registry_uri"]

    @property
    def registry_label(self) -> str:
        """Where the registry is, for messages and lineage tags: no credentials in it."""
        return self._settings["label"]

    @property
    def supports_aliases(self) -> bool:
        """False for the Databricks workspace registry, which only knows (deprecated) stages."""
        return self.registry_uri.split(":", 1)[0] != "databricks"

    def require_aliases(self, model_name: str) -> None:
        if not self.supports_aliases:
            raise ModelRegistryError(
                f"The Databricks workspace registry ({self.registry_label}) has no aliases, so model "
                f"{model_name!r} cannot get one. Use TransitionModelVersionStageOperator there, or "
                "registry_uri='databricks-uc' (Unity Catalog) for aliases."
            )

    def get_conn(self) -> MlflowClient:
        """The MLflow client (created once per hook); calls must go through :meth:`_call`."""
        return self._client

    @cached_property
    def _client(self) -> MlflowClient:
        from mlflow import MlflowClient

        with self._credentials():
            return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)

    @contextmanager
    def _credentials(self) -> Iterator[None]:
        """Credentials for one client call; on a workspace, fresh from the provider's sign-in."""
        if self.databricks_conn_id:
            env, headers = self._workspace_credentials()
            # The SDK reads the token from the environment; the provider's Azure headers
            # (management token) go through MLflow's request-header providers.
            with scoped_env(env), default_uris(self.tracking_uri, self.registry_uri), auth_headers(headers):
                yield
            return
        with auth_headers(self._settings["headers"]):
            yield

    @cached_property
    def _signin(self) -> Any:
        """The provider's ``DatabricksHook`` for the connection: its sign-in and its token cache."""
        from airflow.providers.databricks.hooks.databricks import DatabricksHook

        hook = DatabricksHook(self.databricks_conn_id, caller=type(self).__name__)
        conn = self._connections.get(self.databricks_conn_id)
        if conn is not None:
            # As the provider's own _a_cache_databricks_conn does: a connection fetched
            # asynchronously (in a trigger) fills the hook's cache, so no sync lookup is needed.
            hook.__dict__["databricks_conn"] = conn
        return hook

    def _workspace_credentials(self) -> tuple[dict[str, str], dict[str, str]]:
        """(environment, headers) for one call, signed in exactly as the provider's hook would.

        ``DatabricksHook._get_token`` picks the flow from the connection (personal access token,
        Entra service principal, managed identity, DefaultAzureCredential, Databricks OAuth M2M,
        OIDC federation) and caches OAuth tokens until shortly before they expire
        (``_is_oauth_token_valid``), so each call gets a valid token and a refresh happens in
        time. ``_get_aad_headers`` adds the management-token headers when ``azure_resource_id``
        is set. The order of the two calls is the one of the provider's ``_do_api_call``.
        """
        signin = self._signin
        conn = signin.databricks_conn
        method = _signin_method(conn)
        try:
            headers = signin._get_aad_headers()
            token = signin._get_token()
        except Exception as exc:
            raise ModelRegistryError(
                _redact(
                    f"Signing in to Databricks connection {self.databricks_conn_id!r} ({method}) failed: "
                    f"{exc}. Check the connection's login, password and extra ({_SIGNIN_HELP}).",
                    conn.password,
                    conn.extra_dejson.get("token"),
                )
            ) from None
        # The workspace URL as the provider's API calls build it (extra host, schema, port).
        env = {"DATABRICKS_HOST": signin._endpoint_url("").rstrip("/")}
        if token:
            env.update(DATABRICKS_TOKEN=token, DATABRICKS_AUTH_TYPE="pat")
        elif conn.login and conn.password:
            # No token flow configured: the provider falls back to basic auth with login/password.
            env.update(
                DATABRICKS_USERNAME=conn.login,
                DATABRICKS_PASSWORD=conn.password,
                DATABRICKS_AUTH_TYPE="basic",
            )
        else:
            raise ModelRegistryError(
                f"Databricks connection {self.databricks_conn_id!r} has no sign-in configured: {_SIGNIN_HELP}."
            )
        return env, headers

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        client = self._client
        with self._credentials():
            return getattr(client, method)(*args, **kwargs)

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.search_registered_model_names(max_results=1)
        except Exception as exc:
            return False, str(exc)
        return True, f"Connected to the MLflow registry at {self.registry_label}"

    # ------------------------------------------------------------------ registered models

    def search_registered_model_names(self, max_results: int = 50) -> list[str]:
        """Names of (up to ``max_results``) registered models, for error messages."""
        return [m.name for m in self._call("search_registered_models", max_results=max_results)]

    def get_registered_model(self, name: str) -> RegisteredModel:
        """The registered model ``name``; a not-found error lists the models that exist."""
        try:
            return self._call("get_registered_model", name)
        except Exception as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                raise ModelRegistryNotFoundError(self.describe_missing_model(name)) from exc
            raise

    def create_registered_model(self, name: str, tags: dict[str, str] | None = None) -> RegisteredModel:
        return self._call("create_registered_model", name, tags=tags)

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        self._call("set_registered_model_tag", name, key, value)

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self._call("set_registered_model_alias", name, alias, str(version))

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        self._call("delete_registered_model_alias", name, alias)

    # ------------------------------------------------------------------ model versions

    def get_model_version(self, name: str, version: str | int) -> ModelVersion:
        """Version ``version`` of ``name``; a not-found error lists the versions and aliases."""
        try:
            return self._call("get_model_version", name, str(version))
        except Exception as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                raise ModelRegistryNotFoundError(
                    f"Version {version} of model {name!r} not found in {self.registry_label}. "
                    f"{self.describe_model(name)}"
                ) from exc
            raise

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        """The version ``alias`` points at; a not-found error lists the aliases that exist."""
        try:
            return self._call("get_model_version_by_alias", name, alias)
        except Exception as exc:
            # MLflow servers answer INVALID_PARAMETER_VALUE for a missing alias, Databricks NOT_FOUND.
            if _error_code(exc) in _NOT_FOUND_CODES | {"INVALID_PARAMETER_VALUE"}:
                raise ModelRegistryNotFoundError(
                    f"Alias {alias!r} of model {name!r} not found in {self.registry_label}. "
                    f"{self.describe_model(name)}"
                ) from exc
            raise

    def search_model_versions(self, name: str, max_results: int = 200) -> list[ModelVersion]:
        """Every version of ``name`` (all pages), with its tags and aliases.

        Unity Catalog answers a search with versions that have no tags or aliases (MLflow's
        ``ModelVersionSearch`` raises on both, as Databricks documents); those are read once more
        with ``get_model_version`` so callers see the same versions on every registry.
        """
        from mlflow.entities.model_registry.model_version_search import ModelVersionSearch

        found: list[ModelVersion] = []
        token = None
        while True:
            page = self._call(
                "search_model_versions",
                filter_string=f"name = '{name}'",
                max_results=max_results,
                page_token=token,
            )
            found.extend(
                self._call("get_model_version", name, mv.version)
                if isinstance(mv, ModelVersionSearch)
                else mv
                for mv in page
            )
            token = getattr(page, "token", None)
            if not token:
                return found

    def create_model_version(
        self,
        name: str,
        source: str,
        *,
        run_id: str | None = None,
        tags: dict[str, str] | None = None,
        model_id: str | None = None,
    ) -> ModelVersion:
        return self._call(
            "create_model_version",
            name,
            source,
            run_id=run_id,
            tags=tags,
            model_id=model_id,
            await_creation_for=0,
        )

    def copy_model_version(self, src_model_uri: str, dst_name: str) -> ModelVersion:
        return self._call("copy_model_version", src_model_uri, dst_name)

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self._call("set_model_version_tag", name, str(version), key, value)

    def transition_model_version_stage(
        self, name: str, version: str, stage: str, archive_existing_versions: bool = False
    ) -> ModelVersion:
        return self._call(
            "transition_model_version_stage",
            name,
            str(version),
            stage,
            archive_existing_versions=archive_existing_versions,
        )

    def get_model_version_download_uri(self, name: str, version: str) -> str:
        return self._call("get_model_version_download_uri", name, str(version))

    def wait_until_ready(self, name: str, version: str, timeout: float, poll: float = 1.0) -> ModelVersion:
        """Poll one version until READY; fail on FAILED_REGISTRATION or after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            mv = self.get_model_version(name, version)
            status = str(mv.status)
            if status == "READY":
                return mv
            if status == "FAILED_REGISTRATION":
                raise ModelRegistryError(
                    f"Version {version} of model {name!r} failed registration in {self.registry_label}: "
                    f"{mv.status_message or 'no message'}. Check the source {mv.source!r} and register again."
                )
            if time.monotonic() >= deadline:
                raise ModelRegistryError(
                    f"Version {version} of model {name!r} is still {status} after {timeout:.0f}s in "
                    f"{self.registry_label}; raise await_ready_timeout or check the registry."
                )
            time.sleep(poll)

    # ------------------------------------------------------------------ runs and artifacts

    def get_run(self, run_id: str) -> Run:
        return self._call("get_run", run_id)

    def get_logged_model(self, model_id: str) -> Any:
        return self._call("get_logged_model", model_id)

    def get_experiment_by_name(self, name: str) -> Any:
        return self._call("get_experiment_by_name", name)

    def create_experiment(self, name: str) -> str:
        return self._call("create_experiment", name)

    def create_run(self, experiment_id: str, tags: dict[str, str] | None = None) -> Run:
        return self._call("create_run", experiment_id, tags=tags)

    def log_batch(self, run_id: str, metrics: dict[str, float], params: dict[str, str]) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        self._call(
            "log_batch",
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
            params=[Param(k, str(v)) for k, v in params.items()],
        )

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str | None = None) -> None:
        self._call("log_artifacts", run_id, local_dir, artifact_path)

    def set_terminated(self, run_id: str, status: str = "FINISHED") -> None:
        self._call("set_terminated", run_id, status)

    def download_artifacts(self, artifact_uri: str, dst_path: str) -> str:
        """Download everything under ``artifact_uri`` into ``dst_path``; return the local path."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        with self._credentials():
            repo = get_artifact_repository(
                artifact_uri, tracking_uri=self.tracking_uri, registry_uri=self.registry_uri
            )
            # MLflow downloads files on a thread pool; ours carries the call's auth headers along.
            repo.thread_pool = ContextThreadPool(max_workers=4, thread_name_prefix="mlops-download")
            try:
                return repo.download_artifacts("", dst_path=dst_path)
            finally:
                repo.thread_pool.shutdown(wait=True)

    # ------------------------------------------------------------------ descriptions for errors

    def describe_model(self, name: str) -> str:
        """'Versions: 1, 2 (PENDING_REGISTRATION). Aliases: champion -> 2.' or why it is unknown."""
        try:
            model = self._call("get_registered_model", name)
        except Exception as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                return self.describe_missing_model(name)
            return f"(could not list the versions of {name!r}: {exc})"
        versions = sorted(self.search_model_versions(name), key=lambda mv: int(mv.version))
        listed = ", ".join(
            mv.version if str(mv.status) == "READY" else f"{mv.version} ({mv.status})" for mv in versions
        )
        aliases = ", ".join(f"{a} -> {v}" for a, v in sorted((model.aliases or {}).items()))
        return f"Model {name!r} has versions: {listed or 'none'}; aliases: {aliases or 'none'}."

    def describe_missing_model(self, name: str) -> str:
        try:
            names = self.search_registered_model_names(max_results=20)
        except Exception:
            names = []
        return (
            f"Registered model {name!r} not found in {self.registry_label}. "
            f"Registered models there: {', '.join(sorted(names)) or 'none'}. "
            "Check model_name (Unity Catalog names are catalog.schema.model)."
        )
