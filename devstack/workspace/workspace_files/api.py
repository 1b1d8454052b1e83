"""Workspace API 2.0 over HTTP: ``/api/2.0/workspace/{import,export,get-status,list,mkdirs,delete}``."""

from __future__ import annotations

import base64
import binascii

from devstack.workspace.http import Request, Response, invalid
from devstack.workspace.runtime import notebook as nbf
from devstack.workspace.workspace_files.backend import (
    EXPORT_FORMATS,
    IMPORT_FORMATS,
    WorkspaceTree,
    normalize_path,
)


class WorkspaceFilesApi:
    def __init__(self, tree: WorkspaceTree):
        self.tree = tree

    def import_(self, req: Request):
        path = normalize_path(req.require("path", str))
        fmt = _upper_choice(req, "format", IMPORT_FORMATS, "SOURCE")
        language = _upper_choice(req, "language", nbf.LANGUAGES, None)
        overwrite = req.get("overwrite", bool, False)
        self.tree.import_object(path, fmt, language, _content(req), overwrite)
        return {}

    def export(self, req: Request):
        path = normalize_path(req.require("path", str))
        fmt = _upper_choice(req, "format", EXPORT_FORMATS, "SOURCE")
        direct = req.get("direct_download", bool, False)
        data, file_type = self.tree.export_object(path, fmt)
        if direct:
            return Response(body=data, content_type="application/octet-stream")
        return {"content": base64.b64encode(data).decode("ascii"), "file_type": file_type}

    def get_status(self, req: Request):
        return self.tree.get(normalize_path(req.require("path", str))).info()

    def list(self, req: Request):
        path = normalize_path(req.require("path", str))
        objects = self.tree.list_objects(path, req.get("notebooks_modified_after", int))
        return {"objects": [o.info() for o in objects]} if objects else {}

    def mkdirs(self, req: Request):
        self.tree.mkdirs(normalize_path(req.require("path", str)))
        return {}

    def delete(self, req: Request):
        self.tree.delete(normalize_path(req.require("path", str)), req.get("recursive", bool, False))
        return {}


def _upper_choice(req: Request, field: str, choices: tuple[str, ...], default: str | None) -> str | None:
    value = req.get(field, str)
    if value is None:
        return default
    value = value.upper()
    if value not in choices:
        raise invalid(f"Invalid value for field {field}: {value!r}; expected one of {', '.join(choices)}.")
    return value


def _content(req: Request) -> bytes:
    value = req.get("content")
    if value is None:
        raise invalid("Missing required field: content (the base64-encoded notebook or file).")
    if isinstance(value, bytes):  # a multipart upload carries the raw bytes
        return value
    if not isinstance(value, str):
        raise invalid(
            f"Invalid value for field content: expected a base64 string, got {type(value).__name__}"
        )
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise invalid("Invalid value for field content: it is not valid base64.") from None
