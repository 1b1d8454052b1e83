"""`devstack up` lays storage out as Azure does: one metastore, a lake dir per storage account.

The layout rules in-process (accounts, seeding, what Unity Catalog objects the config names), then
one real `up` on free ports: the three workspaces share catalogs and volumes, and an external
volume on an abfss:// location shows the sample data `up` seeded there.
"""

from __future__ import annotations

import io

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.catalog import VolumeType

from devstack import lake
from devstack import stack as devstack
from devstack.processes import free_port

AZURE_LIKE = {
    "model": {"dev_model_name": "dev.ml.diabetes", "prod_model_name": "prod.ml.diabetes"},
    "environments": {
        "dev": {
            "paths": {
                "landing": "abfss://landing@mlopsdevlake.dfs.core.windows.net/diabetes",
                "curated": "/Volumes/dev/ml/curated/training",
            }
        },
        "staging": {
            "paths": {"holdout": "abfss://curated@mlopsstaginglake.dfs.core.windows.net/h/holdout.csv"}
        },
        "prod": {
            "paths": {"scoring_input": "abfss://landing@mlopsprodlake.dfs.core.windows.net/diabetes/scoring"}
        },
    },
}


def test_accounts_and_unity_catalog_objects_come_from_the_config():
    assert lake.storage_accounts(AZURE_LIKE) == ["mlopsdevlake", "mlopsprodlake", "mlopsstaginglake"]
    with_volumes = {
        **AZURE_LIKE,
        "unity_catalog": {
            "volumes": {"prod.ml.serving": "abfss://serving@mlopsservelake.dfs.core.windows.net/"}
        },
    }
    assert "mlopsservelake" in lake.storage_accounts(with_volumes)
    assert ("prod", "ml", "serving") in lake.unity_catalog_objects(with_volumes)[2]
    catalogs, schemas, volumes = lake.unity_catalog_objects(AZURE_LIKE)
    assert catalogs == {"dev", "prod"} and schemas == {("dev", "ml"), ("prod", "ml")}
    assert volumes == {("dev", "ml", "curated")}


def test_seed_lake_puts_each_sample_tree_where_its_path_points(tmp_path, monkeypatch):
    monkeypatch.setattr(lake, "base_config", lambda: AZURE_LIKE)
    placed = lake.seed_lake(tmp_path, AZURE_LIKE)
    holdout = tmp_path / "mlopsstaginglake" / "curated" / "h" / "holdout.csv"
    assert holdout.read_bytes() == (lake.SAMPLE_DATA / "holdout" / "diabetes_holdout.csv").read_bytes()
    scoring = tmp_path / "mlopsprodlake" / "landing" / "diabetes" / "scoring"
    assert sorted(p.name for p in scoring.iterdir()) == sorted(
        p.name for p in (lake.SAMPLE_DATA / "scoring").iterdir()
    )
    landing = placed["abfss://landing@mlopsdevlake.dfs.core.windows.net/diabetes"]
    assert landing == tmp_path / "mlopsdevlake" / "landing" / "diabetes"
    assert {p.relative_to(landing) for p in landing.rglob("*") if p.is_file()} >= {
        p.relative_to(lake.SAMPLE_DATA / "landing" / "diabetes")
        if (lake.SAMPLE_DATA / "landing" / "diabetes").is_dir()
        else p.relative_to(lake.SAMPLE_DATA / "landing")
        for p in (lake.SAMPLE_DATA / "landing").rglob("*")
        if p.is_file()
    }


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("devstack-lake")
    ports = {"mlflow": free_port(), "dev": free_port(), "staging": free_port(), "prod": free_port()}
    stack = devstack.up(state_dir, ports=ports, use_postgres=False, quiet=True)
    yield state_dir, stack
    devstack.down(state_dir, quiet=True)


def _client(stack, name) -> WorkspaceClient:
    ws = stack["workspaces"][name]
    return WorkspaceClient(host=ws["url"], token=ws["token"], auth_type="pat")


def test_up_gives_all_workspaces_one_metastore_with_the_configured_catalogs(running):
    state_dir, stack = running
    dev, staging, prod = (_client(stack, n) for n in ("dev", "staging", "prod"))
    for w in (dev, staging, prod):
        assert {"dev.ml", "prod.ml"} <= {
            s.full_name for c in ("dev", "prod") for s in w.schemas.list(catalog_name=c)
        }
    dev.volumes.create(catalog_name="dev", schema_name="ml", name="handoff", volume_type=VolumeType.MANAGED)
    prod.files.upload("/Volumes/dev/ml/handoff/from-prod.txt", io.BytesIO(b"shared"))
    assert staging.files.download("/Volumes/dev/ml/handoff/from-prod.txt").contents.read() == b"shared"
    assert (state_dir / "metastore" / "volumes" / "dev" / "ml" / "handoff" / "from-prod.txt").is_file()


def test_up_creates_the_configured_external_volumes_over_their_storage_accounts(running):
    state_dir, stack = running
    config = lake.base_config()
    declared = lake.external_volumes(config)
    prod = _client(stack, "prod")
    for (catalog, schema, name), location in declared.items():
        volume = prod.volumes.read(f"{catalog}.{schema}.{name}")
        assert (volume.volume_type, volume.storage_location) == (VolumeType.EXTERNAL, location)
    # The holdout file environments.yaml names is seeded in its volume, i.e. in the container of
    # the storage account that volume lies on, and every workspace reads it through the Files API.
    holdout = config["environments"]["staging"]["paths"]["holdout"]
    expected = (lake.SAMPLE_DATA / "holdout" / "diabetes_holdout.csv").read_bytes()
    assert prod.files.download(holdout).contents.read() == expected
    account_file = (
        state_dir / "lake" / "mlopsstaginglake" / "curated" / "holdout" / "diabetes" / "holdout.csv"
    )
    assert account_file.read_bytes() == expected
