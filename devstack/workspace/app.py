"""One emulated workspace, assembled: its settings and store, each service's backend in the order
they depend on each other (every backend gets what it needs through its constructor), then the
route table the HTTP server dispatches on."""

from __future__ import annotations

import logging
from collections import deque

from devstack.workspace.clusters import RUN_TOKEN_TTL_SECONDS, ClusterManager, ClusterPolicies, InstancePools
from devstack.workspace.commands.backend import CommandsBackend
from devstack.workspace.context import WorkspaceContext
from devstack.workspace.files.backend import FilesBackend
from devstack.workspace.files.dbfs import Dbfs
from devstack.workspace.http import ApiError
from devstack.workspace.iam.api import build_identities
from devstack.workspace.iam.backend import Principal
from devstack.workspace.jobs.backend import JobsBackend
from devstack.workspace.libraries.backend import LibrariesBackend, LibraryFiles
from devstack.workspace.mlflow.tracking_backend import (
    ArtifactSigner,
    MlflowServer,
    TrackingBackend,
    workspace_folder_type,
)
from devstack.workspace.mlflow.uc_registry_backend import PresignedUrls, UcModelRegistry
from devstack.workspace.repos.backend import GitSourceCheckouts, ReposBackend
from devstack.workspace.routes import build_router
from devstack.workspace.runs.journal import Journal
from devstack.workspace.runs.launcher import Launcher
from devstack.workspace.runs.state import RunsBackend
from devstack.workspace.runtime.fs import StorageMap
from devstack.workspace.secrets.backend import SecretsBackend
from devstack.workspace.serving.backend import ServingBackend
from devstack.workspace.workspace_files.backend import WorkspaceTree

log = logging.getLogger("devstack.workspace")


class Workspace:
    def __init__(self, ctx: WorkspaceContext):
        self.ctx = ctx
        self.store = ctx.store
        # The server's handling time of recent calls, (path, milliseconds): the stats endpoint
        # and the workspace_load benchmark read it.
        self.http_timings: deque[tuple[str, float]] = deque(maxlen=20_000)
        # Backends, in dependency order.
        # The workspace tree (notebooks, files, folders; Git folders in it) and secret scopes.
        self.workspace_tree = WorkspaceTree(self.store, ctx.data_dir)
        self.repos = ReposBackend(self.store, self.workspace_tree)
        self.secrets = SecretsBackend(self.store)
        # Identities next: the server signs every /api/ caller in with them.
        self.iam = build_identities(ctx, on_new_principal=self._make_home)
        # Unity Catalog: the metastore all workspaces share (None in contexts built without one),
        # the Files API on its volumes, and DBFS.
        self.metastore = ctx.metastore
        self.files = FilesBackend(self.metastore) if self.metastore is not None else None
        self.dbfs = Dbfs(ctx.data_dir / "dbfs", ctx.data_dir / "dbfs-spool")
        # MLflow: the tracking server proxy and the Unity Catalog model registry (None without one).
        self.mlflow_tracking = None
        if ctx.mlflow_tracking_uri:
            self.mlflow_tracking = TrackingBackend(
                MlflowServer(ctx.mlflow_tracking_uri),
                ctx.name,
                lambda path: workspace_folder_type(self.workspace_tree, path),
                ArtifactSigner(),
            )
        self.uc_registry = UcModelRegistry(ctx.mlflow_tracking_uri, self.metastore)
        self.presigned_urls = PresignedUrls()
        # Model Serving: endpoints serve the registry's model versions.
        self.serving = ServingBackend(
            self.store,
            self.uc_registry,
            self.metastore,
            ctx.data_dir / "serving",
            idle_seconds=ctx.serving_idle_seconds,
            secret=self._secret,
        )
        ctx.on_shutdown.append(self.serving.shutdown)
        # Compute: the drivers of all-purpose, job and one-task clusters.
        # Instance pools and cluster policies first: cluster specs are checked against them.
        self.instance_pools = InstancePools(self.store)
        self.cluster_policies = ClusterPolicies(self.store)
        # Each cluster's Python environment and the libraries installed into it.
        self.libraries = LibrariesBackend(
            ctx.data_dir / "libraries",
            LibraryFiles(
                lambda path: self.workspace_tree.read(self.workspace_tree.get(path)),
                StorageMap(ctx.data_dir, getattr(ctx.metastore, "root", None), ctx.storage_accounts),
            ),
            self.store,
        )
        ctx.on_shutdown.append(self.libraries.shutdown)
        self.clusters = ClusterManager(
            ctx, self.instance_pools, self.cluster_policies, self.libraries, run_token=self._run_token
        )
        # Command execution (API 1.2) on the all-purpose clusters' drivers.
        self.commands = CommandsBackend(self.clusters)
        self.git_checkouts = GitSourceCheckouts(ctx.data_dir / "git-cache")
        # Jobs and runs. The runs journal also hands out run and job ids. Run-now hands a job's
        # settings to the runs backend; runs read a job's current settings back (settings_of).
        self.run_journal = Journal(self.store)
        self.jobs = JobsBackend(self.store, ids=self.run_journal)
        self.runs = RunsBackend(
            self.run_journal,
            Launcher(
                self.clusters,
                checkout=self.git_checkouts.checkout,
                run_token=self._run_token,
                libraries=self.libraries,
            ),
            max_parallel=ctx.max_parallel_runs,
            job_settings=self.jobs.settings_of,
            workspace=lambda: (str(ctx.workspace_id), ctx.base_url),
        )
        self.router = build_router(self)

    def _run_token(self) -> str:
        """A short-lived token of the workspace's admin for one driver or task run, never its PAT."""
        return self.iam.issue_token(self.iam.admin, RUN_TOKEN_TTL_SECONDS)

    def _make_home(self, principal: Principal) -> None:
        """Each principal's home folder, /Users/<name>."""
        self.workspace_tree.mkdirs(principal.home)

    def _secret(self, scope: str, key: str) -> str | None:
        """A secret's value, for ``{{secrets/<scope>/<key>}}`` references of serving endpoints.

        None when the scope or the key does not exist.
        """
        try:
            value = self.secrets.get(scope, key)
        except ApiError:
            return None
        return value.decode("utf-8", errors="replace")

    def close(self) -> None:
        """Stop the services in reverse order of their start, then close the store."""
        self.runs.close()  # no more run transitions, then the drivers go, then the journal is written
        for hook in reversed(self.ctx.on_shutdown):
            try:
                hook()
            except Exception:
                log.exception("shutdown hook failed")
        self.store.close()
