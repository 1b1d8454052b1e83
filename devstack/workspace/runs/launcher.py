"""The launcher: the slow steps between a task run taking an execution slot and its driver running it.

It acquires the task's cluster (an all-purpose cluster, the run's shared job cluster, or a
cluster of its own), builds the payload a driver executes (parameters with their references
resolved, the git checkout of a ``git_source``) and hands it to the driver. It keeps no run
state: :class:`~devstack.workspace.runs.state.RunsBackend` calls these steps from a launcher
thread, outside its lock, and records what happened.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devstack.workspace.clusters import ClusterManager, ClusterStartCancelled, new_cluster_id
from devstack.workspace.libraries.backend import LibrariesBackend, LibraryInstallError
from devstack.workspace.runs.spec import References, substitute, to_str

if TYPE_CHECKING:
    from devstack.workspace.runs.state import RunRec


class TaskSetupError(Exception):
    """The task cannot start (bad source, failed checkout); the message says why.

    ``life`` is the life cycle state the task ends in, and ``code`` its termination code when the
    result does not imply it: a library that fails to install ends it INTERNAL_ERROR with
    LIBRARY_INSTALLATION_ERROR, as on Databricks.
    """

    def __init__(self, message: str, life: str = "TERMINATED", code: str | None = None):
        super().__init__(message)
        self.life = life
        self.code = code


class _JobCluster:
    """The one driver that all tasks of a job run naming one job_cluster_key share."""

    def __init__(self, key: str, spec: dict):
        self.key = key
        self.spec = spec
        self.cluster_id = new_cluster_id()
        self.lock = threading.Lock()
        self.driver: Any = None


@dataclass
class Acquired:
    """The driver a task runs on; ``exclusive`` when the task's own cluster (it dies with the task)."""

    driver: Any
    exclusive: bool
    cluster_id: str


