"""DBFS 2.0 rules over ``<data_dir>/dbfs``, the same directory notebooks reach as ``dbfs:/`` and ``/dbfs``.

Streams (create / add-block / close) are written to a spool file and moved into place on close,
so a reader never sees a half-written file. Error codes are those the DBFS API reference lists
per call (docs.databricks.com/api/workspace/dbfs): RESOURCE_DOES_NOT_EXIST,
RESOURCE_ALREADY_EXISTS, MAX_BLOCK_SIZE_EXCEEDED, MAX_READ_SIZE_EXCEEDED, IO_ERROR,
INVALID_PARAMETER_VALUE.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from pathlib import Path

from devstack.workspace.files.backend import write_atomically
from devstack.workspace.http import ApiError
from devstack.workspace.runtime.fs import _under

MAX_BLOCK = 1024 * 1024  # put contents and add-block data, decoded
MAX_READ = 1024 * 1024
DEFAULT_READ = 512 * 1024


def _invalid(message: str) -> ApiError:
    return ApiError(400, "INVALID_PARAMETER_VALUE", message)


def _missing(path: str) -> ApiError:
    return ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"No file or directory exists on path {path}.")


def _exists(path: str) -> ApiError:
    return ApiError(
        400,
        "RESOURCE_ALREADY_EXISTS",
        f"A file or directory already exists at {path}; pass overwrite=true to replace a file.",
    )


class Dbfs:
    """The workspace's DBFS root and its open write streams."""

    def __init__(self, root: Path, spool: Path):
        self.root = Path(root)
        # The folders every Databricks workspace's DBFS root shows.
        for folder in ("FileStore", "tmp", "user"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self.spool = Path(spool)
        self._handles: dict[int, tuple[str, Path, bool]] = {}
        self._next_handle = 1
        self._lock = threading.Lock()

    # -- paths ------------------------------------------------------------------------------

    @staticmethod
    def normalize(path: str | None) -> str:
        """An absolute DBFS path (``dbfs:/x`` and ``/x`` are the same file)."""
        if not path:
            raise _invalid("Missing required field: path")
        if path.startswith("dbfs:"):
            path = path[len("dbfs:") :]
        if not path.startswith("/"):
            raise _invalid(
                f"Invalid path {path!r}: DBFS paths are absolute, e.g. /tmp/data.csv or dbfs:/tmp/data.csv."
            )
        if path == "/Volumes" or path.startswith("/Volumes/"):
            raise _invalid(
                f"{path} is a Unity Catalog volume path: use the Files API (/api/2.0/fs/files{path}) for it."
            )
        return "/" + "/".join(p for p in path.split("/") if p)

    def local(self, path: str) -> Path:
        return _under(self.root, self.normalize(path))

    def _file_in_the_way(self, local: Path) -> Path | None:
        for parent in reversed(local.parents):
            if parent.is_relative_to(self.root) and parent != self.root and parent.is_file():
                return parent
        return None

    def _dbfs_path(self, local: Path) -> str:
        return "/" + local.relative_to(self.root).as_posix() if local != self.root else "/"

    # -- writes -----------------------------------------------------------------------------

    def _target(self, path: str, overwrite: bool) -> Path:
        local = self.local(path)
        if local.is_dir() or (local.exists() and not overwrite):
            raise _exists(self.normalize(path))
        blocker = self._file_in_the_way(local)
        if blocker is not None:
            raise _exists(self._dbfs_path(blocker))
        return local

    def put(self, path: str, data: bytes, overwrite: bool = False) -> None:
        if len(data) > MAX_BLOCK:
            raise ApiError(
                400,
                "MAX_BLOCK_SIZE_EXCEEDED",
                f"The inline contents of dbfs/put are {len(data)} bytes, over the 1 MB limit; "
                "upload with dbfs/create, dbfs/add-block and dbfs/close instead.",
            )
        local = self._target(path, overwrite)
        local.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(local, data)

    def create(self, path: str, overwrite: bool = False) -> int:
        self._target(path, overwrite)
        self.spool.mkdir(parents=True, exist_ok=True)
        spool = self.spool / f"{uuid.uuid4().hex}.part"
        spool.touch()
        with self._lock:
            handle = self._next_handle
            self._next_handle += 1
            self._handles[handle] = (self.normalize(path), spool, overwrite)
        return handle

    def _stream(self, handle: int) -> tuple[str, Path, bool]:
        with self._lock:
            stream = self._handles.get(handle)
        if stream is None:
            raise ApiError(
                404,
                "RESOURCE_DOES_NOT_EXIST",
                f"Stream handle {handle} is not open (closed, or never created).",
            )
        return stream

    def add_block(self, handle: int, data: bytes) -> None:
        if len(data) > MAX_BLOCK:
            raise ApiError(
                400,
                "MAX_BLOCK_SIZE_EXCEEDED",
                f"The block is {len(data)} bytes, over the 1 MB limit of dbfs/add-block; send smaller blocks.",
            )
        _, spool, _ = self._stream(handle)
        with open(spool, "ab") as fh:
            fh.write(data)

    def close(self, handle: int) -> None:
        path, spool, overwrite = self._stream(handle)
        with self._lock:
            self._handles.pop(handle, None)
        try:
            local = self._target(path, overwrite)
            local.parent.mkdir(parents=True, exist_ok=True)
            os.replace(spool, local)
        finally:
            spool.unlink(missing_ok=True)

    def mkdirs(self, path: str) -> None:
        local = self.local(path)
        if local.is_file():
            raise _exists(self.normalize(path))
        blocker = self._file_in_the_way(local)
        if blocker is not None:
            raise _exists(self._dbfs_path(blocker))
        local.mkdir(parents=True, exist_ok=True)

    def move(self, source: str, destination: str) -> None:
        src, dst = self.local(source), self.local(destination)
        if not src.exists():
            raise _missing(self.normalize(source))
        if dst.exists():
            raise _exists(self.normalize(destination))
        if src == self.root or dst.is_relative_to(src):
            raise _invalid(
                f"Cannot move {self.normalize(source)} into itself ({self.normalize(destination)})."
            )
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(src), str(dst))

    def delete(self, path: str, recursive: bool = False) -> None:
        local = self.local(path)
        if not local.exists():
            return  # deleting what is not there succeeds, so retries are safe
        if local.is_dir():
            if local == self.root:
                raise _invalid("Refusing to delete the DBFS root.")
            if any(local.iterdir()) and not recursive:
                raise ApiError(
                    400,
                    "IO_ERROR",
                    f"{self.normalize(path)} is a non-empty directory; pass recursive=true to delete it.",
                )
            shutil.rmtree(local)
        else:
            local.unlink()

    # -- reads ------------------------------------------------------------------------------

    def status(self, path: str) -> dict:
        local = self.local(path)
        if not local.exists():
            raise _missing(self.normalize(path))
        return self._info(local)

    def _info(self, local: Path) -> dict:
        st = local.stat()
        is_dir = local.is_dir()
        return {
            "path": self._dbfs_path(local),
            "is_dir": is_dir,
            "file_size": 0 if is_dir else st.st_size,
            "modification_time": int(st.st_mtime * 1000),
        }

    def list(self, path: str) -> list[dict]:
        local = self.local(path)
        if not local.exists():
            raise _missing(self.normalize(path))
        if local.is_file():
            return [self._info(local)]
        return [self._info(child) for child in sorted(local.iterdir())]

    def read(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        local = self.local(path)
        normalized = self.normalize(path)
        if not local.exists():
            raise _missing(normalized)
        if local.is_dir():
            raise _invalid(f"{normalized} is a directory; dbfs/read reads files.")
        length = DEFAULT_READ if length is None else length
        if offset < 0 or length < 0:
            raise _invalid(
                f"Invalid read of {normalized}: offset ({offset}) and length ({length}) must not be negative."
            )
        if length > MAX_READ:
            raise ApiError(
                400,
                "MAX_READ_SIZE_EXCEEDED",
                f"Cannot read {length} bytes at once from {normalized}: the limit is 1 MB per dbfs/read.",
            )
        size = local.stat().st_size
        if offset > size:
            # The reference documents reads that run past the end (they stop there), not reads that
            # start past it; we refuse those, naming the file's size, rather than answer nothing.
            raise _invalid(f"Invalid offset {offset} for {normalized}: the file has only {size} bytes.")
        with open(local, "rb") as fh:
            fh.seek(offset)
            return fh.read(length)
