"""The devstack's storage as Azure lays it out: storage accounts, sample data, Unity Catalog.

include/config names its data by Azure paths (``abfss://<container>@<account>.dfs.core.windows.net/...``
or ``/Volumes/<catalog>/<schema>/<volume>/...``). The devstack gives every workspace one local
directory per storage account named there (``--storage-account NAME=<lake>/NAME``) and one shared
Unity Catalog metastore, so those paths work unchanged; this module derives the accounts, seeds
the sample data where the configured paths point, and creates the catalogs, schemas and volumes
the configuration names.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from devstack.workspace.runtime.fs import ABFSS, StorageMap

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = ROOT / "include" / "data"
# Which configured path each sample tree of include/data feeds: the tree's contents are copied,
# as they are, to where that path points.
SAMPLE_TREES = {
    "landing": ("dev", "landing"),
    "holdout": ("staging", "holdout"),
    "scoring": ("prod", "scoring_input"),
}
VOLUME_PATH = re.compile(r"^(?:dbfs:)?/Volumes/(?P<catalog>[^/]+)/(?P<schema>[^/]+)/(?P<volume>[^/]+)")
THREE_LEVEL = re.compile(r"^(?P<catalog>[A-Za-z0-9_-]+)\.(?P<schema>[A-Za-z0-9_-]+)\.[A-Za-z0-9_-]+$")


def _paths(config: dict) -> Iterator[str]:
    for env in (config.get("environments") or {}).values():
        for value in ((env or {}).get("paths") or {}).values():
            if isinstance(value, str):
                yield value


def external_volumes(config: dict) -> dict[tuple[str, str, str], str]:
    """(catalog, schema, volume) -> storage location, of the external volumes the config declares
    (``unity_catalog.volumes``: ``catalog.schema.volume: abfss://container@account.../path``)."""
    declared = ((config.get("unity_catalog") or {}).get("volumes")) or {}
    volumes = {}
    for name, location in declared.items():
        parts = str(name).split(".")
        if len(parts) != 3 or not all(parts) or not ABFSS.match(str(location or "")):
            raise ValueError(
                f"unity_catalog.volumes: {name}: {location!r} must map catalog.schema.volume to an "
                "abfss://<container>@<account>.dfs.core.windows.net/<path> location"
            )
        volumes[(parts[0], parts[1], parts[2])] = str(location)
    return volumes


def base_config() -> dict:
    """include/config without any overlay: the paths Azure runs with."""
    from include.config import load_config

    return load_config(overlay="")


def storage_accounts(*configs: dict) -> list[str]:
    """The Azure storage accounts the configurations' abfss:// paths and external volumes name."""
    locations = [p for c in configs for p in (*_paths(c), *external_volumes(c).values())]
    return sorted({m["account"].lower() for p in locations if (m := ABFSS.match(p))})


def account_dirs(lake: Path, config: dict) -> dict[str, Path]:
    """Account -> its directory in the lake (``<lake>/<account>``), for the accounts ``config``
    and environments.yaml itself name (an overlay may point paths elsewhere; Azure's stay served)."""
    return {account: Path(lake) / account for account in storage_accounts(config, base_config())}


def workspace_args(lake: Path, metastore_dir: Path, config: dict) -> list[str]:
    """The workspace CLI flags that make the configuration's storage paths resolve locally."""
    args = ["--metastore-dir", str(metastore_dir)]
    for account, directory in account_dirs(lake, config).items():
        directory.mkdir(parents=True, exist_ok=True)
        args += ["--storage-account", f"{account}={directory}"]
    return args


def unity_catalog_objects(config: dict) -> tuple[set[str], set[tuple[str, str]], set[tuple[str, str, str]]]:
    """Catalogs, schemas and volumes the configuration names (model names, /Volumes paths)."""
    catalogs: set[str] = set()
    schemas: set[tuple[str, str]] = set()
    volumes: set[tuple[str, str, str]] = set()
    model = config.get("model") or {}
    for key in ("dev_model_name", "prod_model_name"):
        found = THREE_LEVEL.match(str(model.get(key) or ""))
        if found:
            catalogs.add(found["catalog"])
            schemas.add((found["catalog"], found["schema"]))
    named = [
        (found["catalog"], found["schema"], found["volume"])
        for path in _paths(config)
        if (found := VOLUME_PATH.match(path))
    ]
    for catalog, schema, volume in [*named, *external_volumes(config)]:
        catalogs.add(catalog)
        schemas.add((catalog, schema))
        volumes.add((catalog, schema, volume))
    return catalogs, schemas, volumes


def ensure_unity_catalog(url: str, token: str, config: dict) -> list[str]:
    """Create (through the UC API of one workspace; all share the metastore) what is missing."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.errors import ResourceConflict
    from databricks.sdk.service.catalog import VolumeType

    w = WorkspaceClient(host=url, token=token)
    catalogs, schemas, volumes = unity_catalog_objects(config)
    created = []
    for name in sorted(catalogs):
        try:
            w.catalogs.create(name=name, comment="created by devstack up from include/config")
            created.append(name)
        except ResourceConflict:
            pass
    for catalog, schema in sorted(schemas):
        try:
            w.schemas.create(name=schema, catalog_name=catalog)
            created.append(f"{catalog}.{schema}")
        except ResourceConflict:
            pass
    external = external_volumes(config)
    for catalog, schema, volume in sorted(volumes):
        location = external.get((catalog, schema, volume))
        try:
            if location:  # over a container of a storage account, as the config declares it
                w.volumes.create(
                    catalog_name=catalog,
                    schema_name=schema,
                    name=volume,
                    volume_type=VolumeType.EXTERNAL,
                    storage_location=location,
                )
            else:
                w.volumes.create(
                    catalog_name=catalog, schema_name=schema, name=volume, volume_type=VolumeType.MANAGED
                )
            created.append(f"{catalog}.{schema}.{volume}")
        except ResourceConflict:
            pass
    return created


def seed_lake(lake: Path, config: dict, metastore_dir: Path | None = None) -> dict[str, Path]:
    """Copy include/data's sample trees to where the configured paths point; return path -> target.

    Both ``config`` (with its overlay) and environments.yaml's own paths get the data. A tree's
    contents go, as they are, into the directory its path names. A one-file tree fed to a path
    naming a file (``.../holdout.csv``) becomes that file. A tree whose single top folder repeats
    the target's last name (``landing/diabetes/...`` for ``.../diabetes``) is entered first.
    """
    storage = StorageMap(Path(lake), metastore_dir, account_dirs(lake, config))
    placed = {}
    jobs = [
        (tree, _config_path(c, env, key))
        for c in (config, base_config())
        for tree, (env, key) in SAMPLE_TREES.items()
    ]
    for tree, path in jobs:
        source = SAMPLE_DATA / tree
        if not source.is_dir() or path is None or path in placed:
            continue
        if path.startswith("/Volumes/") and metastore_dir is None:
            continue  # volumes live in the metastore; nothing to seed without one
        target = storage.to_local(path, bare="local")
        files = [p for p in source.rglob("*") if p.is_file()]
        if len(files) == 1 and files[0].parent == source and Path(path).suffix:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(files[0], target)
        else:
            children = [p for p in source.iterdir() if not p.name.startswith(".")]
            if len(children) == 1 and children[0].is_dir() and children[0].name == target.name:
                source = children[0]
            shutil.copytree(source, target, dirs_exist_ok=True)
        placed[path] = target
    return placed


def _config_path(config: dict, env: str, key: str) -> Any:
    return (((config.get("environments") or {}).get(env) or {}).get("paths") or {}).get(key)


def local_path(lake: Path, metastore_dir: Path, config: dict, path: str) -> Path:
    """The local file behind a configured storage path (a volume or abfss:// path) of a devstack
    whose lake and metastore are these: for tests and tools that inspect what a run wrote."""
    return StorageMap(Path(lake), Path(metastore_dir), account_dirs(lake, config)).to_local(
        path, bare="local"
    )
