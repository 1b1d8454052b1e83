"""The workspace tree: notebooks, files and folders (the state behind the Workspace API 2.0).

Folders, notebooks and files live in the SQLite store (table ``workspace_objects``), so a
restart keeps them. A Git folder (Repo) is a ``REPO`` row there; everything below it is served
from its checkout on disk (``<data dir>/repos/<repo id>``), where notebooks are source files:
``notebooks/train.py`` starting with ``# Databricks notebook source`` is the notebook
``notebooks/train``.
"""

from __future__ import annotations

import posixpath
import shutil
import time
from dataclasses import dataclass
from hashlib import sha1
from pathlib import Path
from typing import Any

from devstack.workspace.http import ApiError, already_exists, invalid, not_found
from devstack.workspace.runtime import notebook as nbf
from devstack.workspace.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS workspace_objects (
    object_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    path        TEXT NOT NULL UNIQUE,
    parent      TEXT,
    object_type TEXT NOT NULL,
    language    TEXT,
    content     BLOB,
    created_at  INTEGER NOT NULL,
    modified_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS workspace_objects_parent ON workspace_objects(parent);
"""

# Folders every workspace has; they cannot be deleted.
ROOT_FOLDERS = ("/", "/Users", "/Shared", "/Repos")
# Object ids look like Databricks' (large, unrelated to job or run ids).
FIRST_OBJECT_ID = 1_000_000_000_000
IMPORT_FORMATS = ("AUTO", "SOURCE", "JUPYTER", "RAW", "DBC", "HTML", "R_MARKDOWN")
EXPORT_FORMATS = IMPORT_FORMATS


def now_ms() -> int:
    return int(time.time() * 1000)


def normalize_path(path: Any, field: str = "path") -> str:
    """An absolute workspace path without trailing slash; ``/Workspace/...`` is accepted too."""
    if not isinstance(path, str):
        raise invalid(f"Invalid value for field {field}: expected str, got {path!r}")
    if not path.startswith("/"):
        raise invalid(
            f"Path ({path}) doesn't start with '/': give an absolute workspace path such as /Users/me/nb."
        )
    parts = [p for p in path.split("/") if p]
    if parts and parts[0] == "Workspace":
        parts = parts[1:]
    if any(p in (".", "..") for p in parts):
        raise invalid(f"Path ({path}) must not contain '.' or '..' segments.")
    return "/" + "/".join(parts)


def missing(path: str) -> ApiError:
    return not_found(f"Path ({path}) doesn't exist.")


@dataclass
class Entry:
    """One workspace object, from the store or from a Git folder's checkout."""

    path: str
    object_type: str
    object_id: int
    language: str | None = None
    created_at: int | None = None
    modified_at: int | None = None
    size: int | None = None
    file: Path | None = None  # inside a Git folder: the file or folder on disk
    repo_id: int | None = None  # the Git folder this entry is in (or is)

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "path": self.path,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "resource_id": str(self.object_id),
        }
        if self.language:
            info["language"] = self.language
        if self.object_type in ("NOTEBOOK", "FILE"):
            info.update(created_at=self.created_at, modified_at=self.modified_at, size=self.size)
        return info


