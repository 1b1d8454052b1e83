"""Files API 2.0: ``/api/2.0/fs/files{path}`` and ``/api/2.0/fs/directories{path}``.

Uploads are raw bytes (application/octet-stream), downloads too; metadata travels in headers
(Content-Length, Content-Type, Last-Modified), as databricks-sdk's ``w.files`` reads them.
"""

from __future__ import annotations

import re
from email.utils import formatdate, parsedate_to_datetime
from urllib.parse import unquote

from devstack.workspace.files.backend import FilesBackend
from devstack.workspace.http import ApiError, Request, Response, raw_body

OCTET = "application/octet-stream"
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _headers(size: int, mtime: float) -> dict[str, str]:
    return {
        "Last-Modified": formatdate(mtime, usegmt=True),
        "Accept-Ranges": "bytes",
        "Content-Length": str(size),
    }


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) of a single ``Range: bytes=a-b`` request, None for the whole file."""
    if not header:
        return None
    found = RANGE.match(header.strip())
    if not found or found.group(1) == found.group(2) == "":
        raise ApiError(
            400, "INVALID_PARAMETER_VALUE", f"Unsupported Range header {header!r}: use bytes=<first>-<last>."
        )
    first, last = found.groups()
    if first == "":  # the last N bytes
        start, end = max(size - int(last), 0), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise ApiError(
            416,
            "INVALID_PARAMETER_VALUE",
            f"Range {header!r} is not satisfiable: the file has {size} bytes.",
            {"Content-Range": f"bytes */{size}"},
        )
    return start, end


def _path(req: Request) -> str:
    return unquote(req.path_params["path"])


def _unmodified_since(req: Request, mtime: float) -> None:
    since = req.headers.get("if-unmodified-since")
    if since:
        try:
            limit = parsedate_to_datetime(since).timestamp()
        except (TypeError, ValueError):
            raise ApiError(
                400, "INVALID_PARAMETER_VALUE", f"Invalid If-Unmodified-Since {since!r}."
            ) from None
        if int(mtime) > limit:
            raise ApiError(
                412,
                "FAILED_PRECONDITION",
                f"{_path(req)} was modified after {since}; download it again.",
            )


class FilesApi:
    """Files and directories of Unity Catalog volumes, as databricks-sdk's ``w.files`` calls them."""

    def __init__(self, files: FilesBackend):
        self.files = files

    @raw_body
    def upload(self, req: Request):
        self.files.upload(_path(req), req.raw_body, overwrite=req.get("overwrite", bool, True))
        return {}

    def download(self, req: Request):
        path = _path(req)
        stat = self.files.stat(path)
        _unmodified_since(req, stat.mtime)
        span = _byte_range(req.headers.get("range"), stat.size)
        if span is None:
            data = self.files.read(path)
            return Response(data, content_type=OCTET, headers=_headers(len(data), stat.mtime))
        data = self.files.read(path, *span)
        headers = _headers(len(data), stat.mtime)
        headers["Content-Range"] = f"bytes {span[0]}-{span[1]}/{stat.size}"
        return Response(data, content_type=OCTET, status=206, headers=headers)

    def metadata(self, req: Request):
        stat = self.files.stat(_path(req))
        return Response(b"", content_type=OCTET, headers=_headers(stat.size, stat.mtime))

    def delete(self, req: Request):
        self.files.delete(_path(req))
        return {}

    def mkdirs(self, req: Request):
        self.files.mkdirs(_path(req))
        return {}

    def list_directory(self, req: Request):
        return self.files.list(_path(req), req.get("page_size", int), req.get("page_token", str))

    def directory_metadata(self, req: Request):
        self.files.require_directory(_path(req))
        return Response(b"", content_type="application/json")

    def delete_directory(self, req: Request):
        self.files.delete_directory(_path(req))
        return {}
