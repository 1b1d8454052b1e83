"""The whole REST surface of an emulated workspace, in one table.

Each row is a :class:`Route`: an HTTP method, the API versions it answers under (``/api/<v>/``;
``""`` for paths outside ``/api``), a path (``{name}`` segments are path parameters, ``{name:path}``
takes the rest of the path), and the handler, a method of a service's ``*Api`` class.

Services not yet moved to the per-service layout still add their routes themselves through
``register(router, ctx)``; :data:`SELF_REGISTERING` lists them, in the order they must run.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from devstack.workspace.http import Handler, Router

if TYPE_CHECKING:
    from devstack.workspace.app import Workspace


@dataclass(frozen=True)
class Route:
    method: str
    versions: tuple[str, ...] | str
    path: str
    handler: Handler


# Modules under devstack.workspace that still expose ``register(router, ctx)``.
SELF_REGISTERING = (
    "workspace_objects",
    "iam.api",  # after workspace_objects: each new principal gets its /Users home folder
    "secrets.api",
    "repos",
    "clusters",
    "jobs",
    "runs",
    "internal",
    "runpage",
    "unity_catalog.api",
    "files.api",
    "files.dbfs_api",
    "mlflow.uc_registry_api",
    "mlflow.tracking_api",
    "serving.api",  # after mlflow.uc_registry_api: endpoints serve its model versions
)


def route_table(ws: Workspace) -> list[Route]:
    """Every route of the services built by :class:`~devstack.workspace.app.Workspace`."""
    return []


def build_router(ws: Workspace) -> Router:
    router = Router()
    for name in SELF_REGISTERING:
        importlib.import_module(f"devstack.workspace.{name}").register(router, ws.ctx)
    for route in route_table(ws):
        router.add(route.method, route.versions, route.path, route.handler)
    return router
