"""The Unity Catalog model registry (``databricks-uc``), kept in the devstack's MLflow server.

Registered models live in the real MLflow server's registry under their full three-level name
(``dev.ml.diabetes``), so every workspace started with the same ``--mlflow-tracking-uri`` sees
the same models, versions and aliases (one metastore), and the MLflow UI shows them. Catalogs and
schemas come from the shared :class:`~devstack.workspace.unity_catalog.backend.Metastore`, whose
managed storage (``<metastore>/models/<catalog>/<schema>/<model>/<version>/``) holds each
version's files, written and read through presigned URLs (:class:`PresignedUrls`).

What Unity Catalog keeps and the MLflow server does not - a version's PENDING_REGISTRATION
status until ``finalize``, its ``model_id`` - are reserved tags (:data:`RESERVED_TAG_PREFIX`) on
the MLflow model version, hidden from Unity Catalog answers.

No HTTP here: :mod:`.uc_registry_api` renders these records with mlflow's protos.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.workspace.http import ApiError

# Reserved tag prefix: tags under it are the emulator's bookkeeping, never shown through UC.
RESERVED_TAG_PREFIX = "devstack.uc."
STATUS_TAG = RESERVED_TAG_PREFIX + "status"
# The MLflow server does not keep a version's model_id (the logged model it came from); UC does.
MODEL_ID_TAG = RESERVED_TAG_PREFIX + "model_id"
# The workspace the source run was tracked in (UC's run_tracking_server_id).
RUN_WORKSPACE_TAG = RESERVED_TAG_PREFIX + "run_tracking_server_id"
PENDING = "PENDING_REGISTRATION"
READY = "READY"
# UC names: letters, digits, underscores (hyphens when back-quoted); stored in lower case.
NAME_PART = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
CREDENTIALS_TTL_SECONDS = 3600
MODELS_PREFIX = "/Models/"
# The filters Unity Catalog's model-version search takes: name = '...' or run_id = '...'.
VERSION_FILTER = re.compile(r"""^\s*(name|run_id)\s*=\s*(?:'([^']*)'|"([^"]*)")\s*$""")
# The artifact location of an MLflow 3 logged model: <root>/<experiment>/models/<model_id>/artifacts
LOGGED_MODEL_ARTIFACTS = re.compile(r"^mlflow-artifacts:/[^/]+/models/(m-[0-9a-f]+)/artifacts/?$")


def invalid(message: str) -> ApiError:
    return ApiError(400, "INVALID_PARAMETER_VALUE", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "RESOURCE_DOES_NOT_EXIST", message)


@dataclass
class Version:
    """A model version as Unity Catalog reports it: the MLflow record plus UC's own fields."""

    mv: Any  # mlflow.entities.model_registry.ModelVersion
    status: str
    storage_location: str

    @property
    def model_id(self) -> str:
        return self.mv.tags.get(MODEL_ID_TAG) or self.mv.model_id or ""

    @property
    def run_tracking_server_id(self) -> str:
        return self.mv.tags.get(RUN_WORKSPACE_TAG, "")

    @property
    def tags(self) -> dict[str, str]:
        return {k: v for k, v in self.mv.tags.items() if not k.startswith(RESERVED_TAG_PREFIX)}


