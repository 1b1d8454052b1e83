"""Clusters API (2.0 and 2.1) and the drivers behind every kind of cluster.

A "cluster" here is one driver process of the runtime (a Python process with a lazy local
Spark). All-purpose clusters come from the workspace config and live as long as they are
RUNNING; job clusters and ``new_cluster`` clusters are started by the run manager through
:meth:`ClusterManager.launch_driver` and killed when their run ends.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from devstack.workspace.context import WorkspaceContext
from devstack.workspace.http import ApiError, Request, invalid

log = logging.getLogger("devstack.workspace.clusters")

DEFAULT_CLUSTER = {
    "cluster_id": "0000-000000-devstack",
    "cluster_name": "devstack-shared",
}
SPARK_VERSION = "15.4.x-scala2.12"
SPARK_VERSIONS = [
    {"key": "15.4.x-scala2.12", "name": "15.4 LTS (includes Apache Spark 3.5.0, Scala 2.12)"},
    {"key": "15.4.x-cpu-ml-scala2.12", "name": "15.4 LTS ML (includes Apache Spark 3.5.0, Scala 2.12)"},
    {"key": "14.3.x-scala2.12", "name": "14.3 LTS (includes Apache Spark 3.5.0, Scala 2.12)"},
]


# Lifetime of the short-lived tokens notebooks get (one per cluster, and one per task run).
RUN_TOKEN_TTL_SECONDS = 8 * 3600


def run_token(ctx: WorkspaceContext) -> str:
    """A short-lived token of the workspace's admin (who submits the runs here), never its PAT."""
    iam = ctx.services.get("iam")
    return iam.issue_token(iam.admin, RUN_TOKEN_TTL_SECONDS) if iam is not None else ctx.token


def driver_url(ctx: WorkspaceContext) -> str:
    """Where drivers reach their workspace: they run beside it, so its own address, not the
    --public-url browsers use (a container's published port does not exist inside it)."""
    host = "127.0.0.1" if ctx.host in ("", "0.0.0.0", "::") else ctx.host
    return f"http://{host}:{ctx.port}"


def databricks_runtime_env(ctx: WorkspaceContext) -> dict[str, str]:
    """MLflow and credentials as a Databricks runtime sets them up for notebooks.

    MLflow talks to this workspace (tracking URI ``databricks``, registry ``databricks-uc``),
    never past it to the devstack's MLflow server; databricks-sdk and MLflow find the workspace
    and a token in ``DATABRICKS_HOST`` / ``DATABRICKS_TOKEN``. Each task run then gets its own
    token in its environment overlay (:func:`run_token`), as Databricks gives each run one.
    """
    return {
        "MLFLOW_TRACKING_URI": "databricks",
        "MLFLOW_REGISTRY_URI": "databricks-uc",
        "DATABRICKS_HOST": driver_url(ctx),
        "DATABRICKS_TOKEN": run_token(ctx),
    }


class ClusterStartCancelled(Exception):
    """A cluster start was abandoned because its run was cancelled meanwhile."""


def now_ms() -> int:
    return int(time.time() * 1000)


def new_cluster_id() -> str:
    """An id shaped like Databricks' (``MMDD-HHMMSS-xxxxxxxx``)."""
    return time.strftime("%m%d-%H%M%S-", time.gmtime()) + secrets.token_hex(4)


