"""The workspace's MLflow tracking, as Databricks serves it, backed by the devstack's MLflow server.

The tracking REST API of Databricks and of an open-source ``mlflow server`` is the same API
(both speak ``mlflow/protos/service.proto``), so calls are forwarded as they are. What differs,
and is translated here:

- **Experiment names** are workspace paths (``/Shared/mlops/x``, ``/Users/<me>/x``). A relative
  name, or one whose parent folder does not exist in this workspace, is refused as Databricks
  refuses it.
- **Artifact locations.** Databricks answers ``dbfs:/databricks/mlflow-tracking/<experiment>/...``
  so MLflow's client picks its ``databricks`` artifact repositories. Those ask the workspace for
  credentials (``artifacts/credentials-for-write|read`` and the logged-model equivalents) and
  move bytes with plain HTTP to the signed URL they get (credential type ``AWS_PRESIGNED_URL``).
  The URLs point back at this workspace (``/devstack/mlflow-artifacts?...``), expire after
  :data:`SIGNED_URL_TTL_SECONDS` and are relayed to the MLflow server's own artifact proxy
  (``/api/2.0/mlflow-artifacts/artifacts/...``), so the bytes land where the MLflow UI reads
  them, whichever storage that server uses.

The workspaces of one devstack share one MLflow server, hence one experiment namespace; each
experiment records the workspace that created it in the tag ``devstack.workspace``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import posixpath
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import urllib3

SIGNED_URL_TTL_SECONDS = 15 * 60
DBFS_ROOT = "dbfs:/databricks/mlflow-tracking"
SERVER_ARTIFACTS_SCHEME = "mlflow-artifacts:"
WORKSPACE_TAG = "devstack.workspace"


class TrackingError(Exception):
    """A refusal with Databricks' status and error code (the api module renders it)."""

    def __init__(self, status: int, error_code: str, message: str):
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


def not_found(message: str) -> TrackingError:
    return TrackingError(404, "RESOURCE_DOES_NOT_EXIST", message)


def invalid(message: str) -> TrackingError:
    return TrackingError(400, "INVALID_PARAMETER_VALUE", message)


# ----------------------------------------------------------------------------- locations


def run_artifact_uri(experiment_id: str, run_id: str) -> str:
    return f"{DBFS_ROOT}/{experiment_id}/{run_id}/artifacts"


def logged_model_artifact_uri(experiment_id: str, model_id: str) -> str:
    return f"{DBFS_ROOT}/{experiment_id}/logged_models/{model_id}/artifacts"


def experiment_artifact_location(experiment_id: str) -> str:
    return f"{DBFS_ROOT}/{experiment_id}"


def relative_artifact_path(path: str | None, what: str = "path") -> str:
    """A path below an artifact root, refused when it climbs out of it."""
    path = (path or "").strip()
    if not path:
        return ""
    normalized = posixpath.normpath(path.lstrip("/"))
    if normalized == ".":
        return ""
    if normalized.startswith("..") or path.startswith("/"):
        raise invalid(f"Invalid artifact {what} {path!r}: give a path relative to the artifact root.")
    return normalized


class ArtifactSigner:
    """Signs and checks the workspace's short-lived artifact URLs (HMAC-SHA256, like a SAS)."""

    def __init__(self, key: bytes | None = None, ttl_seconds: int = SIGNED_URL_TTL_SECONDS):
        self._key = key or secrets.token_bytes(32)
        self.ttl_seconds = ttl_seconds

    def _mac(self, path: str, permission: str, expires: int) -> str:
        message = f"{permission}\n{expires}\n{path}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def query(self, path: str, permission: str, now: float | None = None) -> str:
        expires = int((now or time.time()) + self.ttl_seconds)
        return urlencode(
            {"path": path, "sp": permission, "se": expires, "sig": self._mac(path, permission, expires)}
        )

    def check(self, path: str, permission: str, expires: str, signature: str) -> None:
        """Raise 403 when the URL was not signed by us, is for another use, or has expired."""
        try:
            expires_at = int(expires)
        except (TypeError, ValueError):
            raise TrackingError(403, "PERMISSION_DENIED", "Signed URL is malformed (se).") from None
        if not hmac.compare_digest(self._mac(path, permission, expires_at), signature or ""):
            raise TrackingError(
                403, "PERMISSION_DENIED", "Signature does not match: ask the workspace for new credentials."
            )
        if expires_at < time.time():
            raise TrackingError(
                403, "PERMISSION_DENIED", "Signed URL has expired: ask the workspace for new credentials."
            )


