"""One emulated workspace, assembled: its settings and store, each service's backend in the order
they depend on each other (every backend gets what it needs through its constructor), then the
route table the HTTP server dispatches on."""

from __future__ import annotations

import logging

from devstack.workspace.context import WorkspaceContext
from devstack.workspace.repos.backend import GitSourceCheckouts, ReposBackend
from devstack.workspace.routes import build_router
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
        ctx.services["git"] = self.git_checkouts  # until the run launcher takes it from the Workspace
        self.router = build_router(self)

    def close(self) -> None:
        """Stop the services in reverse order of their start, then close the store."""
        for hook in reversed(self.ctx.on_shutdown):
            try:
                hook()
            except Exception:
                log.exception("shutdown hook failed")
        self.store.close()