class Launcher:
    """Clusters, payloads and git checkouts for task runs.

    :param clusters: starts drivers and owns the all-purpose clusters.
    :param checkout: ``checkout(git_source) -> directory`` of that commit (the repos service's
        git checkouts); None accepts only ``file://`` URLs of local directories.
    :param run_token: a fresh short-lived token for one task run's environment.
    """

    def __init__(
        self,
        clusters: ClusterManager,
        *,
        checkout: Callable[[dict], Path] | None,
        run_token: Callable[[], str],
        libraries: LibrariesBackend | None = None,
    ):
        self.clusters = clusters
        self.checkout = checkout
        self.run_token = run_token
        self.libraries = libraries
        self._lock = threading.Lock()
        self._job_clusters: dict[tuple[int, str], _JobCluster] = {}

    # ------------------------------------------------------------------ clusters

    def acquire(
        self,
        parent: RunRec,
        task: RunRec,
        cancelled: threading.Event,
        counted: Callable[[], None],
        run_over: Callable[[], bool],
    ) -> Acquired:
        """Start (or reuse) the task's cluster; ``counted()`` is called for each cluster start.

        Raises ClusterStartCancelled when ``cancelled`` is set meanwhile, or when the job run is
        over (``run_over()``) by the time its shared job cluster is up.
        """
        spec = task.spec
        if spec.get("existing_cluster_id"):
            cluster_id = spec["existing_cluster_id"]
            return Acquired(self.clusters.ensure_running(cluster_id, cancelled, counted), False, cluster_id)
        if spec.get("job_cluster_key"):
            key = spec["job_cluster_key"]
            with self._lock:
                shared = self._job_clusters.get((parent.run_id, key))
                if shared is None:
                    specs = {
                        c.get("job_cluster_key"): c.get("new_cluster")
                        for c in parent.spec.get("job_clusters") or []
                    }
                    shared = self._job_clusters[(parent.run_id, key)] = _JobCluster(key, specs.get(key) or {})
            with shared.lock:
                if shared.driver is not None and shared.driver.alive:
                    return Acquired(shared.driver, False, shared.cluster_id)
                if shared.driver is not None:  # it died: its pool instances go back before a new one
                    self.clusters.kill_driver(shared.driver)
                    shared.driver = None
                shared.driver = self.clusters.launch_driver(
                    shared.cluster_id, shared.spec, cancelled, counted
                )
                if run_over():  # the run ended while this cluster started
                    self.clusters.kill_driver_async(shared.driver)
                    raise ClusterStartCancelled(shared.cluster_id)
                return Acquired(shared.driver, False, shared.cluster_id)
        cluster_id = new_cluster_id()
        driver = self.clusters.launch_driver(cluster_id, spec.get("new_cluster") or {}, cancelled, counted)
        return Acquired(driver, True, cluster_id)

    def job_cluster_drivers(self, job_run_id: int) -> list[Any]:
        """The drivers of the job clusters of one job run."""
        with self._lock:
            return [c.driver for (rid, _k), c in self._job_clusters.items() if rid == job_run_id and c.driver]

    def release(self, job_run_id: int) -> None:
        """The job run ended: its job clusters terminate."""
        with self._lock:
            ended = [k for k in self._job_clusters if k[0] == job_run_id]
            clusters = [self._job_clusters.pop(k) for k in ended]
        for cluster in clusters:
            if cluster.driver is not None:
                self.clusters.kill_driver_async(cluster.driver)

    def kill(self, driver: Any) -> None:
        self.clusters.kill_driver(driver)

    def kill_async(self, driver: Any) -> None:
        self.clusters.kill_driver_async(driver)

    def install_libraries(
        self, cluster_id: str, task_spec: dict[str, Any], installing: Callable[[], None] | None = None
    ) -> None:
        """Install the task's ``libraries`` into its cluster's environment before it runs.

        ``installing()`` is called once before the first library that really has to be installed
        (the cluster's pending API libraries, or the task's own that it lacks). Raises
        TaskSetupError with the message a run shows when one fails to install (the task ends
        INTERNAL_ERROR with result FAILED).
        """
        if self.libraries is None:
            return
        try:
            self.libraries.install_for_task(cluster_id, task_spec.get("libraries"), installing)
        except LibraryInstallError as exc:
            raise TaskSetupError(
                exc.message, life="INTERNAL_ERROR", code="LIBRARY_INSTALLATION_ERROR"
            ) from None

    # ------------------------------------------------------------------ payloads

    def payload(self, parent: RunRec, task: RunRec, refs: References) -> dict[str, Any]:
        """What the driver executes for ``task``: kind, source, parameters (``refs`` resolved)."""
        spec = task.spec
        git_source = spec.get("git_source") or parent.spec.get("git_source")
        payload: dict[str, Any] = {
            "exec_id": str(task.run_id),
            "job_id": parent.job_id,
            "run_id": task.run_id,
            "job_run_id": parent.run_id,
            "task_key": task.task_key,
            # The run's own short-lived credentials (os.environ of this execution only).
            "env": {"DATABRICKS_TOKEN": self.run_token()},
            "git_root": None,
            "notebook_path": None,
            "python_file": None,
            "parameters": [],
            "base_parameters": {},
        }
        if "notebook_task" in spec:
            nb = spec["notebook_task"]
            source = nb.get("source") or ("GIT" if git_source else "WORKSPACE")
            params = {str(k): to_str(v) for k, v in (nb.get("base_parameters") or {}).items()}
            params.update(
                {p["name"]: to_str(p.get("value", p.get("default"))) for p in parent.job_parameters}
            )
            params.update(
                {str(k): to_str(v) for k, v in (parent.overrides.get("notebook_params") or {}).items()}
            )
            payload.update(
                kind="notebook",
                source=source,
                notebook_path=nb.get("notebook_path"),
                base_parameters={k: substitute(v, refs) for k, v in params.items()},
            )
        elif "python_wheel_task" in spec:
            # PythonWheelTask: the entry point of the installed package runs with sys.argv set to the
            # package name and the parameters; named_parameters become --name=value arguments.
            wheel = spec["python_wheel_task"]
            named = parent.overrides.get("python_named_params") or wheel.get("named_parameters")
            if named:
                params = [f"--{k}={to_str(v)}" for k, v in named.items()]
            else:
                params = parent.overrides.get("python_params") or wheel.get("parameters") or []
            source = "WORKSPACE"
            payload.update(
                kind="python_wheel",
                package_name=wheel["package_name"],
                entry_point=wheel["entry_point"],
                parameters=[substitute(to_str(p), refs) for p in params],
            )
        else:
            py = spec["spark_python_task"]
            source = py.get("source") or ("GIT" if git_source else "WORKSPACE")
            params = parent.overrides.get("python_params") or py.get("parameters") or []
            payload.update(
                kind="spark_python",
                source=source,
                python_file=py.get("python_file"),
                parameters=[substitute(to_str(p), refs) for p in params],
            )
        if source == "GIT":
            if not git_source:
                raise TaskSetupError(f"Task {task.task_key} uses source GIT but the run has no git_source.")
            payload["git_root"] = str(self._checkout(git_source))
            relative = payload["notebook_path"] or payload["python_file"] or ""
            if relative.startswith("/"):
                raise TaskSetupError(
                    f"Task {task.task_key}: a GIT source path must be relative to the repository root, got {relative}."
                )
        return payload

    def _checkout(self, git_source: dict) -> Path:
        if self.checkout is not None:
            return Path(self.checkout(git_source))
        url = str(git_source.get("git_url") or "")
        local = Path(url.removeprefix("file://"))
        if local.is_dir():
            return local
        raise TaskSetupError(f"Cannot check out git_source {url}: this workspace has no git checkouts.")

    # ------------------------------------------------------------------ execution

    def execute(self, driver: Any, payload: dict[str, Any], on_done: Callable[[dict], None]) -> None:
        """Hand the payload to the driver; ``on_done(result)`` is called once when it ends."""
        driver.execute(payload, on_done)

    def cancel(self, driver: Any, run_id: int) -> None:
        """Interrupt one execution on a shared driver (the driver lives on)."""
        driver.cancel(str(run_id), grace=5.0)
