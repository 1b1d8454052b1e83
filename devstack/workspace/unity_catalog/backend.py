"""The Unity Catalog metastore: catalogs, schemas, volumes and managed storage, shared by workspaces.

On Azure, dev, staging and prod attach to ONE metastore. Here every workspace process opens the
same directory (``--metastore-dir``): the catalog objects live in SQLite (WAL mode, so several
processes read and write it safely) and managed storage in plain directories beside it:

    <root>/metastore.db
    <root>/volumes/<catalog>/<schema>/<volume>/...      managed volumes
    <root>/models/<catalog>/<schema>/<model>/<version>/ registered models' managed storage

No HTTP here: :mod:`.api` renders these records as Databricks answers them.
"""

from __future__ import annotations

import posixpath
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devstack.workspace.http import ApiError
from devstack.workspace.iam.backend import ADMIN_USER
from devstack.workspace.store import Store, dumps, loads

SCHEMA = """
CREATE TABLE IF NOT EXISTS uc_catalogs (
    name        TEXT PRIMARY KEY,
    id          TEXT NOT NULL,
    comment     TEXT,
    properties  TEXT NOT NULL DEFAULT '{}',
    owner       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS uc_schemas (
    catalog     TEXT NOT NULL REFERENCES uc_catalogs(name) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    id          TEXT NOT NULL,
    comment     TEXT,
    properties  TEXT NOT NULL DEFAULT '{}',
    owner       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (catalog, name)
);
CREATE TABLE IF NOT EXISTS uc_volumes (
    catalog          TEXT NOT NULL,
    schema           TEXT NOT NULL,
    name             TEXT NOT NULL,
    id               TEXT NOT NULL,
    volume_type      TEXT NOT NULL,
    storage_location TEXT NOT NULL,
    comment          TEXT,
    owner            TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (catalog, schema, name),
    FOREIGN KEY (catalog, schema) REFERENCES uc_schemas(catalog, name) ON DELETE CASCADE
);
"""

# Unity Catalog identifiers: letters, digits and underscores (hyphens are allowed when quoted,
# which the REST API accepts). Names are case-insensitive and stored in lower case.
NAME = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
# Schemas every new catalog gets, as on Databricks; a catalog holding only these is empty.
BUILTIN_SCHEMAS = ("default", "information_schema")
# The owner of what is created without a caller (in-process, at startup): the workspaces' admin.
DEFAULT_OWNER = ADMIN_USER


def _now_ms() -> int:
    return int(time.time() * 1000)


def not_found(code: str, message: str) -> ApiError:
    return ApiError(404, code, message)


def invalid(message: str) -> ApiError:
    return ApiError(400, "INVALID_PARAMETER_VALUE", message)


def _name(kind: str, value: str | None) -> str:
    if not value or not NAME.match(value):
        raise invalid(
            f"Invalid {kind} name {value!r}: use letters, digits and underscores (at most 255 characters)."
        )
    return value.lower()


def _under(root: Path, rest: str) -> Path:
    """``root/rest`` with ``..`` unable to climb above root."""
    norm = posixpath.normpath("/" + rest.lstrip("/"))
    return root / norm.lstrip("/") if norm != "/" else root


