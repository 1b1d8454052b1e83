"""Unity Catalog REST API 2.1: catalogs, schemas and volumes (``/api/2.1/unity-catalog/...``).

Parses requests, calls the shared :class:`~devstack.workspace.unity_catalog.backend.Metastore`
and answers in the shapes of databricks-sdk's ``CatalogInfo`` / ``SchemaInfo`` / ``VolumeInfo``.
"""

from __future__ import annotations

from typing import Any

from devstack.workspace.http import Request, invalid
from devstack.workspace.iam.backend import user_name_of
from devstack.workspace.unity_catalog.backend import Metastore

# Page length when the caller sets max_results=0 or none: Databricks documents a server value.
SERVER_PAGE = 1000


def _page(request: Request, items: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """One page of ``items`` after ``page_token`` (our tokens are offsets), at most ``max_results``."""
    limit = request.get("max_results", int, 0) or 0
    if limit < 0:
        raise invalid(
            "Invalid value for field max_results: must not be negative (0 means the server's page)."
        )
    limit = min(limit or SERVER_PAGE, SERVER_PAGE)
    token = request.get("page_token", str) or ""
    if token and not token.isdigit():
        raise invalid(f"Invalid value for field page_token: {token!r} is not a token this API returned")
    offset = int(token or 0)
    page = items[offset : offset + limit]
    body: dict[str, Any] = {key: _clean_all(page)}
    if offset + limit < len(items):
        body["next_page_token"] = str(offset + limit)
    return body


def _clean(record: dict[str, Any]) -> dict[str, Any]:
    """Databricks omits unset fields."""
    return {k: v for k, v in record.items() if v is not None}


def _clean_all(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [_clean(r) for r in records]


def _split(full_name: str, parts: int, kind: str) -> list[str]:
    names = full_name.split(".")
    if len(names) != parts or not all(names):
        example = {2: "<catalog>.<schema>", 3: "<catalog>.<schema>.<volume>"}[parts]
        raise invalid(f"Invalid {kind} full name {full_name!r}: expected {example}.")
    return names


class UnityCatalogApi:
    """Catalogs, schemas and volumes of the shared metastore, as databricks-sdk's ``w.catalogs``,
    ``w.schemas`` and ``w.volumes`` call them."""

    def __init__(self, metastore: Metastore):
        self.metastore = metastore

    # -- catalogs
    def create_catalog(self, req: Request):
        return _clean(
            self.metastore.create_catalog(
                req.require("name", str),
                comment=req.get("comment", str),
                properties=req.get("properties", dict),
                owner=user_name_of(req.principal),
            )
        )

    def list_catalogs(self, req: Request):
        return _page(req, self.metastore.list_catalogs(), "catalogs")

    def get_catalog(self, req: Request):
        return _clean(self.metastore.get_catalog(req.path_params["name"]))

    def update_catalog(self, req: Request):
        return _clean(
            self.metastore.update_catalog(
                req.path_params["name"],
                comment=req.get("comment", str),
                properties=req.get("properties", dict),
                owner=req.get("owner", str),
                new_name=req.get("new_name", str),
            )
        )

    def delete_catalog(self, req: Request):
        self.metastore.delete_catalog(req.path_params["name"], force=req.get("force", bool, False))
        return {}

    # -- schemas
    def create_schema(self, req: Request):
        return _clean(
            self.metastore.create_schema(
                req.require("catalog_name", str),
                req.require("name", str),
                comment=req.get("comment", str),
                properties=req.get("properties", dict),
                owner=user_name_of(req.principal),
            )
        )

    def list_schemas(self, req: Request):
        return _page(req, self.metastore.list_schemas(req.require("catalog_name", str)), "schemas")

    def get_schema(self, req: Request):
        return _clean(self.metastore.get_schema(*_split(req.path_params["full_name"], 2, "schema")))

    def update_schema(self, req: Request):
        catalog, schema = _split(req.path_params["full_name"], 2, "schema")
        return _clean(
            self.metastore.update_schema(
                catalog,
                schema,
                comment=req.get("comment", str),
                properties=req.get("properties", dict),
                owner=req.get("owner", str),
                new_name=req.get("new_name", str),
            )
        )

    def delete_schema(self, req: Request):
        catalog, schema = _split(req.path_params["full_name"], 2, "schema")
        self.metastore.delete_schema(catalog, schema, force=req.get("force", bool, False))
        return {}

    # -- volumes
    def create_volume(self, req: Request):
        return _clean(
            self.metastore.create_volume(
                req.require("catalog_name", str),
                req.require("schema_name", str),
                req.require("name", str),
                volume_type=req.require("volume_type", str),
                storage_location=req.get("storage_location", str),
                comment=req.get("comment", str),
                owner=user_name_of(req.principal),
            )
        )

    def list_volumes(self, req: Request):
        volumes = self.metastore.list_volumes(
            req.require("catalog_name", str), req.require("schema_name", str)
        )
        return _page(req, volumes, "volumes")

    def get_volume(self, req: Request):
        return _clean(self.metastore.get_volume(*_split(req.path_params["name"], 3, "volume")))

    def update_volume(self, req: Request):
        catalog, schema, name = _split(req.path_params["name"], 3, "volume")
        return _clean(
            self.metastore.update_volume(
                catalog,
                schema,
                name,
                comment=req.get("comment", str),
                owner=req.get("owner", str),
                new_name=req.get("new_name", str),
            )
        )

    def delete_volume(self, req: Request):
        self.metastore.delete_volume(*_split(req.path_params["name"], 3, "volume"))
        return {}
