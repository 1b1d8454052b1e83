"""Databricks paths mapped onto local directories, and ``dbutils.fs`` on top.

``dbfs:/x`` and ``/dbfs/x`` -> ``<data_dir>/dbfs/x``; ``/Volumes/c/s/v/x`` -> the volume's storage
in the Unity Catalog metastore shared by all workspaces (``<metastore>/volumes/c/s/v/x``; without
a metastore, ``<data_dir>/volumes/...``); ``abfss://<container>@<account>.dfs.core.windows.net/x``
-> ``<account's dir>/<container>/x`` for the storage accounts the workspace was given;
``file:/x`` -> ``/x``. A bare ``/x`` is a DBFS path, as in ``dbutils.fs`` on Databricks.
"""

from __future__ import annotations

import json
import posixpath
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class StorageMap:
    """Where a workspace's storage paths live on this machine.

    :param data_dir: the workspace data dir (DBFS root below it).
    :param metastore_dir: the shared Unity Catalog metastore; /Volumes paths resolve there and
        must name an existing volume. None keeps volumes under the data dir, unchecked.
    :param accounts: Azure storage account name -> local directory, for abfss:// paths.
    """

    data_dir: Path
    metastore_dir: Path | None = None
    accounts: dict[str, Path] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "data_dir": str(self.data_dir),
                "metastore_dir": str(self.metastore_dir) if self.metastore_dir else None,
                "accounts": {k: str(v) for k, v in self.accounts.items()},
            }
        )

    @classmethod
    def from_json(cls, text: str) -> StorageMap:
        raw = json.loads(text)
        return cls(
            Path(raw["data_dir"]),
            Path(raw["metastore_dir"]) if raw.get("metastore_dir") else None,
            {k: Path(v) for k, v in (raw.get("accounts") or {}).items()},
        )

    def volume_path(self, rest: str) -> Path:
        """The local path of ``/Volumes/<rest>``; the volume must exist when a metastore is set."""
        if self.metastore_dir is None:
            return _under(self.data_dir / "volumes", rest)
        parts = [p for p in rest.split("/") if p]
        root = self.metastore_dir / "volumes"
        if len(parts) < 3:
            return _under(root, rest)
        catalog, schema, volume = (p.lower() for p in parts[:3])
        managed = root / catalog / schema / volume
        if managed.is_dir():
            return _under(managed, "/".join(parts[3:]))
        return _under(self._external_volume(catalog, schema, volume), "/".join(parts[3:]))

    def _external_volume(self, catalog: str, schema: str, volume: str) -> Path:
        from devstack.workspace.http import ApiError
        from devstack.workspace.unity_catalog.backend import Metastore

        metastore = Metastore(self.metastore_dir, lambda url: abfss_to_local(url, self.accounts))
        try:
            return metastore.volume_dir(catalog, schema, volume)
        except ApiError as exc:
            raise FileNotFoundError(f"/Volumes/{catalog}/{schema}/{volume}: {exc.message}") from None
        finally:
            metastore.close()

    def to_local(self, path: str, *, bare: str = "dbfs") -> Path:
        """The local file behind a Databricks path.

        :param path: ``dbfs:/...``, ``/dbfs/...``, ``/Volumes/...``, ``abfss://...``, ``file:/...``
            or a bare absolute path.
        :param bare: what a bare absolute path means: ``"dbfs"`` (dbutils.fs) or ``"local"``.
        """
        if path.startswith("file:"):
            rest = path[len("file:") :]
            # file:/x, file:///x
            return Path("/" + rest.lstrip("/"))
        if path.startswith("dbfs:"):
            return _under(self.data_dir / "dbfs", path[len("dbfs:") :])
        if path == "/dbfs" or path.startswith("/dbfs/"):
            return _under(self.data_dir / "dbfs", path[len("/dbfs") :])
        if path == "/Volumes" or path.startswith("/Volumes/"):
            return self.volume_path(path[len("/Volumes") :])
        if path.startswith(("abfss://", "abfs://")):
            return abfss_to_local(path, self.accounts)
        if path.startswith("/"):
            if bare == "local":
                return Path(path)
            return _under(self.data_dir / "dbfs", path)
        raise ValueError(
            f"Unsupported path {path!r}: use an absolute path such as dbfs:/tmp/x, /Volumes/cat/schema/vol/x, "
            "abfss://container@account.dfs.core.windows.net/x or file:/tmp/x"
        )


def to_local(path: str, storage: StorageMap | Path, *, bare: str = "dbfs") -> Path:
    """The local file behind a Databricks path (see :meth:`StorageMap.to_local`).

    :param storage: the workspace's :class:`StorageMap`, or just its data dir.
    """
    if not isinstance(storage, StorageMap):
        storage = StorageMap(Path(storage))
    return storage.to_local(path, bare=bare)


# abfss://<container>@<account>.dfs.core.windows.net/<path> (ADLS Gen2; abfs:// is the non-TLS form).
ABFSS = re.compile(
    r"^abfss?://(?P<container>[^@/]+)@(?P<account>[A-Za-z0-9]+)\.dfs\.core\.windows\.net(?P<path>/.*)?$"
)


def parse_storage_accounts(specs: list[str] | None) -> dict[str, Path]:
    """``["NAME=DIR", ...]`` (the ``--storage-account`` flag) as ``{name: resolved DIR}``."""
    accounts: dict[str, Path] = {}
    for spec in specs or []:
        name, sep, directory = spec.partition("=")
        if not sep or not name or not directory:
            raise ValueError(
                f"--storage-account {spec!r}: expected NAME=DIR, e.g. mlopsdevlake=/srv/lake/dev"
            )
        accounts[name.lower()] = Path(directory).expanduser().resolve()
    return accounts


