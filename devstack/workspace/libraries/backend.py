"""Cluster libraries: what each cluster should have installed, installed for real.

Each cluster has its own Python environment
(:class:`~devstack.workspace.runtime.environment.PythonEnvironment`, under
``<root>/<cluster_id>``), created empty when its driver starts and deleted when the driver stops.
Libraries reach it two ways, as on Databricks:

- through the Libraries API (``libraries/install``) on an all-purpose cluster: installed in the
  background as soon as the cluster runs, and installed again after every restart, until
  ``libraries/uninstall`` marks them for removal (gone at the next restart);
- from a job task's ``libraries``: installed before the task runs
  (:meth:`LibrariesBackend.install_for_task`); a failure fails the task. On a job cluster they
  live as long as the job cluster; on an all-purpose cluster until it restarts.

Kinds (after the Libraries API reference, docs.databricks.com/api/azure/workspace/libraries):
``pypi`` (package, optional ``repo`` index), ``whl`` and ``requirements`` files from workspace
files (``/Workspace/...``), Unity Catalog volumes (``/Volumes/...``), ``abfss://`` or ``dbfs:/``
are installed with pip. ``egg`` fails as it does on Databricks Runtime 14.0 and above (the
workspace offers no older runtime). ``jar``, ``maven`` and ``cran`` are reported SKIPPED with a
message: the emulated runtime runs Python only.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from databricks.sdk.service.compute import Library, LibraryFullStatus, LibraryInstallStatus

from devstack.workspace.http import invalid
from devstack.workspace.runtime.environment import PythonEnvironment
from devstack.workspace.store import Store, dumps, loads

log = logging.getLogger("devstack.workspace.libraries")

KINDS = ("pypi", "whl", "requirements", "egg", "jar", "maven", "cran")
PYTHON_KINDS = ("pypi", "whl", "requirements")
FILE_PREFIXES = ("/Workspace/", "/Volumes/", "dbfs:/", "abfss://")

PENDING = LibraryInstallStatus.PENDING.value
RESOLVING = LibraryInstallStatus.RESOLVING.value
INSTALLING = LibraryInstallStatus.INSTALLING.value
INSTALLED = LibraryInstallStatus.INSTALLED.value
FAILED = LibraryInstallStatus.FAILED.value
SKIPPED = LibraryInstallStatus.SKIPPED.value
UNINSTALL_ON_RESTART = LibraryInstallStatus.UNINSTALL_ON_RESTART.value


SCHEMA = """
CREATE TABLE IF NOT EXISTS cluster_libraries (
    cluster_id TEXT PRIMARY KEY,
    libraries TEXT NOT NULL
);
"""


class LibraryInstallError(Exception):
    """A library could not be installed; ``message`` is what Databricks shows on the run."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def validate_libraries(libraries: Any, field_name: str = "libraries") -> list[dict[str, Any]]:
    """The library objects of a request, or INVALID_PARAMETER_VALUE naming what is wrong."""
    if not isinstance(libraries, list):
        raise invalid(f"Invalid value for field {field_name}: expected a list of library objects")
    for lib in libraries:
        kinds = [k for k in lib if k in KINDS] if isinstance(lib, dict) else []
        if not isinstance(lib, dict) or len(kinds) != 1 or len(lib) != 1:
            raise invalid(
                f"Invalid value for field {field_name}: each library names exactly one of "
                f"{', '.join(KINDS)}, got {lib!r}"
            )
        kind, spec = kinds[0], lib[kinds[0]]
        if kind in ("pypi", "cran", "maven"):
            key = "coordinates" if kind == "maven" else "package"
            if not isinstance(spec, dict) or not isinstance(spec.get(key), str) or not spec[key].strip():
                raise invalid(f"Invalid value for field {field_name}: {kind}.{key} is required, got {lib!r}")
        elif not isinstance(spec, str) or not spec.strip():
            raise invalid(f"Invalid value for field {field_name}: {kind} must be a file path, got {lib!r}")
    return libraries