# ----------------------------------------------------------------------------- server


class MlflowServer:
    """The MLflow server behind the workspace, over one pooled, thread-safe HTTP client."""

    def __init__(self, url: str, timeout: float = 60.0):
        self.url = url.rstrip("/")
        self._http = urllib3.PoolManager(
            maxsize=32, block=False, timeout=urllib3.Timeout(connect=5.0, read=timeout), retries=False
        )

    def call(
        self, method: str, path: str, *, query: dict[str, Any] | None = None, body: dict | None = None
    ) -> tuple[int, dict[str, Any]]:
        """One REST call; returns (status, JSON body)."""
        url = self.url + path
        if query:
            url += "?" + urlencode(query, doseq=True)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        response = self._request(method, url, data, headers)
        try:
            payload = json.loads(response.data or b"{}")
        except ValueError:
            payload = {
                "error_code": "INTERNAL_ERROR",
                "message": response.data[:500].decode(errors="replace"),
            }
        return response.status, payload if isinstance(payload, dict) else {}

    def artifact(
        self, method: str, server_path: str, data: bytes | None = None, headers: dict[str, str] | None = None
    ) -> urllib3.BaseHTTPResponse:
        """GET or PUT bytes through the server's artifact proxy (``--serve-artifacts``)."""
        url = f"{self.url}/api/2.0/mlflow-artifacts/artifacts/{quote(server_path)}"
        return self._request(method, url, data, headers or {})

    def _request(self, method: str, url: str, data: bytes | None, headers: dict[str, str]):
        try:
            return self._http.request(method, url, body=data, headers=headers, redirect=False)
        except urllib3.exceptions.HTTPError as exc:
            raise TrackingError(
                503,
                "TEMPORARILY_UNAVAILABLE",
                f"The MLflow tracking server behind this workspace ({self.url}) did not answer: {exc}. "
                "Check that it runs (python -m devstack status).",
            ) from None


# ----------------------------------------------------------------------------- backend