def abfss_to_local(url: str, accounts: dict[str, Path]) -> Path:
    """The local file behind ``abfss://<container>@<account>.dfs.core.windows.net/<path>``.

    It lies at ``<account's DIR>/<container>/<path>``. An account the workspace was not told
    about is refused naming the account and the flag that declares it.
    """
    found = ABFSS.match(url)
    if not found:
        raise ValueError(
            f"Unsupported abfss URL {url!r}: expected abfss://<container>@<account>.dfs.core.windows.net/<path>"
        )
    account = found["account"].lower()
    if account not in accounts:
        known = ", ".join(sorted(accounts)) or "none"
        raise ValueError(
            f"Storage account {account!r} of {url} is not known to this workspace (known: {known}); "
            f"start the workspace with --storage-account {account}=DIR to map it to a local directory."
        )
    return _under(accounts[account] / found["container"], found["path"] or "/")


def _under(root: Path, rest: str) -> Path:
    # normpath of an absolute path drops leading "..": nothing climbs out of the root.
    norm = posixpath.normpath("/" + rest.lstrip("/"))
    return root / norm.lstrip("/") if norm != "/" else root


@dataclass(frozen=True)
class FileInfo:
    """One entry of ``dbutils.fs.ls``: directories have a path and name ending in '/'."""

    path: str
    name: str
    size: int
    modificationTime: int  # noqa: N815 - the Databricks attribute name

    def isDir(self) -> bool:  # noqa: N802
        return self.name.endswith("/")

    def isFile(self) -> bool:  # noqa: N802
        return not self.isDir()


def _missing(path: str) -> FileNotFoundError:
    return FileNotFoundError(f"java.io.FileNotFoundException: {path} does not exist")


def _child(path: str, name: str) -> str:
    return path.rstrip("/") + "/" + name


class FsUtils:
    """``dbutils.fs``: file operations on DBFS, Volumes and local paths."""

    def __init__(self, storage: StorageMap | Path):
        self._storage = storage if isinstance(storage, StorageMap) else StorageMap(Path(storage))

    def _local(self, path: str) -> Path:
        return self._storage.to_local(path)

    def ls(self, path: str) -> list[FileInfo]:
        local = self._local(path)
        if not local.exists():
            raise _missing(path)
        if local.is_file():
            st = local.stat()
            return [FileInfo(path, local.name, st.st_size, int(st.st_mtime * 1000))]
        infos = []
        for entry in sorted(local.iterdir()):
            st = entry.stat()
            if entry.is_dir():
                infos.append(
                    FileInfo(_child(path, entry.name) + "/", entry.name + "/", 0, int(st.st_mtime * 1000))
                )
            else:
                infos.append(
                    FileInfo(_child(path, entry.name), entry.name, st.st_size, int(st.st_mtime * 1000))
                )
        return infos

    def mkdirs(self, path: str) -> bool:
        self._local(path).mkdir(parents=True, exist_ok=True)
        return True

    def put(self, path: str, contents: str, overwrite: bool = False) -> bool:
        local = self._local(path)
        if local.exists() and not overwrite:
            raise FileExistsError(f"File {path} already exists; pass overwrite=True to replace it")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(contents, encoding="utf-8")
        return True

    def head(self, path: str, maxBytes: int = 65536) -> str:  # noqa: N803
        local = self._local(path)
        if not local.is_file():
            if local.is_dir():
                raise IsADirectoryError(f"{path} is a directory; dbutils.fs.head reads files only")
            raise _missing(path)
        with open(local, "rb") as fh:
            return fh.read(maxBytes).decode("utf-8", errors="replace")

    def rm(self, path: str, recurse: bool = False) -> bool:
        local = self._local(path)
        if not local.exists() and not local.is_symlink():
            return False
        if local.is_dir() and not local.is_symlink():
            if not recurse and any(local.iterdir()):
                raise OSError(f"{path} is a non-empty directory; pass recurse=True to delete it")
            shutil.rmtree(local)
        else:
            local.unlink()
        return True

    def cp(self, from_: str, to: str, recurse: bool = False) -> bool:
        src, dst = self._local(from_), self._local(to)
        if not src.exists():
            raise _missing(from_)
        if src.is_dir():
            if not recurse:
                raise IsADirectoryError(f"{from_} is a directory; pass recurse=True to copy it")
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            if dst.is_dir():
                dst = dst / src.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        return True

    def mv(self, from_: str, to: str, recurse: bool = False) -> bool:
        src, dst = self._local(from_), self._local(to)
        if not src.exists():
            raise _missing(from_)
        if src.is_dir() and not recurse:
            raise IsADirectoryError(f"{from_} is a directory; pass recurse=True to move it")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(src), str(dst))
        return True

    def mounts(self) -> list[tuple[str, str, str]]:
        """The workspace's mounts as (mountPoint, source, encryptionType): the DBFS root and the
        Unity Catalog volumes, as on a Unity Catalog workspace without legacy mounts."""
        return [("/", "DatabricksRoot", ""), ("/Volumes", "UnityCatalogVolumes", "")]

    def help(self) -> None:
        print("dbutils.fs: ls, cp, mv, rm, mkdirs, put, head (dbfs:/, /Volumes/, abfss:// and file:/ paths)")
