"""Compute: all-purpose and job clusters, instance pools, cluster policies (backend, api, compute rules).

Other services import what they need from here: the :class:`ClusterManager` (drivers, cluster
starts), :func:`driver_url`, :func:`databricks_runtime_env`,
:func:`new_cluster_id`, :class:`ClusterStartCancelled` / :class:`ClusterStartError`, and
:func:`check_job_compute` for job specs.
"""

from devstack.workspace.clusters.backend import (
    DEFAULT_CLUSTER,
    RUN_TOKEN_TTL_SECONDS,
    SPARK_VERSION,
    SPARK_VERSIONS,
    AllPurposeCluster,
    ClusterManager,
    ClusterPolicies,
    ClusterStartCancelled,
    ClusterStartError,
    InstancePools,
    databricks_runtime_env,
    driver_url,
    new_cluster_id,
    now_ms,
)
from devstack.workspace.clusters.compute import check_cluster_spec, check_job_compute

__all__ = [
    "DEFAULT_CLUSTER",
    "RUN_TOKEN_TTL_SECONDS",
    "SPARK_VERSION",
    "SPARK_VERSIONS",
    "AllPurposeCluster",
    "ClusterManager",
    "ClusterPolicies",
    "ClusterStartCancelled",
    "ClusterStartError",
    "InstancePools",
    "check_cluster_spec",
    "check_job_compute",
    "databricks_runtime_env",
    "driver_url",
    "new_cluster_id",
    "now_ms",
]