class AllPurposeCluster:
    """One long-lived cluster from the workspace config and its (optional) running driver."""

    def __init__(self, spec: dict[str, Any]):
        self.spec = spec
        self.cluster_id: str = spec["cluster_id"]
        self.state = "TERMINATED"
        self.state_message = "Cluster is terminated; it starts on first use or with clusters/start."
        self.driver: Any = None
        self.start_time: int | None = None
        self.terminated_time: int | None = None
        self.lock = threading.Lock()  # serializes start/stop of this cluster
        self.libraries: list[dict[str, Any]] = []
        self.source = "UI"
        self.ready = threading.Event()

    def describe(self) -> dict[str, Any]:
        spec = self.spec
        out: dict[str, Any] = {
            "cluster_id": self.cluster_id,
            "cluster_name": spec.get("cluster_name", self.cluster_id),
            "spark_version": spec.get("spark_version", SPARK_VERSION),
            "node_type_id": spec.get("node_type_id", "local"),
            "driver_node_type_id": spec.get("driver_node_type_id", spec.get("node_type_id", "local")),
            "num_workers": spec.get("num_workers", 0),
            "autotermination_minutes": spec.get("autotermination_minutes", 0),
            "spark_conf": spec.get("spark_conf", {}),
            "spark_env_vars": spec.get("spark_env_vars", {}),
            "custom_tags": spec.get("custom_tags", {}),
            "default_tags": {
                "Vendor": "Databricks",
                "Creator": "devstack",
                "ClusterName": spec.get("cluster_name", ""),
            },
            "cluster_source": self.source,
            "creator_user_name": "devstack@localhost",
            "data_security_mode": spec.get("data_security_mode", "SINGLE_USER"),
            "state": self.state,
            "state_message": self.state_message,
        }
        if self.start_time:
            out["start_time"] = self.start_time
        if self.terminated_time and self.state == "TERMINATED":
            out["terminated_time"] = self.terminated_time
        if self.driver is not None and self.state == "RUNNING":
            out["driver"] = {"host_private_ip": "127.0.0.1", "node_id": f"driver-{self.driver.pid}"}
        return out


