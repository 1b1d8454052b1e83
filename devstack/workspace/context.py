"""The settings of one emulated workspace, and its store: what
:class:`~devstack.workspace.app.Workspace` builds the services from."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.workspace.store import Store


@dataclass
class WorkspaceContext:
    name: str
    host: str
    port: int
    data_dir: Path
    token: str
    store: Store
    mlflow_tracking_uri: str | None = None
    cluster_start_seconds: float = 0.0
    max_parallel_runs: int = 8
    fault_rate: float = 0.0
    # All-purpose clusters the workspace offers (clusters/get, list, start; existing_cluster_id).
    clusters: list[dict[str, Any]] = field(default_factory=list)
    # Called in reverse order when the workspace stops (stop drivers, close the store, ...).
    on_shutdown: list[Callable[[], None]] = field(default_factory=list)
    # Where browsers reach the workspace when that differs from host:port (a container's
    # published port); links such as run_page_url use it.
    public_url: str | None = None
    # Sign-in (devstack.workspace.iam): the Entra ID tenant whose tokens are accepted, where its
    # keys are published, and this workspace's Azure resource id (management-token headers).
    entra_url: str | None = None
    entra_tenant_id: str | None = None
    entra_ca_file: str | None = None
    azure_resource_id: str | None = None
    # TLS on the workspace's port besides plain HTTP (the provider's OAuth token URL is https).
    tls_cert: str | None = None
    tls_key: str | None = None
    # The Unity Catalog metastore shared by every workspace (unity_catalog.backend.Metastore),
    # and the Azure storage accounts abfss:// paths map to (account name -> local directory).
    metastore: Any = None
    storage_accounts: dict[str, Path] = field(default_factory=dict)
    # Model Serving: idle seconds after which a scale-to-zero served entity is stopped.
    serving_idle_seconds: float = 1800.0

    @property
    def workspace_id(self) -> str:
        """The workspace's numeric id, stable for its name (Databricks' org id)."""
        return str(zlib.crc32(self.name.encode()) % 10**15 or 1)

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def local_path(self, *parts: str) -> Path:
        """A path under the data dir (created parents)."""
        path = self.data_dir.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
