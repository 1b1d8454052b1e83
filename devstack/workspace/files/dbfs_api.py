"""DBFS API 2.0 (``/api/2.0/dbfs/*``): put, create/add-block/close, read, list, get-status,
mkdirs, move, delete. Contents travel base64-encoded in JSON, as databricks-sdk's ``w.dbfs`` sends them.
"""

from __future__ import annotations

import base64
import binascii

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


class DbfsApi:
    """DBFS calls of databricks-sdk's ``w.dbfs``, on a :class:`Dbfs`."""

    def __init__(self, dbfs: Dbfs):
        self.dbfs = dbfs

    def put(self, req: Request):
        self.dbfs.put(
            req.require("path", str),
            _decode("contents", req.get("contents")),
            req.get("overwrite", bool, False),
        )
        return {}

    def create(self, req: Request):
        return {"handle": self.dbfs.create(req.require("path", str), req.get("overwrite", bool, False))}

    def add_block(self, req: Request):
        self.dbfs.add_block(req.require("handle", int), _decode("data", req.require("data")))
        return {}

    def close(self, req: Request):
        self.dbfs.close(req.require("handle", int))
        return {}

    def read(self, req: Request):
        data = self.dbfs.read(req.require("path", str), req.get("offset", int, 0), req.get("length", int))
        return {"bytes_read": len(data), "data": base64.b64encode(data).decode()}

    def list(self, req: Request):
        return {"files": self.dbfs.list(req.require("path", str))}

    def get_status(self, req: Request):
        return self.dbfs.status(req.require("path", str))

    def mkdirs(self, req: Request):
        self.dbfs.mkdirs(req.require("path", str))
        return {}

    def move(self, req: Request):
        self.dbfs.move(req.require("source_path", str), req.require("destination_path", str))
        return {}

    def delete(self, req: Request):
        self.dbfs.delete(req.require("path", str), req.get("recursive", bool, False))
        return {}
