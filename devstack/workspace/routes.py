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
from devstack.workspace.jobs.api import JobsApi
from devstack.workspace.repos.api import ReposApi
from devstack.workspace.runs.api import RunsApi
from devstack.workspace.runs.internal_api import RunsInternalApi
from devstack.workspace.runs.page import RunPage
from devstack.workspace.secrets.api import SecretsApi
from devstack.workspace.workspace_files.api import WorkspaceFilesApi

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
    "iam.api",
    "clusters",
    "unity_catalog.api",
    "files.api",
    "files.dbfs_api",
    "mlflow.uc_registry_api",
    "mlflow.tracking_api",
    "serving.api",  # after mlflow.uc_registry_api: endpoints serve its model versions
)


def route_table(ws: Workspace) -> list[Route]:
    """Every route of the services built by :class:`~devstack.workspace.app.Workspace`."""
    rows: list[Route] = []

    # --- workspace_files: notebooks, files and folders of the workspace tree
    workspace = WorkspaceFilesApi(ws.workspace_tree)
    rows += [
        Route("POST", "2.0", "workspace/import", workspace.import_),
        Route("GET", "2.0", "workspace/export", workspace.export),
        Route("GET", "2.0", "workspace/get-status", workspace.get_status),
        Route("GET", "2.0", "workspace/list", workspace.list),
        Route("POST", "2.0", "workspace/mkdirs", workspace.mkdirs),
        Route("POST", "2.0", "workspace/delete", workspace.delete),
    ]

    # --- secrets: scopes, secrets, scope ACLs
    secrets = SecretsApi(ws.secrets)
    rows += [
        Route("POST", "2.0", "secrets/scopes/create", secrets.create_scope),
        Route("GET", "2.0", "secrets/scopes/list", secrets.list_scopes),
        Route("POST", "2.0", "secrets/scopes/delete", secrets.delete_scope),
        Route("POST", "2.0", "secrets/put", secrets.put),
        Route("GET", "2.0", "secrets/list", secrets.list_secrets),
        Route("GET", "2.0", "secrets/get", secrets.get),
        Route("POST", "2.0", "secrets/delete", secrets.delete),
        Route("POST", "2.0", "secrets/acls/put", secrets.put_acl),
        Route("GET", "2.0", "secrets/acls/get", secrets.get_acl),
        Route("GET", "2.0", "secrets/acls/list", secrets.list_acls),
        Route("POST", "2.0", "secrets/acls/delete", secrets.delete_acl),
    ]

    # --- repos: Git folders
    repos = ReposApi(ws.repos)
    rows += [Route("POST", "2.0", "repos", repos.create), Route("GET", "2.0", "repos", repos.list)]
    # The Airflow provider calls "2.0/repos/" + "/" + id; Databricks accepts the double slash.
    for item in ("repos/{repo_id}", "repos//{repo_id}"):
        rows += [
            Route("GET", "2.0", item, repos.get),
            Route("PATCH", "2.0", item, repos.update),
            Route("DELETE", "2.0", item, repos.delete),
        ]

    rows += _jobs_and_runs(ws)
    return rows


def _jobs_and_runs(ws: Workspace) -> list[Route]:
    jobs = JobsApi(ws.jobs, ws.runs)
    runs = RunsApi(ws.runs, ws.jobs, ws.ctx)
    internal = RunsInternalApi(ws.runs, ws.run_journal, ws.http_timings)
    page = RunPage(ws.runs, ws.ctx)
    v = ("2.0", "2.1", "2.2")
    return [
        # --- jobs
        Route("POST", v, "jobs/create", jobs.create),
        Route("POST", v, "jobs/reset", jobs.reset),
        Route("POST", v, "jobs/update", jobs.update),
        Route("GET", v, "jobs/get", jobs.get),
        Route("GET", v, "jobs/list", jobs.list),
        Route("POST", v, "jobs/delete", jobs.delete),
        Route("POST", v, "jobs/run-now", jobs.run_now),
        Route("GET", "2.0", "permissions/jobs/{job_id}", jobs.permissions),
        Route("PATCH", "2.0", "permissions/jobs/{job_id}", jobs.permissions),
        Route("PUT", "2.0", "permissions/jobs/{job_id}", jobs.permissions),
        # --- runs
        Route("POST", v, "jobs/runs/submit", runs.submit),
        Route("GET", v, "jobs/runs/get", runs.get_run),
        Route("GET", v, "jobs/runs/get-output", runs.get_output),
        Route("GET", v, "jobs/runs/list", runs.list_runs),
        Route("POST", v, "jobs/runs/cancel", runs.cancel),
        Route("POST", v, "jobs/runs/cancel-all", runs.cancel_all),
        Route("POST", v, "jobs/runs/repair", runs.repair),
        Route("POST", v, "jobs/runs/delete", runs.delete),
        Route("GET", v, "jobs/runs/export", runs.export),
        # the drivers' callbacks (dbutils.jobs.taskValues) and the workspace's stats
        Route("POST", "2.0", "devstack/task-values/set", internal.set_value),
        Route("GET", "2.0", "devstack/task-values/get", internal.get_value),
        Route("GET", "2.0", "devstack/stats", internal.stats),
        # the HTML run page behind run_page_url (outside /api)
        Route("GET", "", "jobs/{job_id}/runs/{run_id}", page.page),
        Route("GET", "", "jobs/runs/{run_id}", page.page),
    ]

def build_router(ws: Workspace) -> Router:
    router = Router()
    for name in SELF_REGISTERING:
        importlib.import_module(f"devstack.workspace.{name}").register(router, ws.ctx)
    for route in route_table(ws):
        router.add(route.method, route.versions, route.path, route.handler)
    return router
