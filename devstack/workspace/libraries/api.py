"""Libraries API 2.0: install, uninstall, cluster-status, all-cluster-statuses.

Shapes after databricks-sdk's ``compute`` dataclasses (``ClusterLibraryStatuses``,
``LibraryFullStatus``), which render the statuses.
"""

from __future__ import annotations

from typing import Any

from devstack.workspace.http import Request
from devstack.workspace.libraries.backend import LibrariesBackend, validate_libraries


class LibrariesApi:
    """:param backend: the workspace's libraries.
    :param clusters: the cluster manager: ``get(cluster_id)`` (an all-purpose cluster, or
        INVALID_PARAMETER_VALUE naming it), ``clusters`` (all-purpose clusters by id) and
        ``job_clusters`` (job clusters by id).
    """

    def __init__(self, backend: LibrariesBackend, clusters: Any):
        self.backend = backend
        self.clusters = clusters

    def _cluster_id(self, request: Request, *, job_clusters_too: bool = False) -> str:
        cluster_id = request.require("cluster_id", str)
        if not (job_clusters_too and cluster_id in self.clusters.job_clusters):
            self.clusters.get(cluster_id)
        return cluster_id

    def install(self, request: Request) -> dict[str, Any]:
        cluster_id = self._cluster_id(request)
        self.backend.request_install(cluster_id, validate_libraries(request.require("libraries", list)))
        return {}

    def uninstall(self, request: Request) -> dict[str, Any]:
        cluster_id = self._cluster_id(request)
        self.backend.request_uninstall(cluster_id, validate_libraries(request.require("libraries", list)))
        return {}

    def cluster_status(self, request: Request) -> dict[str, Any]:
        cluster_id = self._cluster_id(request, job_clusters_too=True)
        return {"cluster_id": cluster_id, "library_statuses": self.backend.statuses(cluster_id)}

    def all_cluster_statuses(self, request: Request) -> dict[str, Any]:
        return {
            "statuses": [
                {"cluster_id": cluster_id, "library_statuses": self.backend.statuses(cluster_id)}
                for cluster_id in self.backend.clusters_with_libraries()
            ]
        }
