"""The whole REST surface of an emulated workspace, in one table.

Each row is a :class:`Route`: an HTTP method, the API versions it answers under (``/api/<v>/``;
``""`` for paths outside ``/api``), a path (``{name}`` segments are path parameters, ``{name:path}``
takes the rest of the path), and the handler, a method of a service's ``*Api`` class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from devstack.workspace.clusters.api import ClusterPoliciesApi, ClustersApi, InstancePoolsApi
from devstack.workspace.commands.api import CommandsApi
from devstack.workspace.files.api import FilesApi
from devstack.workspace.files.dbfs_api import DbfsApi
from devstack.workspace.http import Handler, Router
from devstack.workspace.iam.api import SCIM, SECRETS_PATH, IamApi
from devstack.workspace.jobs.api import JobsApi
from devstack.workspace.libraries.api import LibrariesApi
from devstack.workspace.mlflow.tracking_api import SIGNED_PATH, TrackingApi, UnconfiguredTrackingApi
from devstack.workspace.mlflow.uc_registry_api import PRESIGNED_PATH, UcRegistryApi
from devstack.workspace.repos.api import ReposApi
from devstack.workspace.runs.api import RunsApi
from devstack.workspace.runs.internal_api import RunsInternalApi
from devstack.workspace.runs.page import RunPage
from devstack.workspace.secrets.api import SecretsApi
from devstack.workspace.serving.api import ServingApi
from devstack.workspace.unity_catalog.api import UnityCatalogApi
from devstack.workspace.workspace_files.api import WorkspaceFilesApi

if TYPE_CHECKING:
    from devstack.workspace.app import Workspace

# The Unity Catalog model registry of mlflow's databricks-uc client.
UC_MODELS = "/api/2.0/mlflow/unity-catalog"


@dataclass(frozen=True)
class Route:
    method: str
    versions: tuple[str, ...] | str
    path: str
    handler: Handler


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

    # --- iam: sign-in discovery, OAuth M2M tokens, SCIM identities, service principal secrets
    iam = IamApi(ws.iam, workspace_id=ws.ctx.workspace_id)
    rows += [
        Route("GET", "", ".well-known/databricks-config", iam.host_metadata),
        Route("GET", "", "oidc/.well-known/oauth-authorization-server", iam.authorization_server),
        Route("POST", "", "oidc/v1/token", iam.oauth_token),
        Route("GET", "2.0", f"{SCIM}/Me", iam.me),
    ]
    for resource, principals in (("Users", iam.users), ("ServicePrincipals", iam.service_principals)):
        rows += [
            Route("GET", "2.0", f"{SCIM}/{resource}", principals.list),
            Route("POST", "2.0", f"{SCIM}/{resource}", principals.create),
            Route("GET", "2.0", f"{SCIM}/{resource}/{{id}}", principals.get),
            Route("PUT", "2.0", f"{SCIM}/{resource}/{{id}}", principals.replace),
            Route("PATCH", "2.0", f"{SCIM}/{resource}/{{id}}", principals.patch),
            Route("DELETE", "2.0", f"{SCIM}/{resource}/{{id}}", principals.delete),
        ]
    rows += [
        Route("GET", "2.0", f"{SCIM}/Groups", iam.list_groups),
        Route("POST", "2.0", f"{SCIM}/Groups", iam.create_group),
        Route("GET", "2.0", f"{SCIM}/Groups/{{id}}", iam.get_group),
        Route("PUT", "2.0", f"{SCIM}/Groups/{{id}}", iam.replace_group),
        Route("PATCH", "2.0", f"{SCIM}/Groups/{{id}}", iam.patch_group),
        Route("DELETE", "2.0", f"{SCIM}/Groups/{{id}}", iam.delete_group),
        Route("POST", "2.0", SECRETS_PATH, iam.create_secret),
        Route("GET", "2.0", SECRETS_PATH, iam.list_secrets),
        Route("DELETE", "2.0", SECRETS_PATH + "/{secret}", iam.delete_secret),
        Route("POST", "2.0", "devstack/service-principals/{sp}/secrets", iam.register_secret),
    ]

    # --- unity_catalog: catalogs, schemas, volumes of the shared metastore; Files API on volumes
    if ws.metastore is not None:
        catalog = UnityCatalogApi(ws.metastore)
        rows += [
            Route("POST", "2.1", "unity-catalog/catalogs", catalog.create_catalog),
            Route("GET", "2.1", "unity-catalog/catalogs", catalog.list_catalogs),
            Route("GET", "2.1", "unity-catalog/catalogs/{name}", catalog.get_catalog),
            Route("PATCH", "2.1", "unity-catalog/catalogs/{name}", catalog.update_catalog),
            Route("DELETE", "2.1", "unity-catalog/catalogs/{name}", catalog.delete_catalog),
            Route("POST", "2.1", "unity-catalog/schemas", catalog.create_schema),
            Route("GET", "2.1", "unity-catalog/schemas", catalog.list_schemas),
            Route("GET", "2.1", "unity-catalog/schemas/{full_name}", catalog.get_schema),
            Route("PATCH", "2.1", "unity-catalog/schemas/{full_name}", catalog.update_schema),
            Route("DELETE", "2.1", "unity-catalog/schemas/{full_name}", catalog.delete_schema),
            Route("POST", "2.1", "unity-catalog/volumes", catalog.create_volume),
            Route("GET", "2.1", "unity-catalog/volumes", catalog.list_volumes),
            Route("GET", "2.1", "unity-catalog/volumes/{name}", catalog.get_volume),
            Route("PATCH", "2.1", "unity-catalog/volumes/{name}", catalog.update_volume),
            Route("DELETE", "2.1", "unity-catalog/volumes/{name}", catalog.delete_volume),
        ]
    if ws.files is not None:
        files = FilesApi(ws.files)
        rows += [
            Route("PUT", "2.0", "fs/files{path:path}", files.upload),
            Route("GET", "2.0", "fs/files{path:path}", files.download),
            Route("HEAD", "2.0", "fs/files{path:path}", files.metadata),
            Route("DELETE", "2.0", "fs/files{path:path}", files.delete),
            Route("PUT", "2.0", "fs/directories{path:path}", files.mkdirs),
            Route("GET", "2.0", "fs/directories{path:path}", files.list_directory),
            Route("HEAD", "2.0", "fs/directories{path:path}", files.directory_metadata),
            Route("DELETE", "2.0", "fs/directories{path:path}", files.delete_directory),
        ]

    # --- dbfs
    dbfs = DbfsApi(ws.dbfs)
    rows += [
        Route("POST", "2.0", "dbfs/put", dbfs.put),
        Route("POST", "2.0", "dbfs/create", dbfs.create),
        Route("POST", "2.0", "dbfs/add-block", dbfs.add_block),
        Route("POST", "2.0", "dbfs/close", dbfs.close),
        Route("GET", "2.0", "dbfs/read", dbfs.read),
        Route("GET", "2.0", "dbfs/list", dbfs.list),
        Route("GET", "2.0", "dbfs/get-status", dbfs.get_status),
        Route("POST", "2.0", "dbfs/mkdirs", dbfs.mkdirs),
        Route("POST", "2.0", "dbfs/move", dbfs.move),
        Route("POST", "2.0", "dbfs/delete", dbfs.delete),
    ]

    # --- mlflow: the Unity Catalog model registry (databricks-uc) and its presigned file URLs
    models = UcRegistryApi(ws.uc_registry, ws.presigned_urls, base_url=ws.ctx.base_url)
    rows += [
        Route("POST", "", f"{UC_MODELS}/registered-models/create", models.create_registered_model),
        Route("GET", "", f"{UC_MODELS}/registered-models/get", models.get_registered_model),
        Route("PATCH", "", f"{UC_MODELS}/registered-models/update", models.update_registered_model),
        Route("DELETE", "", f"{UC_MODELS}/registered-models/delete", models.delete_registered_model),
        Route("GET", "", f"{UC_MODELS}/registered-models/search", models.search_registered_models),
        Route("POST", "", f"{UC_MODELS}/registered-models/set-tag", models.set_registered_model_tag),
        Route("DELETE", "", f"{UC_MODELS}/registered-models/delete-tag", models.delete_registered_model_tag),
        Route("POST", "", f"{UC_MODELS}/registered-models/alias", models.set_alias),
        Route("DELETE", "", f"{UC_MODELS}/registered-models/alias", models.delete_alias),
        Route("GET", "", f"{UC_MODELS}/registered-models/alias", models.get_by_alias),
        Route("POST", "", f"{UC_MODELS}/model-versions/create", models.create_model_version),
        Route("POST", "", f"{UC_MODELS}/model-versions/finalize", models.finalize),
        Route("GET", "", f"{UC_MODELS}/model-versions/get", models.get_model_version),
        Route("PATCH", "", f"{UC_MODELS}/model-versions/update", models.update_model_version),
        Route("DELETE", "", f"{UC_MODELS}/model-versions/delete", models.delete_model_version),
        Route("GET", "", f"{UC_MODELS}/model-versions/search", models.search_model_versions),
        Route("POST", "", f"{UC_MODELS}/model-versions/set-tag", models.set_model_version_tag),
        Route("DELETE", "", f"{UC_MODELS}/model-versions/delete-tag", models.delete_model_version_tag),
        Route(
            "POST",
            "",
            f"{UC_MODELS}/model-versions/generate-temporary-credentials",
            models.temporary_credentials,
        ),
        Route("GET", "", f"{UC_MODELS}/model-versions/get-download-uri", models.download_uri),
        Route(
            "GET",
            "",
            f"{UC_MODELS}/registered-models:is-databricks-sdk-models-artifact-repository-enabled",
            models.sdk_repository_enabled,
        ),
        Route("POST", "", f"{UC_MODELS}/model-versions/emit-lineage", models.emit_lineage),
        Route("POST", "", "/api/2.0/fs/create-upload-url", models.create_upload_url),
        Route("POST", "", "/api/2.0/fs/create-download-url", models.create_download_url),
        Route("PUT", "", PRESIGNED_PATH, models.put_file),
        Route("GET", "", PRESIGNED_PATH, models.get_file),
        Route("POST", "2.0", "mlflow/model-versions/transition-stage", models.transition_stage),
    ]

    # --- mlflow: tracking, every call of MLflow's MlflowService (paths from mlflow's protos),
    # forwarded to the MLflow server; artifact credentials as signed URLs of this workspace
    if ws.mlflow_tracking is not None:
        tracking = TrackingApi(
            ws.mlflow_tracking, ws.workspace_tree, workspace_name=ws.ctx.name, base_url=ws.ctx.base_url
        )
        rows += [Route(method, "", path, handler) for method, path, handler in tracking.service_calls()]
        rows += [
            Route(method, "", path, handler) for method, path, handler in tracking.artifact_credential_calls()
        ]
        rows += [
            Route("GET", "", SIGNED_PATH, tracking.signed_bytes),
            Route("PUT", "", SIGNED_PATH, tracking.signed_bytes),
        ]
    else:
        unconfigured = UnconfiguredTrackingApi(ws.ctx.name).unconfigured
        for path in (
            "mlflow/experiments/{op}",
            "mlflow/runs/{op}",
            "mlflow/logged-models",
            "mlflow/artifacts/{op}",
        ):
            rows += [Route("GET", "2.0", path, unconfigured), Route("POST", "2.0", path, unconfigured)]

    # --- serving: endpoints (REST) and their queries (outside /api/, signed in by the handlers)
    serving = ServingApi(ws.serving, ws.iam)
    rows += [
        Route("POST", "2.0", "serving-endpoints", serving.create),
        Route("GET", "2.0", "serving-endpoints", serving.list),
        Route("GET", "2.0", "serving-endpoints/{name}", serving.get),
        Route("DELETE", "2.0", "serving-endpoints/{name}", serving.delete),
        Route("PUT", "2.0", "serving-endpoints/{name}/config", serving.update_config),
        Route("GET", "2.0", "serving-endpoints/{name}/served-models/{served}/build-logs", serving.build_logs),
        Route("GET", "2.0", "serving-endpoints/{name}/served-models/{served}/logs", serving.server_logs),
        Route("GET", "2.0", "serving-endpoints/{name}/metrics", serving.metrics),
        Route("POST", "", "serving-endpoints/{name}/invocations", serving.invocations),
        Route(
            "POST",
            "",
            "serving-endpoints/{name}/served-models/{served}/invocations",
            serving.served_invocations,
        ),
    ]

    rows += _compute(ws)
    rows += _jobs_and_runs(ws)
    return rows


def _compute(ws: Workspace) -> list[Route]:
    clusters = ClustersApi(ws.clusters)
    libraries = LibrariesApi(ws.libraries, ws.clusters)
    pools = InstancePoolsApi(ws.instance_pools)
    policies = ClusterPoliciesApi(ws.cluster_policies)
    commands = CommandsApi(ws.commands)
    v = ("2.0", "2.1")
    return [
        # --- clusters: all-purpose clusters (job clusters answer clusters/get)
        Route("POST", v, "clusters/create", clusters.create),
        Route("POST", v, "clusters/edit", clusters.edit),
        Route("GET", v, "clusters/get", clusters.get),
        Route("GET", v, "clusters/list", clusters.list),
        Route("POST", v, "clusters/start", clusters.start),
        Route("POST", v, "clusters/restart", clusters.restart),
        Route("POST", v, "clusters/resize", clusters.resize),
        Route("POST", v, "clusters/delete", clusters.delete),
        Route("POST", v, "clusters/permanent-delete", clusters.permanent_delete),
        Route("POST", v, "clusters/pin", clusters.pin),
        Route("POST", v, "clusters/unpin", clusters.unpin),
        Route("POST", v, "clusters/events", clusters.events),
        Route("GET", v, "clusters/spark-versions", clusters.spark_versions),
        Route("GET", v, "clusters/list-node-types", clusters.node_types),
        # --- libraries: installed into each cluster's own Python environment
        Route("POST", "2.0", "libraries/install", libraries.install),
        Route("POST", "2.0", "libraries/uninstall", libraries.uninstall),
        Route("GET", "2.0", "libraries/cluster-status", libraries.cluster_status),
        Route("GET", "2.0", "libraries/all-cluster-statuses", libraries.all_cluster_statuses),
        # --- instance pools
        Route("POST", "2.0", "instance-pools/create", pools.create),
        Route("GET", "2.0", "instance-pools/get", pools.get),
        Route("GET", "2.0", "instance-pools/list", pools.list),
        Route("POST", "2.0", "instance-pools/edit", pools.edit),
        Route("POST", "2.0", "instance-pools/delete", pools.delete),
        # --- cluster policies
        Route("POST", "2.0", "policies/clusters/create", policies.create),
        Route("GET", "2.0", "policies/clusters/get", policies.get),
        Route("GET", "2.0", "policies/clusters/list", policies.list),
        Route("POST", "2.0", "policies/clusters/edit", policies.edit),
        Route("POST", "2.0", "policies/clusters/delete", policies.delete),
        # --- command execution (API 1.2) on all-purpose clusters
        Route("POST", "1.2", "contexts/create", commands.create_context),
        Route("GET", "1.2", "contexts/status", commands.context_status),
        Route("POST", "1.2", "contexts/destroy", commands.destroy_context),
        Route("POST", "1.2", "commands/execute", commands.execute),
        Route("GET", "1.2", "commands/status", commands.command_status),
        Route("POST", "1.2", "commands/cancel", commands.cancel),
    ]


def _jobs_and_runs(ws: Workspace) -> list[Route]:
    jobs = JobsApi(ws.jobs, ws.runs)
    runs = RunsApi(ws.runs, ws.jobs, ws.ctx)
    internal = RunsInternalApi(ws.runs, ws.run_journal, lambda: ws.http_timings)
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
    for route in route_table(ws):
        router.add(route.method, route.versions, route.path, route.handler)
    return router
