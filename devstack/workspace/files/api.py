"""Files API 2.0: ``/api/2.0/fs/files{path}`` and ``/api/2.0/fs/directories{path}``.

Uploads are raw bytes (application/octet-stream), downloads too; metadata travels in headers
(Content-Length, Content-Type, Last-Modified), as databricks-sdk's ``w.files`` reads them.
"""

from __future__ import annotations

import re
from email.utils import formatdate, parsedate_to_datetime
from urllib.parse import unquote

from devstack.workspace.context import WorkspaceContext
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


def register(router, ctx: WorkspaceContext) -> None:
    if ctx.metastore is None:
        return
    files = FilesBackend(ctx.metastore)
    ctx.services["files"] = files

    def path_of(req: Request) -> str:
        return unquote(req.path_params["path"])

    @raw_body
    def upload(req: Request):
        files.upload(path_of(req), req.raw_body, overwrite=req.get("overwrite", bool, True))
        return {}

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
                    f"{path_of(req)} was modified after {since}; download it again.",
                )

    def download(req: Request):
        path = path_of(req)
        stat = files.stat(path)
        _unmodified_since(req, stat.mtime)
        span = _byte_range(req.headers.get("range"), stat.size)
        if span is None:
            data = files.read(path)
            return Response(data, content_type=OCTET, headers=_headers(len(data), stat.mtime))
        data = files.read(path, *span)
        headers = _headers(len(data), stat.mtime)
        headers["Content-Range"] = f"bytes {span[0]}-{span[1]}/{stat.size}"
        return Response(data, content_type=OCTET, status=206, headers=headers)

    def metadata(req: Request):
        stat = files.stat(path_of(req))
        return Response(b"", content_type=OCTET, headers=_headers(stat.size, stat.mtime))

    def delete(req: Request):
        files.delete(path_of(req))
        return {}

    def mkdirs(req: Request):
        files.mkdirs(path_of(req))
        return {}

    def list_directory(req: Request):
        return files.list(path_of(req), req.get("page_size", int), req.get("page_token", str))

    def directory_metadata(req: Request):
        files.require_directory(path_of(req))
        return Response(b"", content_type="application/json")

    def delete_directory(req: Request):
        files.delete_directory(path_of(req))
        return {}

    router.add("PUT", "2.0", "fs/files{path:path}", upload)
    router.add("GET", "2.0", "fs/files{path:path}", download)
    router.add("HEAD", "2.0", "fs/files{path:path}", metadata)
    router.add("DELETE", "2.0", "fs/files{path:path}", delete)
    router.add("PUT", "2.0", "fs/directories{path:path}", mkdirs)
    router.add("GET", "2.0", "fs/directories{path:path}", list_directory)
    router.add("HEAD", "2.0", "fs/directories{path:path}", directory_metadata)
    router.add("DELETE", "2.0", "fs/directories{path:path}", delete_directory)
