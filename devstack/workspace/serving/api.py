"""Model Serving REST API (``/api/2.0/serving-endpoints``) and queries (``/serving-endpoints/...``).

Parses requests, calls :class:`~devstack.workspace.serving.backend.ServingBackend`, and renders
answers through databricks-sdk's own dataclasses (``ServingEndpointDetailed``,
``ServingEndpoint``, ``BuildLogsResponse``...), so the shapes are the ones the SDK reads.

Queries live outside ``/api/`` (``POST /serving-endpoints/{name}/invocations``), where the
workspace's HTTP front does not sign callers in: the handlers here do it, with the same
tokens as the REST API.
"""

from __future__ import annotations

from typing import Any

from devstack.workspace.context import WorkspaceContext
from devstack.workspace.http import ApiError, Request, Response, invalid
from devstack.workspace.iam import api as iam_api
from devstack.workspace.serving.backend import ServingBackend

BASE = "serving-endpoints"


def _detailed(endpoint: dict[str, Any]) -> dict[str, Any]:
    from databricks.sdk.service.serving import ServingEndpointDetailed

    return ServingEndpointDetailed.from_dict(endpoint).as_dict()


def _summary(endpoint: dict[str, Any]) -> dict[str, Any]:
    from databricks.sdk.service.serving import ServingEndpoint

    summary = {k: v for k, v in endpoint.items() if k not in ("config", "pending_config")}
    if endpoint.get("config"):
        summary["config"] = {
            "served_entities": [
                {"name": e["name"], "entity_name": e["entity_name"], "entity_version": e["entity_version"]}
                for e in endpoint["config"]["served_entities"]
            ]
        }
    return ServingEndpoint.from_dict(summary).as_dict()


def _creator(request: Request) -> str:
    principal = request.principal
    return getattr(principal, "name", None) or "devstack-user"


def _config(request: Request) -> dict[str, Any]:
    config = {}
    for key in ("served_entities", "served_models", "traffic_config", "auto_capture_config"):
        if request.has(key):
            value = request.get(key)
            if key in ("served_entities", "served_models") and not isinstance(value, list):
                raise invalid(f"Invalid value for field {key}: expected a list of served entities.")
            if key in ("traffic_config", "auto_capture_config") and not isinstance(value, dict):
                raise invalid(f"Invalid value for field {key}: expected an object.")
            config[key] = value
    return config


def register(router, ctx: WorkspaceContext) -> None:
    registry = ctx.services.get("uc_registry")

    def secret(scope: str, key: str) -> str | None:
        # The secrets module's table (devstack.workspace.secrets): values are stored as bytes.
        try:
            row = ctx.store.one("SELECT value FROM secrets WHERE scope = ? AND key = ?", (scope, key))
        except Exception:  # no secrets table in a context built without that module
            return None
        return None if row is None else bytes(row["value"]).decode("utf-8", errors="replace")

    backend = ServingBackend(
        ctx.store,
        registry,
        ctx.metastore,
        ctx.data_dir / "serving",
        idle_seconds=getattr(ctx, "serving_idle_seconds", 1800.0),
        secret=secret,
    )
    ctx.services["serving"] = backend
    ctx.on_shutdown.append(backend.shutdown)

    def create(req: Request):
        config = req.get("config", dict)
        tags = req.get("tags", list)
        endpoint = backend.create(
            req.require("name", str),
            config,
            creator=_creator(req),
            description=req.get("description", str),
            tags=tags,
        )
        return _detailed(endpoint)

    def list_endpoints(req: Request):
        return {"endpoints": [_summary(e) for e in backend.list()]}

    def get(req: Request):
        return _detailed(backend.get(req.path_params["name"]))

    def delete(req: Request):
        backend.delete(req.path_params["name"])
        return {}

    def update_config(req: Request):
        return _detailed(backend.update_config(req.path_params["name"], _config(req), creator=_creator(req)))

    def build_logs(req: Request):
        p = req.path_params
        return {"logs": backend.build_logs(p["name"], p["served"])}

    def server_logs(req: Request):
        p = req.path_params
        return {"logs": backend.server_logs(p["name"], p["served"])}

    def metrics(req: Request):
        text = backend.metrics(req.path_params["name"])
        return Response(text.encode(), content_type="text/plain; version=0.0.4; charset=utf-8")

    router.add("POST", "2.0", BASE, create)
    router.add("GET", "2.0", BASE, list_endpoints)
    router.add("GET", "2.0", f"{BASE}/{{name}}", get)
    router.add("DELETE", "2.0", f"{BASE}/{{name}}", delete)
    router.add("PUT", "2.0", f"{BASE}/{{name}}/config", update_config)
    router.add("GET", "2.0", f"{BASE}/{{name}}/served-models/{{served}}/build-logs", build_logs)
    router.add("GET", "2.0", f"{BASE}/{{name}}/served-models/{{served}}/logs", server_logs)
    router.add("GET", "2.0", f"{BASE}/{{name}}/metrics", metrics)

    # -- queries ----------------------------------------------------------------------------

    def invoke(req: Request, served: str | None) -> Response:
        iam_api.authenticate(ctx, req.headers)
        if not req.raw_body.strip():
            raise ApiError(
                400,
                "BAD_REQUEST",
                "The request body is empty: send JSON with one of dataframe_split, dataframe_records, "
                "instances or inputs.",
            )
        client_request_id = req.body.get("client_request_id")
        status, data, served_name = backend.query(
            req.path_params["name"],
            req.raw_body,
            served=served,
            client_request_id=str(client_request_id) if client_request_id is not None else None,
        )
        # The served entity that answered, as Databricks names it (databricks-sdk reads it into
        # QueryEndpointResponse.served_model_name).
        return Response(
            data, content_type="application/json", status=status, headers={"served-model-name": served_name}
        )

    def invocations(req: Request):
        return invoke(req, None)

    def served_invocations(req: Request):
        return invoke(req, req.path_params["served"])

    router.add("POST", "", f"{BASE}/{{name}}/invocations", invocations)
    router.add("POST", "", f"{BASE}/{{name}}/served-models/{{served}}/invocations", served_invocations)