class ClusterManager:
    """Starts drivers (counting cluster starts) and owns the all-purpose clusters."""

    def __init__(self, ctx: WorkspaceContext):
        self.ctx = ctx
        specs = ctx.clusters or [DEFAULT_CLUSTER]
        self.clusters: dict[str, AllPurposeCluster] = {}
        for spec in specs:
            if "cluster_id" not in spec:
                raise ValueError(f"cluster in --config lacks a cluster_id: {spec!r}")
            self.clusters[spec["cluster_id"]] = AllPurposeCluster(dict(spec))
        self._lock = threading.Lock()
        self._drivers: set[Any] = set()
        self.job_clusters: dict[str, AllPurposeCluster] = {}  # job and new clusters, newest last
        self.cluster_starts = 0
        self.stopping = False

    # ----------------------------------------------------------------- drivers

    def launch_driver(
        self,
        cluster_id: str,
        spec: dict[str, Any] | None,
        cancelled: threading.Event | None = None,
        on_started=None,
    ):
        """Start one driver for ``cluster_id`` (blocking): the emulated cluster start.

        Waits ``--cluster-start-seconds`` first (the PENDING "Waiting for cluster" phase);
        raises :class:`ClusterStartCancelled` when ``cancelled`` is set meanwhile.
        """
        from devstack.workspace.runtime import DriverProcess
        from devstack.workspace.runtime.fs import StorageMap

        spec = spec or {}
        if self.ctx.cluster_start_seconds > 0 and cancelled is not None:
            if cancelled.wait(self.ctx.cluster_start_seconds):
                raise ClusterStartCancelled(cluster_id)
        elif self.ctx.cluster_start_seconds > 0:
            time.sleep(self.ctx.cluster_start_seconds)
        if self.stopping or (cancelled is not None and cancelled.is_set()):
            raise ClusterStartCancelled(cluster_id)
        env = {
            **databricks_runtime_env(self.ctx),
            **{str(k): str(v) for k, v in (spec.get("spark_env_vars") or {}).items()},
        }
        cluster_dir: Path = self.ctx.data_dir / "clusters" / cluster_id
        cluster_dir.mkdir(parents=True, exist_ok=True)
        driver = DriverProcess(
            cluster_id,
            cluster_dir=cluster_dir,
            data_dir=self.ctx.data_dir,
            workspace_url=driver_url(self.ctx),
            token=self.ctx.token,
            env=env,
            spark_conf={str(k): str(v) for k, v in (spec.get("spark_conf") or {}).items()},
            # /Volumes in the shared metastore, abfss:// in the workspace's storage accounts.
            storage=StorageMap(
                self.ctx.data_dir, getattr(self.ctx.metastore, "root", None), self.ctx.storage_accounts
            ),
        )
        with self._lock:
            self._drivers.add(driver)
            self.cluster_starts += 1
        if on_started:
            on_started()
        try:
            driver.start(timeout=60)
        except BaseException:
            self.kill_driver(driver)
            raise
        if self.stopping or (cancelled is not None and cancelled.is_set()):
            self.kill_driver(driver)
            raise ClusterStartCancelled(cluster_id)
        if cluster_id not in self.clusters:
            self._remember_job_cluster(cluster_id, spec, driver)
        return driver

    def _remember_job_cluster(self, cluster_id: str, spec: dict[str, Any], driver) -> None:
        """Keep job/new clusters answerable by clusters/get (cluster_instance.cluster_id of a run)."""
        cluster = AllPurposeCluster(
            {"cluster_name": f"job-cluster-{cluster_id}", **spec, "cluster_id": cluster_id}
        )
        cluster.state, cluster.state_message = "RUNNING", ""
        cluster.driver, cluster.start_time = driver, now_ms()
        cluster.source = "JOB"
        with self._lock:
            self.job_clusters[cluster_id] = cluster
            while len(self.job_clusters) > 500:  # forget the oldest
                self.job_clusters.pop(next(iter(self.job_clusters)))

    def kill_driver(self, driver) -> None:
        try:
            driver.kill()
        except Exception:
            log.exception("could not kill driver %s", getattr(driver, "pid", "?"))
        with self._lock:
            self._drivers.discard(driver)
            for cluster in self.job_clusters.values():
                if cluster.driver is driver:
                    cluster.state, cluster.driver = "TERMINATED", None
                    cluster.state_message = "Job cluster terminated with its run."
                    cluster.terminated_time = now_ms()

    def kill_driver_async(self, driver) -> None:
        threading.Thread(target=self.kill_driver, args=(driver,), name="kill-driver", daemon=True).start()

    def shutdown(self) -> None:
        """Kill every driver (all-purpose, job and new clusters) in parallel."""
        self.stopping = True
        with self._lock:
            drivers = list(self._drivers)
        threads = [threading.Thread(target=self.kill_driver, args=(d,), daemon=True) for d in drivers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=15)

    # ----------------------------------------------------------------- all-purpose clusters

    def get(self, cluster_id: str) -> AllPurposeCluster:
        cluster = self.clusters.get(cluster_id)
        if cluster is None:
            known = ", ".join(sorted(self.clusters)) or "none"
            raise invalid(f"Cluster {cluster_id} does not exist (clusters of this workspace: {known}).")
        return cluster

    def ensure_running(self, cluster_id: str, cancelled: threading.Event | None = None, on_started=None):
        """The driver of all-purpose cluster ``cluster_id``, started (TERMINATED -> PENDING -> RUNNING) if needed."""
        cluster = self.get(cluster_id)
        with cluster.lock:
            if cluster.state == "RUNNING" and cluster.driver is not None and cluster.driver.alive:
                return cluster.driver
            cluster.state = "PENDING"
            cluster.state_message = "Starting Spark driver"
            cluster.ready.clear()
            try:
                driver = self.launch_driver(cluster_id, cluster.spec, cancelled, on_started)
            except BaseException as exc:
                cluster.state = "TERMINATED"
                cluster.state_message = f"Cluster start failed: {exc}"
                cluster.terminated_time = now_ms()
                raise
            cluster.driver = driver
            cluster.state = "RUNNING"
            cluster.state_message = ""
            cluster.start_time = now_ms()
            cluster.ready.set()
            return driver

    def start_async(self, cluster_id: str) -> None:
        cluster = self.get(cluster_id)
        if cluster.state in ("RUNNING", "PENDING"):
            return
        cluster.state = "PENDING"
        cluster.state_message = "Starting Spark driver"

        def _run():
            try:
                self.ensure_running(cluster_id)
            except Exception:
                log.exception("cluster %s failed to start", cluster_id)

        threading.Thread(target=_run, name=f"start-{cluster_id}", daemon=True).start()

    def terminate(self, cluster_id: str) -> None:
        cluster = self.get(cluster_id)
        with cluster.lock:
            driver, cluster.driver = cluster.driver, None
            cluster.state = "TERMINATED"
            cluster.state_message = "Terminated by user request (clusters/delete)."
            cluster.terminated_time = now_ms()
        if driver is not None:
            self.kill_driver(driver)

    def cluster_driver_if_running(self, cluster_id: str):
        cluster = self.clusters.get(cluster_id)
        if cluster and cluster.state == "RUNNING" and cluster.driver is not None:
            return cluster.driver
        return None


