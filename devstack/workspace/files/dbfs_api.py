"""DBFS API 2.0 (``/api/2.0/dbfs/*``): put, create/add-block/close, read, list, get-status,
mkdirs, move, delete. Contents travel base64-encoded in JSON, as databricks-sdk's ``w.dbfs`` sends them.
"""

from __future__ import annotations

import base64
import binascii

from devstack.workspace.context import WorkspaceContext
from devstack.workspace.files.dbfs import Dbfs
from devstack.workspace.http import ApiError, Request


def _decode(field: str, value) -> bytes:
    if isinstance(value, bytes):  # a multipart/form-data put carries the file part raw
        return value
    try:
        return base64.b64decode(value or "", validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(
            400, "INVALID_PARAMETER_VALUE", f"Invalid value for field {field}: not base64."
        ) from None


def register(router, ctx: WorkspaceContext) -> None:
    dbfs = Dbfs(ctx.data_dir / "dbfs", ctx.data_dir / "dbfs-spool")
    ctx.services["dbfs"] = dbfs

    def put(req: Request):
        dbfs.put(
            req.require("path", str),
            _decode("contents", req.get("contents")),
            req.get("overwrite", bool, False),
        )
        return {}

    def create(req: Request):
        return {"handle": dbfs.create(req.require("path", str), req.get("overwrite", bool, False))}

    def add_block(req: Request):
        dbfs.add_block(req.require("handle", int), _decode("data", req.require("data")))
        return {}

    def close(req: Request):
        dbfs.close(req.require("handle", int))
        return {}

    def read(req: Request):
        data = dbfs.read(req.require("path", str), req.get("offset", int, 0), req.get("length", int))
        return {"bytes_read": len(data), "data": base64.b64encode(data).decode()}

    def list_(req: Request):
        return {"files": dbfs.list(req.require("path", str))}

    def get_status(req: Request):
        return dbfs.status(req.require("path", str))

    def mkdirs(req: Request):
        dbfs.mkdirs(req.require("path", str))
        return {}

    def move(req: Request):
        dbfs.move(req.require("source_path", str), req.require("destination_path", str))
        return {}

    def delete(req: Request):
        dbfs.delete(req.require("path", str), req.get("recursive", bool, False))
        return {}

    router.add("POST", "2.0", "dbfs/put", put)
    router.add("POST", "2.0", "dbfs/create", create)
    router.add("POST", "2.0", "dbfs/add-block", add_block)
    router.add("POST", "2.0", "dbfs/close", close)
    router.add("GET", "2.0", "dbfs/read", read)
    router.add("GET", "2.0", "dbfs/list", list_)
    router.add("GET", "2.0", "dbfs/get-status", get_status)
    router.add("POST", "2.0", "dbfs/mkdirs", mkdirs)
    router.add("POST", "2.0", "dbfs/move", move)
    router.add("POST", "2.0", "dbfs/delete", delete)