class WorkspaceTree:
    """Read and write the workspace tree.

    :param store: the workspace's store (table ``workspace_objects``).
    :param data_dir: the workspace's data directory; Git folders are checked out under ``repos/``.
    """

    def __init__(self, store: Store, data_dir: Path):
        self.store = store
        self.data_dir = data_dir
        store.ensure_schema(SCHEMA)
        stamp = now_ms()
        with store.tx() as conn:
            conn.execute(
                "INSERT INTO sqlite_sequence (name, seq) SELECT 'workspace_objects', ? "
                "WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'workspace_objects')",
                (FIRST_OBJECT_ID,),
            )
            for folder in ROOT_FOLDERS:
                conn.execute(
                    "INSERT OR IGNORE INTO workspace_objects (path, parent, object_type, created_at, modified_at) "
                    "VALUES (?, ?, 'DIRECTORY', ?, ?)",
                    (folder, None if folder == "/" else "/", stamp, stamp),
                )

    # ------------------------------------------------------------------ lookups

    def repo_dir(self, repo_id: int) -> Path:
        return self.data_dir / "repos" / str(repo_id)

    def _repo_at_or_above(self, path: str):
        return self.store.one(
            "SELECT object_id, path FROM workspace_objects WHERE object_type = 'REPO' "
            "AND (path = ? OR substr(?, 1, length(path) + 1) = path || '/')",
            (path, path),
        )

    def repo_checkout(self, path: str) -> Path | None:
        """The checkout directory of the Git folder holding ``path`` (None outside Git folders).

        A notebook runner can use it as working directory and import root, as Databricks does
        for notebooks in Git folders.
        """
        repo = self._repo_at_or_above(path)
        return None if repo is None else self.repo_dir(repo["object_id"])

    def lookup(self, path: str) -> Entry | None:
        repo = self._repo_at_or_above(path)
        if repo is not None and repo["path"] != path:
            return self._repo_entry(repo["object_id"], repo["path"], path[len(repo["path"]) + 1 :])
        row = self.store.one("SELECT * FROM workspace_objects WHERE path = ?", (path,))
        return None if row is None else self._row_entry(row)

    def get(self, path: str) -> Entry:
        entry = self.lookup(path)
        if entry is None:
            raise missing(path)
        return entry

    @staticmethod
    def _row_entry(row) -> Entry:
        content = row["content"]
        return Entry(
            path=row["path"],
            object_type=row["object_type"],
            object_id=row["object_id"],
            language=row["language"],
            created_at=row["created_at"],
            modified_at=row["modified_at"],
            size=None if content is None else len(content),
            repo_id=row["object_id"] if row["object_type"] == "REPO" else None,
        )

    def _file_entry(
        self, repo_id: int, path: str, file: Path, object_type: str, language: str | None
    ) -> Entry:
        stat = file.stat()
        rel = file.relative_to(self.repo_dir(repo_id)).as_posix()
        # Files in a checkout have no row: derive a stable id from repo and file.
        object_id = int(sha1(f"{repo_id}:{rel}".encode()).hexdigest()[:12], 16)
        mtime = int(stat.st_mtime * 1000)
        return Entry(
            path=path,
            object_type=object_type,
            object_id=object_id,
            language=language,
            created_at=mtime,
            modified_at=mtime,
            size=None if object_type == "DIRECTORY" else stat.st_size,
            file=file,
            repo_id=repo_id,
        )

    def _repo_entry(self, repo_id: int, repo_path: str, rel: str) -> Entry | None:
        root = self.repo_dir(repo_id)
        if ".git" in rel.split("/"):
            return None
        path = f"{repo_path}/{rel}"
        target = root / rel
        if target.is_dir():
            return self._file_entry(repo_id, path, target, "DIRECTORY", None)
        if target.is_file():
            language = nbf.notebook_language(target)
            return self._file_entry(repo_id, path, target, "NOTEBOOK" if language else "FILE", language)
        for suffix in (".py", ".ipynb", ".sql", ".scala", ".r", ".R"):
            candidate = root / (rel + suffix)
            if candidate.is_file():
                language = nbf.notebook_language(candidate)
                if language:
                    return self._file_entry(repo_id, path, candidate, "NOTEBOOK", language)
        return None

    def children(self, entry: Entry) -> list[Entry]:
        if entry.object_type == "REPO" or entry.file is not None:
            folder = entry.file if entry.file is not None else self.repo_dir(entry.object_id)
            found = []
            for child in sorted(folder.iterdir()) if folder.is_dir() else []:
                if child.name == ".git":
                    continue
                if child.is_dir():
                    found.append(
                        self._file_entry(
                            entry.repo_id, f"{entry.path}/{child.name}", child, "DIRECTORY", None
                        )
                    )
                    continue
                language = nbf.notebook_language(child)
                name = child.stem if language else child.name
                found.append(
                    self._file_entry(
                        entry.repo_id,
                        f"{entry.path}/{name}",
                        child,
                        "NOTEBOOK" if language else "FILE",
                        language,
                    )
                )
            return found
        rows = self.store.all("SELECT * FROM workspace_objects WHERE parent = ? ORDER BY path", (entry.path,))
        return [self._row_entry(row) for row in rows]

    def read(self, entry: Entry) -> bytes:
        """The content: source text with header for notebooks, raw bytes for files."""
        if entry.file is not None:
            if entry.object_type == "NOTEBOOK":
                return nbf.read_notebook_source(entry.file)[0].encode()
            return entry.file.read_bytes()
        row = self.store.one("SELECT content FROM workspace_objects WHERE object_id = ?", (entry.object_id,))
        return bytes(row["content"] or b"") if row else b""

    # ------------------------------------------------------------------ writes

    def _parent_folder(self, path: str) -> Entry:
        parent = posixpath.dirname(path)
        entry = self.lookup(parent)
        if entry is None or entry.object_type not in ("DIRECTORY", "REPO"):
            raise not_found(
                f"The parent folder ({parent}) does not exist. Create it first with workspace mkdirs."
            )
        return entry

    def put(self, path: str, object_type: str, data: bytes, language: str | None, overwrite: bool) -> None:
        """Create or (with overwrite) replace the notebook or file at ``path``."""
        if path in ROOT_FOLDERS:
            raise already_exists(f"Path ({path}) already exists.")
        # One transaction for check and write: two concurrent imports cannot both create.
        with self.store.tx():
            self._put(path, object_type, data, language, overwrite)

    def _put(self, path: str, object_type: str, data: bytes, language: str | None, overwrite: bool) -> None:
        parent = self._parent_folder(path)
        existing = self.lookup(path)
        if existing is not None:
            if existing.object_type in ("DIRECTORY", "REPO"):
                raise already_exists(f"Path ({path}) already exists and is a {existing.object_type.lower()}.")
            if not overwrite:
                raise already_exists(f"Path ({path}) already exists. Pass overwrite=true to replace it.")
        if parent.repo_id is not None:
            self._put_in_repo(parent, path, object_type, data, language, existing)
            return
        stamp = now_ms()
        with self.store.tx() as conn:
            if existing is not None:
                conn.execute(
                    "UPDATE workspace_objects SET object_type = ?, language = ?, content = ?, modified_at = ? "
                    "WHERE object_id = ?",
                    (object_type, language, data, stamp, existing.object_id),
                )
            else:
                conn.execute(
                    "INSERT INTO workspace_objects (path, parent, object_type, language, content, created_at, modified_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (path, posixpath.dirname(path), object_type, language, data, stamp, stamp),
                )

    def _put_in_repo(
        self,
        parent: Entry,
        path: str,
        object_type: str,
        data: bytes,
        language: str | None,
        existing: Entry | None,
    ) -> None:
        folder = parent.file if parent.file is not None else self.repo_dir(parent.object_id)
        name = posixpath.basename(path)
        if existing is not None and existing.file is not None:
            existing.file.unlink()
        if object_type == "NOTEBOOK":
            name = f"{name}.{nbf.EXTENSION[language]}"
        (folder / name).write_bytes(data)

    def mkdirs(self, path: str) -> None:
        with self.store.tx():
            self._mkdirs(path)

    def _mkdirs(self, path: str) -> None:
        parts = [p for p in path.split("/") if p]
        stamp = now_ms()
        for depth in range(1, len(parts) + 1):
            prefix = "/" + "/".join(parts[:depth])
            entry = self.lookup(prefix)
            if entry is None:
                parent = self.lookup(posixpath.dirname(prefix))
                if parent is not None and parent.repo_id is not None:
                    folder = parent.file if parent.file is not None else self.repo_dir(parent.object_id)
                    (folder / parts[depth - 1]).mkdir(exist_ok=True)
                    continue
                with self.store.tx() as conn:
                    conn.execute(
                        "INSERT OR IGNORE INTO workspace_objects (path, parent, object_type, created_at, modified_at) "
                        "VALUES (?, ?, 'DIRECTORY', ?, ?)",
                        (prefix, posixpath.dirname(prefix), stamp, stamp),
                    )
            elif entry.object_type not in ("DIRECTORY", "REPO"):
                raise already_exists(
                    f"Cannot create directory {path}: {prefix} is a {entry.object_type.lower()}, not a folder."
                )

    def delete(self, path: str, recursive: bool) -> None:
        entry = self.get(path)
        if path in ROOT_FOLDERS:
            raise ApiError(400, "DIRECTORY_PROTECTED", f"Folder ({path}) is protected and cannot be deleted.")
        if entry.object_type in ("DIRECTORY", "REPO") and not recursive and self.children(entry):
            raise ApiError(
                400,
                "DIRECTORY_NOT_EMPTY",
                f"Folder ({path}) is not empty. Pass recursive=true to delete it and its contents.",
            )
        if entry.file is not None:
            if entry.file.is_dir():
                shutil.rmtree(entry.file)
            else:
                entry.file.unlink()
            return
        under = "substr(path, 1, length(?) + 1) = ? || '/'"
        with self.store.tx() as conn:
            repos = conn.execute(
                f"SELECT object_id FROM workspace_objects WHERE object_type = 'REPO' AND (path = ? OR {under})",
                (path, path, path),
            ).fetchall()
            # Rows of the repos table go with their node (ON DELETE CASCADE).
            conn.execute(f"DELETE FROM workspace_objects WHERE path = ? OR {under}", (path, path, path))
        for repo in repos:
            shutil.rmtree(self.repo_dir(repo["object_id"]), ignore_errors=True)

    def add_repo_node(self, conn, path: str) -> int:
        """Insert the REPO node of a new Git folder (inside the caller's transaction); return its id.

        A missing ``/Repos/<folder>`` is created, as Databricks does for a user's own folder.
        """
        parent = posixpath.dirname(path)
        if posixpath.dirname(parent) == "/Repos" and self.lookup(parent) is None:
            self.mkdirs(parent)
        if self._parent_folder(path).repo_id is not None:
            raise invalid(
                f"Invalid value for field path: {path} is inside another Git folder; pick a path outside it."
            )
        if self.lookup(path) is not None:
            raise already_exists(f"Path ({path}) already exists. Pick another path or delete it first.")
        stamp = now_ms()
        cur = conn.execute(
            "INSERT INTO workspace_objects (path, parent, object_type, created_at, modified_at) "
            "VALUES (?, ?, 'REPO', ?, ?)",
            (path, parent, stamp, stamp),
        )
        return cur.lastrowid

    # ------------------------------------------------------------------ import and export

    def import_object(self, path: str, fmt: str, language: str | None, data: bytes, overwrite: bool) -> None:
        """Import ``data`` at ``path`` in format SOURCE, JUPYTER, RAW or AUTO (told by the extension)."""
        if fmt == "AUTO":
            detected = nbf.source_language(path, data)
            if path.lower().endswith(".ipynb"):
                fmt, path = "JUPYTER", path[: -len(".ipynb")]
            elif detected:
                fmt, language, path = "SOURCE", detected, posixpath.splitext(path)[0]
            else:
                fmt = "RAW"
        if fmt == "SOURCE":
            if language is None:
                raise invalid(
                    f"Missing required field: language. Importing {path} as SOURCE needs language "
                    "PYTHON, SQL, SCALA or R (or use format AUTO with a file extension)."
                )
            source = nbf.with_header(_text(data, path), language)
            self.put(path, "NOTEBOOK", source.encode(), language, overwrite)
        elif fmt == "JUPYTER":
            try:
                source, nb_language = nbf.ipynb_to_source(data)
            except ValueError as exc:
                raise invalid(f"Invalid value for field content: {path} is {exc}.") from None
            self.put(path, "NOTEBOOK", source.encode(), nb_language, overwrite)
        elif fmt == "RAW":
            self.put(path, "FILE", data, None, overwrite)
        else:
            raise invalid(
                f"Invalid value for field format: {fmt} is not supported here; use SOURCE, JUPYTER, AUTO or RAW."
            )

    def export_object(self, path: str, fmt: str) -> tuple[bytes, str]:
        """(content, file type) of the notebook or file at ``path``, in format ``fmt``."""
        entry = self.get(path)
        if entry.object_type == "NOTEBOOK":
            source = self.read(entry)
            if fmt in ("SOURCE", "AUTO", "RAW"):
                return source, nbf.EXTENSION[entry.language]
            if fmt == "JUPYTER":
                return nbf.source_to_ipynb(source.decode("utf-8"), entry.language), "ipynb"
            raise invalid(
                f"Invalid value for field format: {fmt} export is not supported here; use SOURCE or JUPYTER."
            )
        if entry.object_type == "FILE":
            if fmt not in ("SOURCE", "AUTO", "RAW"):
                raise invalid(
                    f"Invalid value for field format: {path} is a file; export it as SOURCE, AUTO or RAW."
                )
            return self.read(entry), posixpath.splitext(path)[1].lstrip(".")
        raise invalid(f"Exporting the folder {path} is not supported here; export its notebooks one by one.")

    def list_objects(self, path: str, notebooks_modified_after: int | None = None) -> list[Entry]:
        """The objects one level below folder ``path`` (or the object itself when it is no folder)."""
        entry = self.get(path)
        objects = self.children(entry) if entry.object_type in ("DIRECTORY", "REPO") else [entry]
        if notebooks_modified_after is not None:
            objects = [
                o
                for o in objects
                if o.object_type != "NOTEBOOK" or (o.modified_at or 0) > notebooks_modified_after
            ]
        return objects


def _text(data: bytes, path: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid(f"Invalid value for field content: the notebook {path} is not UTF-8 text.") from None