def describe(library: dict[str, Any]) -> str:
    """A library as Databricks names it in messages: ``pypi { package: "x==1" }``."""
    kind, spec = next(iter(library.items()))
    if isinstance(spec, dict):
        inner = " ".join(f'{k}: "{v}"' for k, v in spec.items() if not isinstance(v, (list, dict)))
        return f"{kind} {{ {inner} }}"
    return f'{kind}: "{spec}"'


@dataclass
class LibraryState:
    library: dict[str, Any]
    status: str = PENDING
    messages: list[str] = field(default_factory=list)
    from_api: bool = False  # installed through the Libraries API (kept across restarts)

    def full_status(self) -> dict[str, Any]:
        status = LibraryFullStatus(
            library=Library.from_dict(self.library),
            status=LibraryInstallStatus(self.status),
            messages=list(self.messages) or None,
            is_library_for_all_clusters=False,
        )
        return status.as_dict()


class _Cluster:
    """The libraries of one cluster and its environment (while its driver runs)."""

    def __init__(self, cluster_id: str, env: PythonEnvironment):
        self.cluster_id = cluster_id
        self.env = env
        self.running = False
        self.libraries: list[LibraryState] = []
        self.install_lock = threading.Lock()  # one pip at a time per environment
        # The driver stopped while the lock was held (a pip install running): whoever holds it
        # resets the libraries and removes the environment when done, so stopping never waits.
        self.stop_pending = False
        self.forgotten = False  # the cluster was permanently deleted: nothing of it is kept

    def find(self, library: dict[str, Any]) -> LibraryState | None:
        return next((s for s in self.libraries if s.library == library), None)


