"""One emulated workspace, assembled: its settings and store, each service's backend in the order
they depend on each other (every backend gets what it needs through its constructor), then the
route table the HTTP server dispatches on."""

from __future__ import annotations

import logging

from devstack.workspace.context import WorkspaceContext
from devstack.workspace.routes import build_router

log = logging.getLogger("devstack.workspace")


class Workspace:
    def __init__(self, ctx: WorkspaceContext):
        self.ctx = ctx
        self.store = ctx.store
        # Backends, in dependency order.
        self.router = build_router(self)

    def close(self) -> None:
        """Stop the services in reverse order of their start, then close the store."""
        for hook in reversed(self.ctx.on_shutdown):
            try:
                hook()
            except Exception:
                log.exception("shutdown hook failed")
        self.store.close()