class TrackingBackend:
    """Rules and translations of the workspace's MLflow tracking; no HTTP routing here.

    :param server: the MLflow server the workspace forwards to.
    :param workspace_name: recorded on experiments this workspace creates.
    :param folder_type: ``path -> object type`` of this workspace's tree (None when absent),
        for the parent-folder rule of experiment names.
    """

    def __init__(
        self,
        server: MlflowServer,
        workspace_name: str,
        folder_type: Callable[[str], str | None],
        signer: ArtifactSigner | None = None,
    ):
        self.server = server
        self.workspace_name = workspace_name
        self.folder_type = folder_type
        self.signer = signer or ArtifactSigner()
        # Artifact roots never change: run/model id -> the server's root, to spare a lookup.
        self._roots: dict[tuple[str, str], str] = {}
        self._roots_lock = threading.Lock()

    # ------------------------------------------------------------------ forwarding

    def forward(self, method: str, path: str, query: dict | None, body: dict | None) -> dict[str, Any]:
        status, payload = self.server.call(method, path, query=query, body=body)
        if status >= 400:
            raise TrackingError(
                status,
                str(payload.get("error_code") or "INTERNAL_ERROR"),
                str(payload.get("message") or f"MLflow server answered HTTP {status} to {method} {path}"),
            )
        return payload

    # ------------------------------------------------------------------ experiment names

    def experiment_name(self, name: Any, field: str = "name") -> str:
        """The workspace path an experiment may be created (or renamed) at, or a refusal."""
        if not isinstance(name, str) or not name.strip():
            raise invalid(f"Missing required field: {field}")
        name = name.strip()
        if not name.startswith("/"):
            raise invalid(
                f"Got an invalid experiment name {name!r}: on Databricks an experiment name is an "
                "absolute workspace path, e.g. /Users/<your user name>/my-experiment or "
                "/Shared/my-experiment."
            )
        path = normalize_workspace_path(name)
        if path.count("/") < 2:
            raise invalid(
                f"Experiment name {name!r} must name an experiment inside a folder, e.g. /Shared/x."
            )
        parent = posixpath.dirname(path)
        kind = self.folder_type(parent)
        if kind is None:
            raise not_found(
                f"Parent directory {parent} does not exist. Create it first "
                f"(workspace mkdirs {parent}), then create the experiment {path}."
            )
        if kind not in ("DIRECTORY",):
            raise invalid(f"Cannot create experiment {path}: {parent} is a {kind.lower()}, not a folder.")
        existing = self.folder_type(path)
        if existing is not None and existing != "MLFLOW_EXPERIMENT":
            raise TrackingError(
                400,
                "RESOURCE_ALREADY_EXISTS",
                f"Cannot create experiment {path}: a {existing.lower()} already exists at that path.",
            )
        return path

    # ------------------------------------------------------------------ artifact roots

    def run_root(self, run_id: str) -> tuple[str, str]:
        """(experiment id, the server's artifact path) of run ``run_id``."""
        return self._root("run", run_id)

    def logged_model_root(self, model_id: str) -> tuple[str, str]:
        return self._root("model", model_id)

    def _root(self, kind: str, ident: str) -> tuple[str, str]:
        if not ident:
            raise invalid(f"Missing required field: {'run_id' if kind == 'run' else 'model_id'}")
        with self._roots_lock:
            cached = self._roots.get((kind, ident))
        if cached is not None:
            return tuple(cached.split("\n", 1))  # type: ignore[return-value]
        if kind == "run":
            info = self.forward("GET", "/api/2.0/mlflow/runs/get", {"run_id": ident}, None)["run"]["info"]
        else:
            path = f"/api/2.0/mlflow/logged-models/{quote(ident, safe='')}"
            info = self.forward("GET", path, None, None)["model"]["info"]
        uri = info.get("artifact_uri") or ""
        if not uri.startswith(SERVER_ARTIFACTS_SCHEME):
            raise TrackingError(
                400,
                "INVALID_STATE",
                f"The artifacts of {kind} {ident} live at {uri!r}, which the workspace cannot sign URLs "
                "for: it relays artifacts through an MLflow server started with --artifacts-destination "
                "(mlflow-artifacts:/ locations).",
            )
        server_path = uri[len(SERVER_ARTIFACTS_SCHEME) :].lstrip("/").rstrip("/")
        with self._roots_lock:
            self._roots[(kind, ident)] = f"{info['experiment_id']}\n{server_path}"
        return str(info["experiment_id"]), server_path

    def signed_query(self, server_root: str, relative: str, permission: str) -> str:
        path = relative_artifact_path(relative)
        return self.signer.query(f"{server_root}/{path}" if path else server_root, permission)


def workspace_folder_type(tree: Any, path: str) -> str | None:
    """The object type at ``path`` of the workspace tree (None when absent), as experiment names see
    it: Databricks keeps experiments out of Git folders, so a folder of a repo counts as ``REPO``."""
    entry = tree.lookup(path) if tree is not None else None
    if entry is None:
        return None
    return "REPO" if entry.repo_id is not None else entry.object_type


def normalize_workspace_path(path: str) -> str:
    """``/Workspace/Shared/x/`` -> ``/Shared/x`` (Databricks accepts both spellings)."""
    parts = [p for p in path.split("/") if p]
    if parts and parts[0] == "Workspace":
        parts = parts[1:]
    if any(p in (".", "..") for p in parts):
        raise invalid(f"Experiment name {path!r} must not contain '.' or '..' segments.")
    return "/" + "/".join(parts)