class LibrariesBackend:
    """Per-cluster environments and the libraries installed into them.

    :param root: where cluster environments live (``<root>/<cluster_id>``).
    :param read_file: the bytes of a library file given by its Databricks path (``/Workspace/...``,
        ``/Volumes/...``, ...); raises ``FileNotFoundError`` (or an ``ApiError``) when it is missing.
    :param store: where the libraries installed through the API are kept, so that a workspace
        restart keeps them (None: in memory only).
    :param pip_args: extra arguments of every ``pip install``.
    """

    def __init__(
        self,
        root: Path,
        read_file: Callable[[str], bytes],
        store: Store | None = None,
        pip_args: list[str] | None = None,
    ):
        self.root = Path(root)
        self.read_file = read_file
        self.store = store
        self.pip_args = list(pip_args or [])
        self._lock = threading.Lock()
        self._clusters: dict[str, _Cluster] = {}
        self.stopping = False
        # No driver outlives the workspace process: environments left by a previous one are stale.
        shutil.rmtree(self.root, ignore_errors=True)
        if store is not None:
            store.ensure_schema(SCHEMA)
            for row in store.all("SELECT cluster_id, libraries FROM cluster_libraries"):
                cluster = self._cluster(row["cluster_id"])
                # Every cluster restarted with the workspace: those marked for removal are gone.
                cluster.libraries = [
                    LibraryState(item["library"], PENDING, [], True)
                    for item in loads(row["libraries"], [])
                    if not item.get("uninstall")
                ]
                self._save(cluster)

    def _save(self, cluster: _Cluster) -> None:
        """Keep the cluster's API libraries (in order, with their removal marks)."""
        if self.store is None or cluster.forgotten:
            return
        kept = [
            {"library": s.library, "uninstall": s.status == UNINSTALL_ON_RESTART}
            for s in cluster.libraries
            if s.from_api
        ]
        with self.store.tx() as conn:
            if kept:
                conn.execute(
                    "INSERT OR REPLACE INTO cluster_libraries (cluster_id, libraries) VALUES (?, ?)",
                    (cluster.cluster_id, dumps(kept)),
                )
            else:
                conn.execute("DELETE FROM cluster_libraries WHERE cluster_id = ?", (cluster.cluster_id,))

    def _cluster(self, cluster_id: str) -> _Cluster:
        with self._lock:
            cluster = self._clusters.get(cluster_id)
            if cluster is None:
                env = PythonEnvironment(self.root / cluster_id)
                cluster = self._clusters[cluster_id] = _Cluster(cluster_id, env)
            return cluster

    @contextmanager
    def _locked(self, cluster: _Cluster) -> Iterator[None]:
        """The cluster's install lock; a stop that came meanwhile is carried out on the way out."""
        try:
            with cluster.install_lock:
                yield
        finally:
            self._finish_stop(cluster)

    def _finish_stop(self, cluster: _Cluster) -> None:
        """Carry out a pending stop unless someone else holds the install lock (they will)."""
        while cluster.stop_pending and cluster.install_lock.acquire(blocking=False):
            try:
                if cluster.stop_pending:
                    cluster.stop_pending = False
                    self._reset(cluster)
                    cluster.env.remove()
                    if not cluster.libraries:
                        with self._lock:
                            if self._clusters.get(cluster.cluster_id) is cluster:
                                self._clusters.pop(cluster.cluster_id)
            finally:
                cluster.install_lock.release()

    # ------------------------------------------------------------------ cluster lifetime

    def start_environment(self, cluster_id: str) -> Path:
        """A fresh environment for a driver about to start; returns its interpreter.

        Libraries installed by tasks are gone (they lived in the previous driver's environment);
        those installed through the API are pending again until :meth:`cluster_running`, and
        those marked for removal are removed now.
        """
        cluster = self._cluster(cluster_id)
        with self._locked(cluster):
            cluster.running = False
            cluster.stop_pending = False  # the previous driver's environment goes now
            self._reset(cluster)
            cluster.env.create()
        return cluster.env.python

    def _reset(self, cluster: _Cluster) -> None:
        """A new driver (or none): API libraries pending again, the rest gone."""
        before = len(cluster.libraries)
        cluster.libraries = [
            LibraryState(s.library, PENDING, [], True)
            for s in cluster.libraries
            if s.from_api and s.status != UNINSTALL_ON_RESTART
        ]
        if len(cluster.libraries) != before:
            self._save(cluster)

    def cluster_running(self, cluster_id: str) -> None:
        """The driver is up: install the libraries the API asked for, in the background."""
        cluster = self._cluster(cluster_id)
        cluster.running = True
        if any(s.status == PENDING for s in cluster.libraries):
            self._install_pending_async(cluster)

    def cluster_stopped(self, cluster_id: str) -> None:
        """The driver is gone: so is its environment (API libraries stay requested).

        Never waits for a pip install under way (clusters/delete, restart and the workspace's
        shutdown call this): the install ends first, then the environment goes.
        """
        with self._lock:
            cluster = self._clusters.get(cluster_id)
        if cluster is None:
            return
        cluster.running = False
        cluster.stop_pending = True
        self._finish_stop(cluster)

    def forget(self, cluster_id: str) -> None:
        """The cluster was permanently deleted: its libraries go (memory and store), so that
        all-cluster-statuses no longer lists it, nor after a workspace restart."""
        with self._lock:
            cluster = self._clusters.pop(cluster_id, None)
        if cluster is not None:
            cluster.forgotten = True
        if self.store is not None:
            with self.store.tx() as conn:
                conn.execute("DELETE FROM cluster_libraries WHERE cluster_id = ?", (cluster_id,))

    def shutdown(self) -> None:
        self.stopping = True

    # ------------------------------------------------------------------ Libraries API

    def request_install(self, cluster_id: str, libraries: list[dict[str, Any]]) -> None:
        """``libraries/install``: record, and install in the background if the cluster runs."""
        cluster = self._cluster(cluster_id)
        with self._locked(cluster):
            for library in libraries:
                state = cluster.find(library)
                if state is None:
                    cluster.libraries.append(LibraryState(library, PENDING, [], True))
                else:
                    state.from_api = True
                    if state.status == UNINSTALL_ON_RESTART:
                        state.status = INSTALLED  # still installed: asked for again before the restart
            self._save(cluster)
        if cluster.running:
            self._install_pending_async(cluster)

    def request_uninstall(self, cluster_id: str, libraries: list[dict[str, Any]]) -> None:
        """``libraries/uninstall``: marked for removal; gone at the next restart. Unknown ones are ignored."""
        cluster = self._cluster(cluster_id)
        with self._locked(cluster):
            for library in libraries:
                state = cluster.find(library)
                if state is None or state.status == UNINSTALL_ON_RESTART:
                    continue
                if state.status in (INSTALLED, INSTALLING, RESOLVING) and cluster.running:
                    state.status = UNINSTALL_ON_RESTART
                    state.messages = []
                else:  # never installed: nothing to restart for
                    cluster.libraries.remove(state)
            self._save(cluster)

    def statuses(self, cluster_id: str) -> list[dict[str, Any]]:
        """``library_statuses`` of a cluster: requested ones in order, those marked for removal last."""
        with self._lock:
            cluster = self._clusters.get(cluster_id)
        if cluster is None:
            return []
        states = list(cluster.libraries)
        ordered = [s for s in states if s.status != UNINSTALL_ON_RESTART]
        ordered += [s for s in states if s.status == UNINSTALL_ON_RESTART]
        return [s.full_status() for s in ordered]

    def clusters_with_libraries(self) -> list[str]:
        with self._lock:
            return [cid for cid, c in self._clusters.items() if c.libraries]

    # ------------------------------------------------------------------ installing

    def install_for_task(
        self,
        cluster_id: str,
        libraries: list[dict[str, Any]] | None,
        installing: Callable[[], None] | None = None,
    ) -> None:
        """Install a task's libraries into its cluster's environment before the task runs.

        Called for every task: the cluster's libraries still pending from the API are installed
        first (their failure shows in the cluster's library statuses, not on the run). Libraries
        the cluster already has are not installed again. ``installing()`` is called once, before
        the first library this call installs (not at all when there is none), so the run can say
        it waits for them. Raises :class:`LibraryInstallError` with the message the run shows.
        """
        cluster = self._cluster(cluster_id)
        if not libraries and not cluster.libraries:
            return
        announced = False

        def install(state: LibraryState) -> None:
            nonlocal announced
            if not announced and installing is not None:
                announced = True
                installing()
            self._install(cluster, state)

        with self._locked(cluster):
            for state in list(cluster.libraries):
                if state.from_api and state.status == PENDING:
                    install(state)
            for library in libraries or []:
                state = cluster.find(library)
                if state is None:
                    state = LibraryState(library)
                    cluster.libraries.append(state)
                if state.status in (INSTALLED, SKIPPED, UNINSTALL_ON_RESTART):
                    continue
                install(state)
                if state.status == FAILED:
                    raise LibraryInstallError(_run_message(library, state.messages))

    def _install_pending_async(self, cluster: _Cluster) -> None:
        def _run() -> None:
            with self._locked(cluster):
                for state in list(cluster.libraries):
                    if self.stopping or not cluster.running:
                        return
                    if state.status == PENDING:
                        self._install(cluster, state)

        threading.Thread(target=_run, name=f"libraries-{cluster.cluster_id}", daemon=True).start()

    def _install(self, cluster: _Cluster, state: LibraryState) -> None:
        """Install one library (the caller holds the cluster's install lock); sets its status."""
        kind, spec = next(iter(state.library.items()))
        state.messages = []
        if kind == "egg":
            state.status = FAILED
            state.messages = [
                "Python eggs are not supported on Databricks Runtime 14.0 and above "
                "(this workspace's runtimes); install a wheel (whl) or a PyPI package instead."
            ]
            return
        if kind not in PYTHON_KINDS:
            state.status = SKIPPED
            state.messages = [
                f"devstack: {kind} libraries are recorded but not installed; the emulated runtime runs Python only."
            ]
            return
        if cluster.stop_pending or not cluster.env.exists():
            state.status = FAILED
            state.messages = [
                f"Cluster {cluster.cluster_id} is not running: libraries install on a running cluster."
            ]
            return
        state.status = RESOLVING if kind == "pypi" else INSTALLING
        try:
            with tempfile.TemporaryDirectory(prefix="library-", dir=cluster.env.path) as tmp:
                args = self._pip_args(kind, spec, Path(tmp))
                state.status = INSTALLING
                done = cluster.env.pip_install([*self.pip_args, *args])
        except LibraryInstallError as exc:
            state.status, state.messages = FAILED, [exc.message]
            return
        except Exception as exc:  # noqa: BLE001 - a broken install must show as FAILED, never hang
            log.exception("installing %s on cluster %s failed", describe(state.library), cluster.cluster_id)
            state.status, state.messages = FAILED, [f"{type(exc).__name__}: {exc}"]
            return
        if done.returncode == 0:
            state.status = INSTALLED
            return
        state.status = FAILED
        state.messages = [_pip_failure(cluster.cluster_id, done.stdout + done.stderr)]
        log.warning("library %s failed on cluster %s", describe(state.library), cluster.cluster_id)

    def _pip_args(self, kind: str, spec: Any, tmp: Path) -> list[str]:
        if kind == "pypi":
            args = [spec["package"]]
            if spec.get("repo"):
                args += ["--index-url", spec["repo"]]
            return args
        local = self._fetch(spec, tmp)
        return ["-r", str(local)] if kind == "requirements" else [str(local)]

    def _fetch(self, path: str, tmp: Path) -> Path:
        """A copy of the library file under ``tmp``, keeping its name (pip reads wheel tags from it)."""
        if not path.startswith(FILE_PREFIXES):
            raise LibraryInstallError(
                f"Library path {path} is not supported: use a workspace file (/Workspace/...), "
                "a Unity Catalog volume (/Volumes/...) or abfss://."
            )
        try:
            data = self.read_file(path)
        except Exception as exc:  # noqa: BLE001 - missing file, unknown volume, ...
            reason = getattr(exc, "message", None) or str(exc)
            raise LibraryInstallError(f"Library file {path} could not be read: {reason}") from None
        local = tmp / path.rstrip("/").rsplit("/", 1)[-1]
        local.write_bytes(data)
        return local

    def remove_all(self) -> None:
        """Delete every environment (the workspace's data dir is being reset)."""
        shutil.rmtree(self.root, ignore_errors=True)


