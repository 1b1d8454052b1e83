"""One emulated workspace, assembled: its settings and store, each service's backend in the order
they depend on each other (every backend gets what it needs through its constructor), then the
route table the HTTP server dispatches on."""

from __future__ import annotations

import logging

from devstack.workspace.clusters import run_token
from devstack.workspace.context import WorkspaceContext
from devstack.workspace.jobs.backend import JobsBackend
from devstack.workspace.repos.backend import GitSourceCheckouts, ReposBackend
from devstack.workspace.routes import build_router
from devstack.workspace.runs.journal import Journal
from devstack.workspace.runs.launcher import Launcher
from devstack.workspace.runs.state import RunsBackend
from devstack.workspace.secrets.backend import SecretsBackend
from devstack.workspace.workspace_files.backend import WorkspaceTree

log = logging.getLogger("devstack.workspace")


class Workspace:
    def __init__(self, ctx: WorkspaceContext):
        self.ctx = ctx
        self.store = ctx.store
        # Backends, in dependency order.
        # The workspace tree (notebooks, files, folders; Git folders in it) and secret scopes.
        self.workspace_tree = WorkspaceTree(self.store, ctx.data_dir)
        ctx.services["workspace"] = self.workspace_tree  # until iam and mlflow take it from the Workspace
        self.repos = ReposBackend(self.store, self.workspace_tree)
        self.secrets = SecretsBackend(self.store)
        # The git checkouts of job runs' git_source.
        self.git_checkouts = GitSourceCheckouts(ctx.data_dir / "git-cache")
        # Jobs and runs. The runs journal also hands out run and job ids. Run-now hands a job's
        # settings to the runs backend; runs read a job's current settings back (settings_of).
        self.run_journal = Journal(self.store)
        self.jobs = JobsBackend(self.store, ids=self.run_journal)
        self.runs = RunsBackend(
            self.run_journal,
            Launcher(self.clusters, checkout=self.git_checkouts.checkout, run_token=lambda: run_token(ctx)),
            max_parallel=ctx.max_parallel_runs,
            job_settings=self.jobs.settings_of,
        )
        self.router = build_router(self)

    def http_timings(self):
        """The server's recent (path, milliseconds) handling times (the stats endpoint reads them)."""
        return self.ctx.services.get("http_timings") or ()  # until the server hands them to the Workspace

    def close(self) -> None:
        """Stop the services in reverse order of their start, then close the store."""
        self.runs.close()  # no more run transitions, then the drivers go, then the journal is written
        for hook in reversed(self.ctx.on_shutdown):
            try:
                hook()
            except Exception:
                log.exception("shutdown hook failed")
        self.store.close()