class UcModelRegistry:
    """Registered models and versions of the shared metastore, with Unity Catalog's rules.

    :param tracking_uri: the devstack's MLflow server (its registry stores the models).
    :param metastore: the shared metastore (catalogs, schemas, model storage directories).
    """

    def __init__(self, tracking_uri: str | None, metastore: Any):
        self.tracking_uri = tracking_uri
        self.metastore = metastore
        self._client = None
        self._lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def client(self):
        """MLflow's own client on the MLflow server (imported on first use: mlflow is heavy)."""
        if self._client is None:
            if not self.tracking_uri:
                raise ApiError(
                    501,
                    "FEATURE_DISABLED",
                    "The Unity Catalog model registry needs the devstack's MLflow server: start the "
                    "workspace with --mlflow-tracking-uri.",
                )
            if self.metastore is None:
                raise ApiError(501, "FEATURE_DISABLED", "This workspace has no Unity Catalog metastore.")
            with self._lock:
                if self._client is None:
                    from mlflow.tracking import MlflowClient

                    self._client = MlflowClient(
                        tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
                    )
        return self._client

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call the MLflow server, answering its refusals with their own status and error code."""
        from mlflow.exceptions import MlflowException

        try:
            return getattr(self.client, method)(*args, **kwargs)
        except MlflowException as exc:
            raise ApiError(exc.get_http_status_code(), exc.error_code, exc.message) from None

    def full_name(self, name: str | None) -> tuple[str, str, str, str]:
        """``(full_name, catalog, schema, model)`` of a UC model name whose schema exists.

        A name with fewer levels gets the wording MLflow's client turns into its "use the
        workspace registry" hint (it matches "specify all three levels"); the message follows
        Databricks' answer as users report it (mlflow/mlflow issue #13833).
        """
        parts = (name or "").split(".")
        if len(parts) != 3 or not all(parts):
            raise invalid(
                f"Bad model name {name!r}: please specify all three levels of the model in the form "
                "`catalog_name.schema_name.model_name`."
            )
        for part in parts:
            if not NAME_PART.match(part):
                raise invalid(
                    f"Invalid model name {name!r}: {part!r} must use letters, digits and underscores "
                    "(at most 255 characters)."
                )
        catalog, schema, model = (p.lower() for p in parts)
        self.metastore.require_schema(catalog, schema)
        return f"{catalog}.{schema}.{model}", catalog, schema, model

    @staticmethod
    def _version_number(version: Any) -> str:
        text = str(version if version is not None else "").strip()
        if not text.isdigit() or int(text) < 1:
            raise invalid(f"Invalid model version {version!r}: versions are positive integers, e.g. '1'.")
        return str(int(text))

    def _storage_dir(self, full: str, version: str) -> Path:
        # local_path only maps (no directory created): rendering a version has no side effect.
        catalog, schema, model = full.split(".")
        return self.metastore.local_path(f"{MODELS_PREFIX}{catalog}/{schema}/{model}/{version}")

    def _model_dir(self, full: str) -> Path:
        # The parent of any version's directory; local_path does not create it.
        catalog, schema, model = full.split(".")
        return self.metastore.local_path(f"{MODELS_PREFIX}{catalog}/{schema}/{model}/1").parent

    def _render(self, mv: Any) -> Version:
        status = PENDING if mv.tags.get(STATUS_TAG) == PENDING else READY
        location = self._storage_dir(mv.name, mv.version).as_uri()
        return Version(mv=mv, status=status, storage_location=location)

    def _require_model(self, full: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_registered_model(full)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise not_found(
                    f"Registered model '{full}' does not exist. Create it first "
                    "(mlflow.register_model or MlflowClient().create_registered_model)."
                ) from None
            raise ApiError(exc.get_http_status_code(), exc.error_code, exc.message) from None

    def _require_version(self, full: str, version: Any) -> Any:
        from mlflow.exceptions import MlflowException

        number = self._version_number(version)
        try:
            return self.client.get_model_version(full, number)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise ApiError(exc.get_http_status_code(), exc.error_code, exc.message) from None
        self._require_model(full)
        raise not_found(f"Model version {number} of registered model '{full}' does not exist.")

    @staticmethod
    def _check_tag_key(key: str | None) -> str:
        if not key:
            raise invalid("Missing required field: key")
        if key.startswith(RESERVED_TAG_PREFIX):
            raise invalid(
                f"Invalid tag key {key!r}: keys starting with {RESERVED_TAG_PREFIX!r} are reserved."
            )
        return key

    # -- registered models ------------------------------------------------------------------

    def create_registered_model(self, name: str, description: str = "", tags: dict[str, str] | None = None):
        full, *_ = self.full_name(name)
        for key in tags or {}:
            self._check_tag_key(key)
        from mlflow.exceptions import MlflowException

        try:
            return self.client.create_registered_model(
                full, tags=tags or None, description=description or None
            )
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_ALREADY_EXISTS":
                raise ApiError(
                    400, "RESOURCE_ALREADY_EXISTS", f"Registered model '{full}' already exists."
                ) from None
            raise ApiError(exc.get_http_status_code(), exc.error_code, exc.message) from None

    def get_registered_model(self, name: str):
        full, *_ = self.full_name(name)
        return self._require_model(full)

    def update_registered_model(self, name: str, description: str | None = None, new_name: str | None = None):
        full, catalog, schema, _ = self.full_name(name)
        self._require_model(full)
        if description is not None:
            self._call("update_registered_model", full, description=description)
        if new_name:
            # The new name is the model's leaf name, or a full name in the same schema: a rename
            # never moves a model to another schema.
            target = new_name if "." in new_name else f"{catalog}.{schema}.{new_name}"
            target_full, t_catalog, t_schema, _ = self.full_name(target)
            if (t_catalog, t_schema) != (catalog, schema):
                raise invalid(
                    f"Cannot rename '{full}' to '{target_full}': a rename stays in schema "
                    f"'{catalog}.{schema}'; copy the versions instead (MlflowClient().copy_model_version)."
                )
            if target_full != full:
                self._call("rename_registered_model", full, target_full)
                old_dir, new_dir = self._model_dir(full), self._model_dir(target_full)
                if old_dir.exists():
                    if new_dir.exists():
                        shutil.rmtree(new_dir)
                    new_dir.parent.mkdir(parents=True, exist_ok=True)
                    old_dir.rename(new_dir)
                full = target_full
        return self._require_model(full)

    def delete_registered_model(self, name: str) -> None:
        full, *_ = self.full_name(name)
        self._require_model(full)
        self._call("delete_registered_model", full)
        shutil.rmtree(self._model_dir(full), ignore_errors=True)

    def search_registered_models(self, max_results: int | None, page_token: str | None):
        if max_results is not None and not 1 <= max_results <= 1000:
            raise invalid(f"Invalid value for field max_results: {max_results}; use 1 to 1000.")
        # Only three-level names belong to Unity Catalog; the MLflow server may hold others.
        page = self._call(
            "search_registered_models",
            filter_string="name LIKE '%.%.%'",
            max_results=max_results or 100,
            page_token=page_token or None,
        )
        return [rm for rm in page if rm.name.count(".") == 2], page.token

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        full, *_ = self.full_name(name)
        self._require_model(full)
        self._call("set_registered_model_tag", full, self._check_tag_key(key), value or "")

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        full, *_ = self.full_name(name)
        self._require_model(full)
        self._call("delete_registered_model_tag", full, self._check_tag_key(key))

    # -- aliases ----------------------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: Any) -> None:
        full, *_ = self.full_name(name)
        if not alias:
            raise invalid("Missing required field: alias")
        self._require_version(full, version)  # an alias must point at a version that exists
        self._call("set_registered_model_alias", full, alias, self._version_number(version))

    def delete_alias(self, name: str, alias: str) -> None:
        full, *_ = self.full_name(name)
        if not alias:
            raise invalid("Missing required field: alias")
        rm = self._require_model(full)
        if alias not in rm.aliases:
            raise not_found(f"Alias '{alias}' of registered model '{full}' does not exist.")
        self._call("delete_registered_model_alias", full, alias)

    def get_version_by_alias(self, name: str, alias: str) -> Version:
        full, *_ = self.full_name(name)
        rm = self._require_model(full)
        if alias not in rm.aliases:
            raise not_found(
                f"Alias '{alias}' of registered model '{full}' does not exist. Set it with "
                "MlflowClient().set_registered_model_alias(name, alias, version)."
            )
        return self._render(self._require_version(full, rm.aliases[alias]))

    # -- model versions ---------------------------------------------------------------------

    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str = "",
        description: str = "",
        tags: dict[str, str] | None = None,
        model_id: str = "",
        run_tracking_server_id: str = "",
    ) -> Version:
        full, *_ = self.full_name(name)
        if not source:
            raise invalid("Missing required field: source")
        for key in tags or {}:
            self._check_tag_key(key)
        self._require_model(full)
        logged = LOGGED_MODEL_ARTIFACTS.search(source)
        if not model_id and logged:
            # MLflow's client drops model_id when the tracking server is not Databricks and sends
            # the logged model's artifact location instead.
            model_id = logged.group(1)
        # The MLflow server checks a source against the model_id it is given (and keeps none):
        # it gets one only for sources that are a logged model's files; UC keeps it in a tag.
        server_model_id = model_id if (logged or source.startswith("models:/m-")) else None
        bookkeeping = {STATUS_TAG: PENDING}
        if model_id:
            bookkeeping[MODEL_ID_TAG] = model_id
        if run_tracking_server_id:
            bookkeeping[RUN_WORKSPACE_TAG] = run_tracking_server_id
        mv = self._call(
            "create_model_version",
            full,
            source,
            run_id=run_id or None,
            tags={**(tags or {}), **bookkeeping},
            description=description or None,
            model_id=server_model_id,
        )
        # A model deleted and created again reuses its directories: start each version empty.
        catalog, schema, model = full.split(".")
        storage = self.metastore.model_storage_dir(catalog, schema, model, mv.version)
        shutil.rmtree(storage, ignore_errors=True)
        storage.mkdir(parents=True, exist_ok=True)
        return self._render(mv)

    def finalize_model_version(self, name: str, version: Any) -> Version:
        """PENDING_REGISTRATION -> READY once the client has uploaded the files (idempotent)."""
        full, *_ = self.full_name(name)
        mv = self._require_version(full, version)
        if mv.tags.get(STATUS_TAG) == PENDING:
            self._call("delete_model_version_tag", full, mv.version, STATUS_TAG)
            mv = self._require_version(full, mv.version)
        return self._render(mv)

    def get_model_version(self, name: str, version: Any) -> Version:
        full, *_ = self.full_name(name)
        return self._render(self._require_version(full, version))

    def update_model_version(self, name: str, version: Any, description: str | None) -> Version:
        full, *_ = self.full_name(name)
        mv = self._require_version(full, version)
        if description is not None:
            self._call("update_model_version", full, mv.version, description=description)
        return self._render(self._require_version(full, mv.version))

    def delete_model_version(self, name: str, version: Any) -> None:
        full, *_ = self.full_name(name)
        mv = self._require_version(full, version)
        self._call("delete_model_version", full, mv.version)
        shutil.rmtree(self._storage_dir(full, mv.version), ignore_errors=True)

    def search_model_versions(
        self, filter_string: str | None, max_results: int | None, page_token: str | None
    ):
        if max_results is not None and not 1 <= max_results <= 10000:
            raise invalid(f"Invalid value for field max_results: {max_results}; use 1 to 10000.")
        if filter_string:
            # Unity Catalog takes one condition, on the model's name or the source run (mlflow's UC
            # store documents exactly these two); the MLflow server would accept more, Azure not.
            found = VERSION_FILTER.match(filter_string)
            if not found:
                raise invalid(
                    f"Unsupported filter {filter_string!r}: Unity Catalog searches model versions by one "
                    "condition, name = '<catalog>.<schema>.<model>' or run_id = '<run id>'."
                )
            field, value = found.group(1), found.group(2) if found.group(2) is not None else found.group(3)
            if field == "name":
                value = self.full_name(value)[0]
            if "'" in value:
                raise invalid(f"Invalid {field} {value!r} in the filter.")
            filter_string = f"{field} = '{value}'"
        page = self._call(
            "search_model_versions",
            filter_string=filter_string or "name LIKE '%.%.%'",
            max_results=max_results or 10000,
            page_token=page_token or None,
        )
        return [self._render(mv) for mv in page if mv.name.count(".") == 2], page.token

    def set_model_version_tag(self, name: str, version: Any, key: str, value: str) -> None:
        full, *_ = self.full_name(name)
        mv = self._require_version(full, version)
        self._call("set_model_version_tag", full, mv.version, self._check_tag_key(key), value or "")

    def delete_model_version_tag(self, name: str, version: Any, key: str) -> None:
        full, *_ = self.full_name(name)
        mv = self._require_version(full, version)
        self._call("delete_model_version_tag", full, mv.version, self._check_tag_key(key))

    def temporary_credentials(self, name: str, version: Any, write: bool) -> int:
        """Expiry (epoch ms) of credentials for a version's files; writes only while PENDING."""
        full, *_ = self.full_name(name)
        version_ = self._render(self._require_version(full, version))
        if write and version_.status != PENDING:
            # Finalized versions are immutable in Unity Catalog (assumption: write credentials
            # are refused for them; the exact Databricks wording is not public).
            raise invalid(
                f"Version {version_.mv.version} of '{full}' is {version_.status}: its files can no longer "
                "be written. Register a new version instead."
            )
        return int((time.time() + CREDENTIALS_TTL_SECONDS) * 1000)

    def download_uri(self, name: str, version: Any) -> str:
        full, *_ = self.full_name(name)
        return self._render(self._require_version(full, version)).storage_location

    # -- files of model versions ------------------------------------------------------------

    def check_files_path(self, path: str, write: bool) -> Path:
        """The local file behind a Files-API path; ``/Models/...`` must name an existing version,
        and writes there only while the version is PENDING_REGISTRATION."""
        if path.startswith(MODELS_PREFIX):
            parts = [p for p in path[len(MODELS_PREFIX) :].split("/") if p]
            if len(parts) < 5:
                raise invalid(
                    f"Invalid path {path!r}: model files live under "
                    "/Models/<catalog>/<schema>/<model>/<version>/<file>."
                )
            full, *_ = self.full_name(".".join(parts[:3]))
            version = self._render(self._require_version(full, parts[3]))
            if write and version.status != PENDING:
                raise ApiError(
                    403,
                    "PERMISSION_DENIED",
                    f"Version {version.mv.version} of '{full}' is {version.status}: its files are read-only.",
                )
        return self.metastore.local_path(path)