class LibraryFiles:
    """Reads library files where Databricks takes them from.

    :param workspace_file: the bytes of a workspace file by its workspace path (``/Shared/x.whl``
        for ``/Workspace/Shared/x.whl``).
    :param storage: the workspace's :class:`~devstack.workspace.runtime.fs.StorageMap`
        (``/Volumes/...``, ``abfss://``, ``dbfs:/``).
    """

    def __init__(self, workspace_file: Callable[[str], bytes], storage: Any):
        self.workspace_file = workspace_file
        self.storage = storage

    def __call__(self, path: str) -> bytes:
        if path.startswith("/Workspace/"):
            return self.workspace_file(path[len("/Workspace") :])
        local = self.storage.to_local(path)
        if not local.is_file():
            raise FileNotFoundError(f"no such file ({path})")
        return local.read_bytes()


def _pip_failure(cluster_id: str, output: str) -> str:
    errors = [line for line in output.splitlines() if line.startswith("ERROR:")]
    detail = "\n".join(errors[-5:]) or output.strip()[-2000:]
    code = ""
    if re.search(r"No matching distribution found|Could not find a version that satisfies", output):
        code = (
            "Pip could not find a version that satisfies the requirement for the library. "
            "Please check your library version and dependencies. Error code: ERROR_NO_MATCHING_DISTRIBUTION, "
        )
    return (
        f"Library installation attempted on the driver node of cluster {cluster_id} and failed. "
        f"{code}error message: pip install exited with an error.\n{detail}"
    )


def _run_message(library: dict[str, Any], messages: list[str]) -> str:
    """The state message of a run whose task library failed to install."""
    return (
        f"Library installation failed for library due to user error for {describe(library)}. "
        "Error messages:\n" + "\n".join(messages)
    )
