"""Unity Catalog REST API 2.1: catalogs, schemas and volumes (``/api/2.1/unity-catalog/...``).

Parses requests, calls the shared :class:`~devstack.workspace.unity_catalog.backend.Metastore`
and answers in the shapes of databricks-sdk's ``CatalogInfo`` / ``SchemaInfo`` / ``VolumeInfo``.
"""

from __future__ import annotations

from typing import Any

from devstack.workspace.context import WorkspaceContext
from devstack.workspace.http import Request, invalid
from devstack.workspace.unity_catalog.backend import Metastore

PREFIX = "unity-catalog"
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


def register(router, ctx: WorkspaceContext) -> None:
    metastore: Metastore | None = ctx.metastore
    if metastore is None:  # a context built without the CLI (tests of other modules)
        return

    # -- catalogs
    def create_catalog(req: Request):
        return _clean(
            metastore.create_catalog(
                req.require("name", str),
                comment=req.get("comment", str),
                properties=req.get("properties", dict),
            )
        )

    def list_catalogs(req: Request):
        return _page(req, metastore.list_catalogs(), "catalogs")

    def get_catalog(req: Request):
        return _clean(metastore.get_catalog(req.path_params["name"]))

    def update_catalog(req: Request):
        return _clean(
            metastore.update_catalog(
                req.path_params["name"],
                comment=req.get("comment", str),
                properties=req.get("properties", dict),
                owner=req.get("owner", str),
                new_name=req.get("new_name", str),
            )
        )

    def delete_catalog(req: Request):
        metastore.delete_catalog(req.path_params["name"], force=req.get("force", bool, False))
        return {}

    router.add("POST", "2.1", f"{PREFIX}/catalogs", create_catalog)
    router.add("GET", "2.1", f"{PREFIX}/catalogs", list_catalogs)
    router.add("GET", "2.1", f"{PREFIX}/catalogs/{{name}}", get_catalog)
    router.add("PATCH", "2.1", f"{PREFIX}/catalogs/{{name}}", update_catalog)
    router.add("DELETE", "2.1", f"{PREFIX}/catalogs/{{name}}", delete_catalog)

    # -- schemas
    def create_schema(req: Request):
        return _clean(
            metastore.create_schema(
                req.require("catalog_name", str),
                req.require("name", str),
                comment=req.get("comment", str),
                properties=req.get("properties", dict),
            )
        )

    def list_schemas(req: Request):
        return _page(req, metastore.list_schemas(req.require("catalog_name", str)), "schemas")

    def get_schema(req: Request):
        return _clean(metastore.get_schema(*_split(req.path_params["full_name"], 2, "schema")))

    def update_schema(req: Request):
        catalog, schema = _split(req.path_params["full_name"], 2, "schema")
        return _clean(
            metastore.update_schema(
                catalog,
                schema,
                comment=req.get("comment", str),
                properties=req.get("properties", dict),
                owner=req.get("owner", str),
                new_name=req.get("new_name", str),
            )
        )

    def delete_schema(req: Request):
        catalog, schema = _split(req.path_params["full_name"], 2, "schema")
        metastore.delete_schema(catalog, schema, force=req.get("force", bool, False))
        return {}

    router.add("POST", "2.1", f"{PREFIX}/schemas", create_schema)
    router.add("GET", "2.1", f"{PREFIX}/schemas", list_schemas)
    router.add("GET", "2.1", f"{PREFIX}/schemas/{{full_name}}", get_schema)
    router.add("PATCH", "2.1", f"{PREFIX}/schemas/{{full_name}}", update_schema)
    router.add("DELETE", "2.1", f"{PREFIX}/schemas/{{full_name}}", delete_schema)

    # -- volumes
    def create_volume(req: Request):
        return _clean(
            metastore.create_volume(
                req.require("catalog_name", str),
                req.require("schema_name", str),
                req.require("name", str),
                volume_type=req.require("volume_type", str),
                storage_location=req.get("storage_location", str),
                comment=req.get("comment", str),
            )
        )

    def list_volumes(req: Request):
        volumes = metastore.list_volumes(req.require("catalog_name", str), req.require("schema_name", str))
        return _page(req, volumes, "volumes")

    def get_volume(req: Request):
        return _clean(metastore.get_volume(*_split(req.path_params["name"], 3, "volume")))

    def update_volume(req: Request):
        catalog, schema, name = _split(req.path_params["name"], 3, "volume")
        return _clean(
            metastore.update_volume(
                catalog,
                schema,
                name,
                comment=req.get("comment", str),
                owner=req.get("owner", str),
                new_name=req.get("new_name", str),
            )
        )

    def delete_volume(req: Request):
        metastore.delete_volume(*_split(req.path_params["name"], 3, "volume"))
        return {}

    router.add("POST", "2.1", f"{PREFIX}/volumes", create_volume)
    router.add("GET", "2.1", f"{PREFIX}/volumes", list_volumes)
    router.add("GET", "2.1", f"{PREFIX}/volumes/{{name}}", get_volume)
    router.add("PATCH", "2.1", f"{PREFIX}/volumes/{{name}}", update_volume)
    router.add("DELETE", "2.1", f"{PREFIX}/volumes/{{name}}", delete_volume)
