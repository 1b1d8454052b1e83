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

from devstack.workspace.http import ApiError, Request, Response, invalid
from devstack.workspace.iam.backend import Identities, user_name_of
from devstack.workspace.serving.backend import ServingBackend


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
    return user_name_of(request.principal)


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


class ServingApi:
    """Serving endpoints and their queries, on a :class:`ServingBackend`.

    :param identities: signs in the callers of queries, which arrive outside ``/api/``.
    """

    def __init__(self, backend: ServingBackend, identities: Identities):
        self.backend = backend
        self.identities = identities

    def create(self, req: Request):
        endpoint = self.backend.create(
            req.require("name", str),
            req.get("config", dict),
            creator=_creator(req),
            description=req.get("description", str),
            tags=req.get("tags", list),
        )
        return _detailed(endpoint)

    def list(self, req: Request):
        return {"endpoints": [_summary(e) for e in self.backend.list()]}

    def get(self, req: Request):
        return _detailed(self.backend.get(req.path_params["name"]))

    def delete(self, req: Request):
        self.backend.delete(req.path_params["name"])
        return {}

    def update_config(self, req: Request):
        return _detailed(
            self.backend.update_config(req.path_params["name"], _config(req), creator=_creator(req))
        )

    def build_logs(self, req: Request):
        p = req.path_params
        return {"logs": self.backend.build_logs(p["name"], p["served"])}

    def server_logs(self, req: Request):
        p = req.path_params
        return {"logs": self.backend.server_logs(p["name"], p["served"])}

    def metrics(self, req: Request):
        text = self.backend.metrics(req.path_params["name"])
        return Response(text.encode(), content_type="text/plain; version=0.0.4; charset=utf-8")

    # -- queries ----------------------------------------------------------------------------

    def invocations(self, req: Request):
        return self._invoke(req, None)

    def served_invocations(self, req: Request):
        return self._invoke(req, req.path_params["served"])

    def _invoke(self, req: Request, served: str | None) -> Response:
        self.identities.authenticate(req.headers)
        if not req.raw_body.strip():
            raise ApiError(
                400,
                "BAD_REQUEST",
                "The request body is empty: send JSON with one of dataframe_split, dataframe_records, "
                "instances or inputs.",
            )
        client_request_id = req.body.get("client_request_id")
        status, data, served_name = self.backend.query(
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
