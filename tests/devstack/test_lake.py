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


def test_up_maps_the_configured_storage_accounts_and_seeds_them(running):
    _, stack = running
    # An abfss:// path of environments.yaml that `up` seeds (landing data lives in a volume).
    holdout = lake.base_config()["environments"]["staging"]["paths"]["holdout"]
    folder = holdout.rsplit("/", 1)[0] if holdout.endswith(".csv") else holdout
    dev = _client(stack, "dev")
    volume = dev.volumes.create(
        catalog_name="dev",
        schema_name="ml",
        name="landing_ext",
        volume_type=VolumeType.EXTERNAL,
        storage_location=folder,
    )
    assert volume.storage_location == folder
    names = [e.name for e in dev.files.list_directory_contents("/Volumes/dev/ml/landing_ext")]
    assert names, f"nothing seeded under {folder}"
