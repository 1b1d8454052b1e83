"""What data has landed, asked from Airflow before any cluster starts.

Landed data lives in date partitions (``<root>/date=YYYY-MM-DD/...``) under a Unity Catalog
volume (``/Volumes/<catalog>/<schema>/<volume>/...``). The workspace's Files API lists a volume
with the Airflow connection's own sign-in and no compute, so a DAG can fix the date it works on,
see the files it will read, and fail on a missing date in seconds instead of after a cluster
start. On Azure the volume is an external volume over the ``abfss://`` container the data lands
in; an ``abfss://`` path itself cannot be listed without compute (the DBFS and Files APIs do not
serve it), hence volumes. ``dbfs:/`` paths are listed through the DBFS API.

Source for the API shapes: Databricks REST reference, Files API ("List directory contents":
``GET /api/2.0/fs/directories{directory_path}``, ``contents``/``next_page_token``, 404
``NOT_FOUND``) and DBFS API (``GET /api/2.0/dbfs/list``, ``files``, 404 ``RESOURCE_DOES_NOT_EXIST``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk.exceptions import AirflowFailException

if TYPE_CHECKING:
    from airflow.providers.databricks.hooks.databricks import DatabricksHook

PARTITION = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")


class NoLandedDataError(AirflowFailException):
    """The date asked for has no data (no partition, or an empty one): retrying will not help."""


def _not_found(exc: Exception) -> bool:
    return getattr(exc, "http_status_code", None) == 404


def list_directory(hook: DatabricksHook, path: str) -> list[dict[str, Any]] | None:
    """Entries of ``path`` as ``{"name", "path", "is_directory", "file_size"}``; None when missing.

    ``/Volumes/...`` through the Files API, ``dbfs:/...`` through the DBFS API; any other scheme
    fails naming the path and what to configure instead.
    """
    path = path.rstrip("/")
    if path.startswith("/Volumes/"):
        entries, token = [], None
        while True:
            try:
                page = hook._do_api_call(
                    ("GET", f"2.0/fs/directories{quote(path, safe='/=')}"),
                    {"page_token": token} if token else {},
                )
            except Exception as exc:
                if _not_found(exc):
                    return None
                raise
            for item in page.get("contents") or []:
                entries.append(
                    {
                        "name": item.get("name") or item["path"].rstrip("/").rsplit("/", 1)[-1],
                        "path": item["path"],
                        "is_directory": bool(item.get("is_directory")),
                        "file_size": int(item.get("file_size") or 0),
                    }
                )
            token = page.get("next_page_token")
            if not token:
                return entries
    if path.startswith("dbfs:/"):
        try:
            page = hook._do_api_call(("GET", "2.0/dbfs/list"), {"path": path})
        except Exception as exc:
            if _not_found(exc):
                return None
            raise
        return [
            {
                "name": f["path"].rstrip("/").rsplit("/", 1)[-1],
                "path": f"dbfs:{f['path']}" if f["path"].startswith("/") else f["path"],
                "is_directory": bool(f.get("is_dir")),
                "file_size": int(f.get("file_size") or 0),
            }
            for f in page.get("files") or []
        ]
    raise AirflowFailException(
        f"{path} cannot be listed from Airflow without starting compute: land the data in a Unity "
        "Catalog volume (/Volumes/<catalog>/<schema>/<volume>/..., on Azure an external volume over "
        "the abfss:// container) and point include/config's path at it."
    )


def partitions(hook: DatabricksHook, root: str) -> list[str]:
    """The ``date=YYYY-MM-DD`` partition dates under ``root``, oldest first."""
    entries = list_directory(hook, root)
    if entries is None:
        raise NoLandedDataError(f"The landing folder {root} does not exist: nothing has landed there yet.")
    return sorted(m.group(1) for e in entries if e["is_directory"] and (m := PARTITION.match(e["name"])))


def newest_partition(hook: DatabricksHook, root: str) -> str:
    """The newest partition date under ``root``; fails when there is none."""
    found = partitions(hook, root)
    if not found:
        raise NoLandedDataError(f"{root} has no date=YYYY-MM-DD partitions: nothing has landed there yet.")
    return found[-1]


def landed_files(hook: DatabricksHook, root: str, date: str) -> dict[str, Any]:
    """The data files of one date: ``{"date", "path", "files", "bytes"}``; fails naming the date and
    path when the partition is missing or holds no data file (names starting with ``_`` or ``.``,
    such as ``_SUCCESS``, are not data)."""
    path = f"{root.rstrip('/')}/date={date}"
    entries = list_directory(hook, path)
    files = sorted(
        (e for e in entries or [] if not e["is_directory"] and not e["name"].startswith(("_", "."))),
        key=lambda e: e["name"],
    )
    if not files:
        try:
            known = ", ".join(partitions(hook, root)[-5:]) or "none"
        except NoLandedDataError:
            known = f"none ({root} does not exist)"
        state = "is empty" if entries is not None else "does not exist"
        raise NoLandedDataError(
            f"No data landed for {date}: {path} {state}. Newest dates there: {known}. "
            "Choose one of those dates, or land the data first."
        )
    return {
        "date": date,
        "path": path,
        "files": [e["path"] for e in files],
        "bytes": sum(e["file_size"] for e in files),
    }
