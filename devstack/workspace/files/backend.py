"""Files API rules over the shared metastore's storage: upload, download, list, delete.

Paths are Files-API paths (``/Volumes/<catalog>/<schema>/<volume>/...``, and ``/Models/...`` for
registered models' storage); :meth:`Metastore.local_path` maps them to local files and refuses
paths outside any volume. Notebooks reach the same files through ``/Volumes/...``.

Error codes follow the Files API's gRPC-style codes (NOT_FOUND, ALREADY_EXISTS); Databricks'
reference (docs.databricks.com/api/workspace/files) documents the statuses, not every code, so
the codes for the rarer cases (a file where a directory is expected) are our best reading.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from devstack.workspace.http import ApiError
from devstack.workspace.unity_catalog.backend import Metastore

MAX_PAGE = 1000  # entries per directory listing page, as documented for list-directory-contents


@dataclass(frozen=True)
class FileStat:
    size: int
    mtime: float


def _not_found(what: str, path: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"The {what} {path} does not exist.")


def write_atomically(local: Path, data: bytes) -> None:
    """Write ``data`` so a reader (another workspace, a notebook) never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=local.parent, prefix=f".{local.name}.", suffix=".upload")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, local)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _file_in_the_way(local: Path, root: Path) -> Path | None:
    """The first existing *file* among ``local``'s parents below ``root``, if any."""
    for parent in reversed(local.parents):
        if parent.is_relative_to(root) and parent != root and parent.is_file():
            return parent
    return None


class FilesBackend:
    def __init__(self, metastore: Metastore):
        self.metastore = metastore

    def _local(self, path: str) -> Path:
        if not path or not path.startswith("/"):
            raise ApiError(
                400, "INVALID_PARAMETER_VALUE", f"Invalid path {path!r}: the Files API takes absolute paths."
            )
        return self.metastore.local_path(path)

    # -- files --------------------------------------------------------------------------------

    def upload(self, path: str, data: bytes, *, overwrite: bool = True) -> None:
        if path.endswith("/"):
            raise ApiError(
                400, "INVALID_PARAMETER_VALUE", f"Invalid path {path!r}: a file path cannot end with '/'."
            )
        local = self._local(path)
        if local.is_dir():
            raise ApiError(
                409, "ALREADY_EXISTS", f"A directory already exists at {path}; upload to a file path."
            )
        if local.exists() and not overwrite:
            raise ApiError(
                409, "ALREADY_EXISTS", f"The file {path} already exists; pass overwrite=true to replace it."
            )
        blocker = _file_in_the_way(local, self._volume_root(path))
        if blocker is not None:
            raise ApiError(
                409,
                "ALREADY_EXISTS",
                f"Cannot create {path}: its parent {self._api_path(path, local, blocker)} is a file, not a directory.",
            )
        local.parent.mkdir(parents=True, exist_ok=True)  # uploads create missing parents, as on Databricks
        write_atomically(local, data)

    def stat(self, path: str) -> FileStat:
        local = self._local(path)
        if not local.is_file():
            if local.is_dir():
                # 404, not 400: clients (databricks-sdk's dbutils.fs) probe "file or directory?" so.
                raise ApiError(
                    404,
                    "NOT_FOUND",
                    f"The file {path} does not exist: it is a directory (see /api/2.0/fs/directories).",
                )
            raise _not_found("file", path)
        st = local.stat()
        return FileStat(st.st_size, st.st_mtime)

    def read(self, path: str, start: int = 0, end: int | None = None) -> bytes:
        """Bytes ``start`` to ``end`` inclusive (to the end of the file when ``end`` is None)."""
        self.stat(path)
        with open(self._local(path), "rb") as fh:
            fh.seek(start)
            return fh.read() if end is None else fh.read(end - start + 1)

    def delete(self, path: str) -> None:
        self.stat(path)
        self._local(path).unlink()

    # -- directories --------------------------------------------------------------------------

    def mkdirs(self, path: str) -> None:
        local = self._local(path)
        if local.is_file():
            raise ApiError(
                409, "ALREADY_EXISTS", f"A file already exists at {path}; cannot create a directory there."
            )
        blocker = _file_in_the_way(local, self._volume_root(path))
        if blocker is not None:
            raise ApiError(
                409,
                "ALREADY_EXISTS",
                f"Cannot create {path}: its parent {self._api_path(path, local, blocker)} is a file.",
            )
        local.mkdir(parents=True, exist_ok=True)

    def require_directory(self, path: str) -> Path:
        local = self._local(path)
        if not local.is_dir():
            if local.is_file():
                raise ApiError(
                    404,
                    "NOT_FOUND",
                    f"The directory {path} does not exist: it is a file (see /api/2.0/fs/files).",
                )
            raise _not_found("directory", path)
        return local

    def list(self, path: str, page_size: int | None = None, page_token: str | None = None) -> dict:
        local = self.require_directory(path)
        size = min(page_size or MAX_PAGE, MAX_PAGE)
        if size < 1:
            raise ApiError(
                400, "INVALID_PARAMETER_VALUE", f"Invalid page_size {page_size}: must be positive."
            )
        names = sorted(p.name for p in local.iterdir() if not _in_flight(p.name))
        # The token is the last name returned: stable when entries are added or removed meanwhile.
        if page_token:
            names = [n for n in names if n > page_token]
        page, rest = names[:size], names[size:]
        base = path.rstrip("/")
        entries = []
        for name in page:
            child = local / name
            try:
                st = child.stat()
            except FileNotFoundError:
                continue
            entry = {"path": f"{base}/{name}", "name": name, "last_modified": int(st.st_mtime * 1000)}
            if child.is_dir():
                entry["is_directory"] = True
            else:
                entry["is_directory"] = False
                entry["file_size"] = st.st_size
            entries.append(entry)
        body: dict = {"contents": entries}
        if rest:
            body["next_page_token"] = page[-1]
        return body

    def delete_directory(self, path: str) -> None:
        local = self.require_directory(path)
        if local == self._volume_root(path):
            raise ApiError(
                400,
                "INVALID_PARAMETER_VALUE",
                f"{path} is the root of a volume; delete the volume with DELETE /api/2.1/unity-catalog/volumes.",
            )
        if any(local.iterdir()):
            raise ApiError(
                400,
                "FAILED_PRECONDITION",
                f"The directory {path} is not empty; delete its contents first.",
            )
        local.rmdir()

    # -- helpers ------------------------------------------------------------------------------

    def _volume_root(self, path: str) -> Path:
        parts = [p for p in path.split("/") if p]
        depth = 4 if parts and parts[0] == "Volumes" else 5
        return self.metastore.local_path("/" + "/".join(parts[:depth]))

    @staticmethod
    def _api_path(path: str, local: Path, other: Path) -> str:
        """``other`` (a parent of ``local``) as a Files-API path like ``path``."""
        up = len(local.relative_to(other).parts)
        return "/" + "/".join([p for p in path.split("/") if p][:-up])


def _in_flight(name: str) -> bool:
    """A temporary file of an upload still being written (see :func:`write_atomically`)."""
    return name.startswith(".") and name.endswith(".upload")