class Metastore:
    """One Unity Catalog metastore over a directory that several workspace processes share.

    :param root: the shared metastore directory.
    :param resolve_location: maps an external ``storage_location`` (``abfss://...``) to a local
        directory; external volumes need it. Raises ValueError for locations it cannot map.
    """

    def __init__(self, root: Path, resolve_location: Callable[[str], Path] | None = None):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.store = Store(self.root / "metastore.db")
        self.store.ensure_schema(SCHEMA)
        self.resolve_location = resolve_location

    def close(self) -> None:
        self.store.close()

    # -- catalogs ---------------------------------------------------------------------------

    def create_catalog(
        self,
        name: str,
        comment: str | None = None,
        properties: dict[str, str] | None = None,
        owner: str = DEFAULT_OWNER,
    ) -> dict[str, Any]:
        name = _name("catalog", name)
        now = _now_ms()
        with self.store.tx() as conn:
            if conn.execute("SELECT 1 FROM uc_catalogs WHERE name = ?", (name,)).fetchone():
                raise ApiError(409, "CATALOG_ALREADY_EXISTS", f"Catalog '{name}' already exists.")
            conn.execute(
                "INSERT INTO uc_catalogs VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, str(uuid.uuid4()), comment, dumps(properties or {}), owner, now, now),
            )
            for schema in BUILTIN_SCHEMAS:
                comment_ = (
                    "Information schema (auto-created)"
                    if schema == "information_schema"
                    else ("Default schema (auto-created)")
                )
                conn.execute(
                    "INSERT INTO uc_schemas VALUES (?, ?, ?, ?, '{}', ?, ?, ?)",
                    (name, schema, str(uuid.uuid4()), comment_, owner, now, now),
                )
        return self.get_catalog(name)

    def get_catalog(self, name: str) -> dict[str, Any]:
        row = self.store.one("SELECT * FROM uc_catalogs WHERE name = ?", ((name or "").lower(),))
        if row is None:
            raise not_found(
                "CATALOG_DOES_NOT_EXIST",
                f"Catalog '{name}' does not exist. Create it first (POST /api/2.1/unity-catalog/catalogs).",
            )
        return self._catalog(row)

    def list_catalogs(self) -> list[dict[str, Any]]:
        return [self._catalog(r) for r in self.store.all("SELECT * FROM uc_catalogs ORDER BY name")]

    def update_catalog(
        self,
        name: str,
        *,
        comment: str | None = None,
        properties: dict[str, str] | None = None,
        owner: str | None = None,
        new_name: str | None = None,
    ) -> dict[str, Any]:
        current = self.get_catalog(name)
        target = _name("catalog", new_name) if new_name else current["name"]
        with self.store.tx() as conn:
            if target != current["name"]:
                if conn.execute("SELECT 1 FROM uc_catalogs WHERE name = ?", (target,)).fetchone():
                    raise ApiError(409, "CATALOG_ALREADY_EXISTS", f"Catalog '{target}' already exists.")
                if conn.execute("SELECT 1 FROM uc_volumes WHERE catalog = ?", (current["name"],)).fetchone():
                    raise invalid(f"Catalog '{name}' holds volumes; a rename would move their storage.")
            conn.execute(
                "UPDATE uc_catalogs SET name = ?, comment = ?, properties = ?, owner = ?, updated_at = ? "
                "WHERE name = ?",
                (
                    target,
                    current.get("comment") if comment is None else comment,
                    dumps(current.get("properties", {}) if properties is None else properties),
                    owner or current["owner"],
                    _now_ms(),
                    current["name"],
                ),
            )
            if target != current["name"]:
                conn.execute("UPDATE uc_schemas SET catalog = ? WHERE catalog = ?", (target, current["name"]))
        return self.get_catalog(target)

    def delete_catalog(self, name: str, force: bool = False) -> None:
        catalog = self.get_catalog(name)["name"]
        with self.store.tx() as conn:
            user_schemas = [
                r["name"]
                for r in conn.execute("SELECT name FROM uc_schemas WHERE catalog = ?", (catalog,))
                if r["name"] not in BUILTIN_SCHEMAS
            ]
            has_volumes = conn.execute("SELECT 1 FROM uc_volumes WHERE catalog = ?", (catalog,)).fetchone()
            if (user_schemas or has_volumes) and not force:
                raise ApiError(
                    400,
                    "CATALOG_NOT_EMPTY",
                    f"Catalog '{catalog}' is not empty (schemas: {', '.join(user_schemas) or 'default'}); "
                    "delete them first or pass force=true.",
                )
            conn.execute("DELETE FROM uc_volumes WHERE catalog = ?", (catalog,))
            conn.execute("DELETE FROM uc_schemas WHERE catalog = ?", (catalog,))
            conn.execute("DELETE FROM uc_catalogs WHERE name = ?", (catalog,))
        _rmtree(self.root / "volumes" / catalog)

    # -- schemas ----------------------------------------------------------------------------

    def create_schema(
        self,
        catalog: str,
        name: str,
        comment: str | None = None,
        properties: dict[str, str] | None = None,
        owner: str = DEFAULT_OWNER,
    ) -> dict[str, Any]:
        catalog = self.get_catalog(catalog)["name"]
        name = _name("schema", name)
        now = _now_ms()
        with self.store.tx() as conn:
            if conn.execute(
                "SELECT 1 FROM uc_schemas WHERE catalog = ? AND name = ?", (catalog, name)
            ).fetchone():
                raise ApiError(409, "SCHEMA_ALREADY_EXISTS", f"Schema '{catalog}.{name}' already exists.")
            conn.execute(
                "INSERT INTO uc_schemas VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (catalog, name, str(uuid.uuid4()), comment, dumps(properties or {}), owner, now, now),
            )
        return self.get_schema(catalog, name)

    def require_schema(self, catalog: str, schema: str) -> None:
        """Raise 404 CATALOG_DOES_NOT_EXIST / SCHEMA_DOES_NOT_EXIST naming the missing one."""
        self.get_schema(catalog, schema)

    def get_schema(self, catalog: str, schema: str) -> dict[str, Any]:
        catalog = self.get_catalog(catalog)["name"]
        row = self.store.one(
            "SELECT * FROM uc_schemas WHERE catalog = ? AND name = ?", (catalog, (schema or "").lower())
        )
        if row is None:
            raise not_found(
                "SCHEMA_DOES_NOT_EXIST",
                f"Schema '{catalog}.{schema}' does not exist. Create it first "
                "(POST /api/2.1/unity-catalog/schemas).",
            )
        return self._schema(row)

    def list_schemas(self, catalog: str) -> list[dict[str, Any]]:
        catalog = self.get_catalog(catalog)["name"]
        rows = self.store.all("SELECT * FROM uc_schemas WHERE catalog = ? ORDER BY name", (catalog,))
        return [self._schema(r) for r in rows]

    def update_schema(
        self,
        catalog: str,
        schema: str,
        *,
        comment: str | None = None,
        properties: dict[str, str] | None = None,
        owner: str | None = None,
        new_name: str | None = None,
    ) -> dict[str, Any]:
        current = self.get_schema(catalog, schema)
        catalog, schema = current["catalog_name"], current["name"]
        target = _name("schema", new_name) if new_name else schema
        with self.store.tx() as conn:
            if target != schema:
                if conn.execute(
                    "SELECT 1 FROM uc_schemas WHERE catalog = ? AND name = ?", (catalog, target)
                ).fetchone():
                    raise ApiError(
                        409, "SCHEMA_ALREADY_EXISTS", f"Schema '{catalog}.{target}' already exists."
                    )
                if conn.execute(
                    "SELECT 1 FROM uc_volumes WHERE catalog = ? AND schema = ?", (catalog, schema)
                ).fetchone():
                    raise invalid(
                        f"Schema '{catalog}.{schema}' holds volumes; a rename would move their storage."
                    )
            conn.execute(
                "UPDATE uc_schemas SET name = ?, comment = ?, properties = ?, owner = ?, updated_at = ? "
                "WHERE catalog = ? AND name = ?",
                (
                    target,
                    current.get("comment") if comment is None else comment,
                    dumps(current.get("properties", {}) if properties is None else properties),
                    owner or current["owner"],
                    _now_ms(),
                    catalog,
                    schema,
                ),
            )
        return self.get_schema(catalog, target)

    def delete_schema(self, catalog: str, schema: str, force: bool = False) -> None:
        current = self.get_schema(catalog, schema)
        catalog, schema = current["catalog_name"], current["name"]
        with self.store.tx() as conn:
            volumes = [
                r["name"]
                for r in conn.execute(
                    "SELECT name FROM uc_volumes WHERE catalog = ? AND schema = ?", (catalog, schema)
                )
            ]
            if volumes and not force:
                raise ApiError(
                    400,
                    "SCHEMA_NOT_EMPTY",
                    f"Schema '{catalog}.{schema}' is not empty (volumes: {', '.join(volumes)}); "
                    "delete them first or pass force=true.",
                )
            conn.execute("DELETE FROM uc_volumes WHERE catalog = ? AND schema = ?", (catalog, schema))
            conn.execute("DELETE FROM uc_schemas WHERE catalog = ? AND name = ?", (catalog, schema))
        _rmtree(self.root / "volumes" / catalog / schema)

    # -- volumes ----------------------------------------------------------------------------

    def create_volume(
        self,
        catalog: str,
        schema: str,
        name: str,
        volume_type: str = "MANAGED",
        storage_location: str | None = None,
        comment: str | None = None,
        owner: str = DEFAULT_OWNER,
    ) -> dict[str, Any]:
        current = self.get_schema(catalog, schema)
        catalog, schema = current["catalog_name"], current["name"]
        name = _name("volume", name)
        volume_type = (volume_type or "MANAGED").upper()
        if volume_type == "MANAGED":
            if storage_location:
                raise invalid("A MANAGED volume takes no storage_location; its storage is the metastore's.")
            location = self._managed_volume_dir(catalog, schema, name).as_uri()
        elif volume_type == "EXTERNAL":
            if not storage_location:
                raise invalid(
                    "An EXTERNAL volume needs a storage_location (e.g. abfss://container@account...)."
                )
            self._resolve(storage_location)  # fails early, naming the location
            location = storage_location
        else:
            raise invalid(f"Invalid volume_type {volume_type!r}: use MANAGED or EXTERNAL.")
        now = _now_ms()
        with self.store.tx() as conn:
            if conn.execute(
                "SELECT 1 FROM uc_volumes WHERE catalog = ? AND schema = ? AND name = ?",
                (catalog, schema, name),
            ).fetchone():
                raise ApiError(
                    409, "RESOURCE_ALREADY_EXISTS", f"Volume '{catalog}.{schema}.{name}' already exists."
                )
            conn.execute(
                "INSERT INTO uc_volumes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (catalog, schema, name, str(uuid.uuid4()), volume_type, location, comment, owner, now, now),
            )
        self.volume_dir(catalog, schema, name).mkdir(parents=True, exist_ok=True)
        return self.get_volume(catalog, schema, name)

    def get_volume(self, catalog: str, schema: str, name: str) -> dict[str, Any]:
        self.require_schema(catalog, schema)
        row = self.store.one(
            "SELECT * FROM uc_volumes WHERE catalog = ? AND schema = ? AND name = ?",
            (catalog.lower(), schema.lower(), (name or "").lower()),
        )
        if row is None:
            # Unsure of the exact error_code Databricks sends for a missing volume; the SDK maps
            # any 404 to NotFound, and RESOURCE_DOES_NOT_EXIST to its ResourceDoesNotExist.
            raise not_found(
                "RESOURCE_DOES_NOT_EXIST",
                f"Volume '{catalog}.{schema}.{name}' does not exist. Create it first "
                "(POST /api/2.1/unity-catalog/volumes).",
            )
        return self._volume(row)

    def list_volumes(self, catalog: str, schema: str) -> list[dict[str, Any]]:
        current = self.get_schema(catalog, schema)
        rows = self.store.all(
            "SELECT * FROM uc_volumes WHERE catalog = ? AND schema = ? ORDER BY name",
            (current["catalog_name"], current["name"]),
        )
        return [self._volume(r) for r in rows]

    def update_volume(
        self,
        catalog: str,
        schema: str,
        name: str,
        *,
        comment: str | None = None,
        owner: str | None = None,
        new_name: str | None = None,
    ) -> dict[str, Any]:
        current = self.get_volume(catalog, schema, name)
        catalog, schema, name = current["catalog_name"], current["schema_name"], current["name"]
        target = _name("volume", new_name) if new_name else name
        with self.store.tx() as conn:
            if (
                target != name
                and conn.execute(
                    "SELECT 1 FROM uc_volumes WHERE catalog = ? AND schema = ? AND name = ?",
                    (catalog, schema, target),
                ).fetchone()
            ):
                raise ApiError(
                    409, "RESOURCE_ALREADY_EXISTS", f"Volume '{catalog}.{schema}.{target}' already exists."
                )
            location = current["storage_location"]
            if target != name and current["volume_type"] == "MANAGED":
                old_dir = self._managed_volume_dir(catalog, schema, name)
                new_dir = self._managed_volume_dir(catalog, schema, target)
                if old_dir.exists():
                    new_dir.parent.mkdir(parents=True, exist_ok=True)
                    old_dir.rename(new_dir)
                location = new_dir.as_uri()
            conn.execute(
                "UPDATE uc_volumes SET name = ?, comment = ?, owner = ?, storage_location = ?, updated_at = ? "
                "WHERE catalog = ? AND schema = ? AND name = ?",
                (
                    target,
                    current.get("comment") if comment is None else comment,
                    owner or current["owner"],
                    location,
                    _now_ms(),
                    catalog,
                    schema,
                    name,
                ),
            )
        return self.get_volume(catalog, schema, target)

    def delete_volume(self, catalog: str, schema: str, name: str) -> None:
        current = self.get_volume(catalog, schema, name)
        catalog, schema, name = current["catalog_name"], current["schema_name"], current["name"]
        with self.store.tx() as conn:
            conn.execute(
                "DELETE FROM uc_volumes WHERE catalog = ? AND schema = ? AND name = ?",
                (catalog, schema, name),
            )
        if current["volume_type"] == "MANAGED":  # external data outlives its volume, as on Databricks
            _rmtree(self._managed_volume_dir(catalog, schema, name))

    def volume_dir(self, catalog: str, schema: str, name: str) -> Path:
        """The local directory holding a volume's files (the volume must exist)."""
        volume = self.get_volume(catalog, schema, name)
        if volume["volume_type"] == "MANAGED":
            return self._managed_volume_dir(volume["catalog_name"], volume["schema_name"], volume["name"])
        return self._resolve(volume["storage_location"])

    def _managed_volume_dir(self, catalog: str, schema: str, name: str) -> Path:
        return self.root / "volumes" / catalog / schema / name

    def _resolve(self, location: str) -> Path:
        if location.startswith("file:"):
            return Path("/" + location[len("file:") :].lstrip("/"))
        if self.resolve_location is None:
            raise invalid(
                f"Storage location {location!r} cannot be reached: no storage accounts are configured."
            )
        try:
            return self.resolve_location(location)
        except ValueError as exc:
            raise invalid(str(exc)) from None

    # -- registered models' managed storage -------------------------------------------------

    def model_storage_dir(self, catalog: str, schema: str, model: str, version: int | str) -> Path:
        """Where a registered model version's files live (created; the schema must exist)."""
        self.require_schema(catalog, schema)
        path = self.root / "models" / catalog.lower() / schema.lower() / model.lower() / str(version)
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- Files API paths --------------------------------------------------------------------

    def local_path(self, path: str) -> Path:
        """The local file behind a Files-API path.

        ``/Volumes/<catalog>/<schema>/<volume>/...`` (the volume must exist) or
        ``/Models/<catalog>/<schema>/<model>/<version>/...`` (a registered model version's storage).
        Anything else is refused with 400 naming the path and the forms accepted.
        """
        parts = [p for p in (path or "").split("/") if p]
        if len(parts) >= 4 and parts[0] == "Volumes":
            catalog, schema, volume = parts[1:4]
            return _under(self.volume_dir(catalog, schema, volume), "/".join(parts[4:]))
        if len(parts) >= 5 and parts[0] == "Models":
            catalog, schema, model, version = parts[1:5]
            self.require_schema(catalog, schema)
            root = self.root / "models" / catalog.lower() / schema.lower() / model.lower() / version
            return _under(root, "/".join(parts[5:]))
        raise invalid(
            f"Invalid path {path!r}: the Files API serves paths inside a Unity Catalog volume, "
            "/Volumes/<catalog>/<schema>/<volume>/<path>."
        )

    # -- rendering ---------------------------------------------------------------------------

    @staticmethod
    def _catalog(row) -> dict[str, Any]:
        return {
            "name": row["name"],
            "full_name": row["name"],
            "id": row["id"],
            "comment": row["comment"],
            "properties": loads(row["properties"], {}),
            "owner": row["owner"],
            "catalog_type": "MANAGED_CATALOG",
            "isolation_mode": "OPEN",
            "created_at": row["created_at"],
            "created_by": row["owner"],
            "updated_at": row["updated_at"],
            "updated_by": row["owner"],
        }

    @staticmethod
    def _schema(row) -> dict[str, Any]:
        return {
            "name": row["name"],
            "catalog_name": row["catalog"],
            "full_name": f"{row['catalog']}.{row['name']}",
            "schema_id": row["id"],
            "comment": row["comment"],
            "properties": loads(row["properties"], {}),
            "owner": row["owner"],
            "catalog_type": "MANAGED_CATALOG",
            "created_at": row["created_at"],
            "created_by": row["owner"],
            "updated_at": row["updated_at"],
            "updated_by": row["owner"],
        }

    @staticmethod
    def _volume(row) -> dict[str, Any]:
        return {
            "name": row["name"],
            "catalog_name": row["catalog"],
            "schema_name": row["schema"],
            "full_name": f"{row['catalog']}.{row['schema']}.{row['name']}",
            "volume_id": row["id"],
            "volume_type": row["volume_type"],
            "storage_location": row["storage_location"],
            "comment": row["comment"],
            "owner": row["owner"],
            "created_at": row["created_at"],
            "created_by": row["owner"],
            "updated_at": row["updated_at"],
            "updated_by": row["owner"],
        }


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