def register(router, ctx: WorkspaceContext) -> None:
    manager = ClusterManager(ctx)
    ctx.services["clusters"] = manager
    ctx.on_shutdown.append(manager.shutdown)
    versions = ("2.0", "2.1")

    def _cluster_id(request: Request) -> str:
        return request.require("cluster_id", str)

    def get_cluster(request: Request):
        cluster_id = _cluster_id(request)
        cluster = manager.clusters.get(cluster_id) or manager.job_clusters.get(cluster_id)
        if cluster is None:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Cluster {cluster_id} does not exist")
        return cluster.describe()

    def list_clusters(request: Request):
        return {"clusters": [c.describe() for c in manager.clusters.values()]}

    def start_cluster(request: Request):
        cluster_id = _cluster_id(request)
        manager.get(cluster_id)
        manager.start_async(cluster_id)  # a cluster that is not TERMINATED is left as it is, as documented
        return {}

    def restart_cluster(request: Request):
        cluster_id = _cluster_id(request)
        manager.get(cluster_id)
        manager.terminate(cluster_id)
        manager.start_async(cluster_id)
        return {}

    def delete_cluster(request: Request):
        cluster_id = _cluster_id(request)
        manager.terminate(cluster_id)
        return {}

    def spark_versions(request: Request):
        return {"versions": SPARK_VERSIONS}

    def node_types(request: Request):
        return {
            "node_types": [
                {
                    "node_type_id": "local",
                    "memory_mb": 4096,
                    "num_cores": 2.0,
                    "description": "The local machine (devstack)",
                    "instance_type_id": "local",
                }
            ]
        }

    def _library_status(cluster: AllPurposeCluster) -> dict[str, Any]:
        note = "devstack: libraries come from the project's Python environment; nothing was installed."
        return {
            "cluster_id": cluster.cluster_id,
            "library_statuses": [
                {
                    "library": lib,
                    "status": "INSTALLED",
                    "is_library_for_all_clusters": False,
                    "messages": [note],
                }
                for lib in cluster.libraries
            ],
        }

    def _libraries(request: Request) -> tuple[AllPurposeCluster, list[dict[str, Any]]]:
        cluster = manager.get(_cluster_id(request))
        libraries = request.require("libraries", list)
        if not all(isinstance(lib, dict) and lib for lib in libraries):
            raise invalid(
                "Invalid value for field libraries: expected objects like {'pypi': {'package': ...}}"
            )
        return cluster, libraries

    def install_libraries(request: Request):
        # Recorded, not installed: notebooks import from the environment the devstack runs in.
        cluster, libraries = _libraries(request)
        cluster.libraries += [lib for lib in libraries if lib not in cluster.libraries]
        return {}

    def uninstall_libraries(request: Request):
        cluster, libraries = _libraries(request)
        cluster.libraries = [lib for lib in cluster.libraries if lib not in libraries]
        return {}

    def library_status(request: Request):
        return _library_status(manager.get(_cluster_id(request)))

    def all_library_statuses(request: Request):
        return {"statuses": [_library_status(c) for c in manager.clusters.values()]}

    router.add("POST", "2.0", "libraries/install", install_libraries)
    router.add("POST", "2.0", "libraries/uninstall", uninstall_libraries)
    router.add("GET", "2.0", "libraries/cluster-status", library_status)
    router.add("GET", "2.0", "libraries/all-cluster-statuses", all_library_statuses)
    router.add("GET", versions, "clusters/get", get_cluster)
    router.add("GET", versions, "clusters/list", list_clusters)
    router.add("POST", versions, "clusters/start", start_cluster)
    router.add("POST", versions, "clusters/restart", restart_cluster)
    router.add("POST", versions, "clusters/delete", delete_cluster)
    router.add("GET", versions, "clusters/spark-versions", spark_versions)
    router.add("GET", versions, "clusters/list-node-types", node_types)