class PresignedUrls:
    """Signed, expiring URLs for one file (what Databricks' default storage hands out).

    The workspace serves them itself; the signature (HMAC with a per-process key) stands in for
    the cloud storage's SAS token, so the URL needs no Authorization header.
    """

    def __init__(self, ttl_seconds: int = 900, key: bytes | None = None):
        self.ttl_seconds = ttl_seconds
        self.key = key or secrets.token_bytes(32)

    def sign(self, path: str, op: str) -> dict[str, str]:
        """Query parameters of a URL allowing ``op`` ("read" or "write") on ``path``."""
        expires = str(int(time.time()) + self.ttl_seconds)
        token = base64.urlsafe_b64encode(json.dumps([path, op, expires]).encode()).decode()
        return {"t": token, "sig": self._mac(token)}

    def verify(self, token: str, sig: str, op: str) -> str:
        """The path a URL allows ``op`` on, or 403 naming why it does not."""
        if not token or not sig or not hmac.compare_digest(self._mac(token), sig):
            raise ApiError(403, "PERMISSION_DENIED", "Invalid presigned URL signature: request a new URL.")
        try:
            path, allowed, expires = json.loads(base64.urlsafe_b64decode(token.encode()))
        except (ValueError, TypeError):
            raise ApiError(403, "PERMISSION_DENIED", "Malformed presigned URL: request a new URL.") from None
        if allowed != op:
            raise ApiError(403, "PERMISSION_DENIED", f"This presigned URL allows {allowed}, not {op}.")
        if time.time() > int(expires):
            raise ApiError(
                403,
                "PERMISSION_DENIED",
                f"Presigned URL for {path} expired at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(int(expires)))}: "
                "request a new one (/api/2.0/fs/create-upload-url or create-download-url).",
            )
        return path

    def _mac(self, token: str) -> str:
        return hmac.new(self.key, token.encode(), hashlib.sha256).hexdigest()
