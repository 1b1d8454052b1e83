"""What has landed, asked from Airflow through the workspace's Files API before any cluster starts.

In-process calls of mlops.landed_data against an emulated workspace with Unity Catalog volumes,
and a real `airflow dags test` of dags/mlops_train.py whose date has no data: it fails naming
the date and the path, and no job, run or cluster is ever created.
"""

from __future__ import annotations

import io
import json

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.catalog import VolumeType

from devstack.airflow_runner import ROOT
from devstack.services import start_workspace

TOKEN = "dapi-landed-data-test"
LANDING = "/Volumes/dev/ml/landing/diabetes"  # environments.dev.paths.landing of include/config
SAMPLE = ROOT / "include" / "data" / "landing" / "diabetes"


@pytest.fixture(scope="module")
def landed_workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("landed")
    service = start_workspace(
        "landed", root / "ws", token=TOKEN, extra_args=["--metastore-dir", str(root / "metastore")]
    )
    w = WorkspaceClient(host=service.url, token=TOKEN)
    w.catalogs.create(name="dev")
    w.schemas.create(name="ml", catalog_name="dev")
    w.volumes.create(catalog_name="dev", schema_name="ml", name="landing", volume_type=VolumeType.MANAGED)
    for part in sorted(SAMPLE.glob("date=*/*.csv")):
        w.files.upload(f"{LANDING}/{part.parent.name}/{part.name}", io.BytesIO(part.read_bytes()))
    # A date whose extract has started but written nothing yet, and a marker file that is no data.
    w.files.create_directory(f"{LANDING}/date=2026-11-23")
    w.files.upload(f"{LANDING}/date=2026-11-22/_SUCCESS", io.BytesIO(b""))
    yield service
    service.stop()


@pytest.fixture
def hook(landed_workspace, monkeypatch):
    from airflow.providers.databricks.hooks.databricks import DatabricksHook

    conn = {
        "conn_type": "databricks",
        "host": "127.0.0.1",
        "port": landed_workspace.port,
        "schema": "http",
        "password": TOKEN,
    }
    monkeypatch.setenv("AIRFLOW_CONN_DATABRICKS_LANDED", json.dumps(conn))
    return DatabricksHook("databricks_landed")


def test_newest_date_and_its_files(hook):
    from mlops.landed_data import landed_files, newest_partition, partitions

    assert partitions(hook, LANDING) == ["2026-11-20", "2026-11-22", "2026-11-23"]
    assert newest_partition(hook, LANDING) == "2026-11-23"  # a folder, even an empty one, is a date
    found = landed_files(hook, LANDING, "2026-11-22")
    assert found["path"] == f"{LANDING}/date=2026-11-22"
    assert found["files"] == [f"{LANDING}/date=2026-11-22/part-00000.csv"]  # not _SUCCESS
    assert found["bytes"] == (SAMPLE / "date=2026-11-22" / "part-00000.csv").stat().st_size


def test_a_missing_or_empty_date_names_the_date_the_path_and_the_dates_there(hook):
    from mlops.landed_data import NoLandedDataError, landed_files

    with pytest.raises(NoLandedDataError) as missing:
        landed_files(hook, LANDING, "2026-10-01")
    assert str(missing.value).startswith(
        f"No data landed for 2026-10-01: {LANDING}/date=2026-10-01 does not exist. "
        "Newest dates there: 2026-11-20, 2026-11-22, 2026-11-23."
    )
    with pytest.raises(
        NoLandedDataError, match=f"No data landed for 2026-11-23: {LANDING}/date=2026-11-23 is empty"
    ):
        landed_files(hook, LANDING, "2026-11-23")


def test_paths_that_cannot_be_listed_without_compute_are_refused_with_the_fix(hook):
    from airflow.sdk.exceptions import AirflowFailException
    from mlops.landed_data import landed_files

    with pytest.raises(AirflowFailException, match="cannot be listed from Airflow without starting compute"):
        landed_files(hook, "abfss://landing@mlopsdevlake.dfs.core.windows.net/diabetes", "2026-11-22")


def test_training_on_a_date_without_data_fails_before_any_cluster_starts(airflow, landed_workspace):
    conn = {
        "conn_type": "databricks",
        "host": "127.0.0.1",
        "port": landed_workspace.port,
        "schema": "http",
        "password": TOKEN,
    }
    w = WorkspaceClient(host=landed_workspace.url, token=TOKEN)
    clusters_before = [(c.cluster_id, c.state) for c in w.clusters.list()]

    result = airflow.dags_test(
        "mlops_train",
        ROOT / "dags",
        conf={"data_date": "2026-10-01"},
        env={"AIRFLOW_CONN_DATABRICKS_DEV": json.dumps(conn)},
        timeout=300,
    )

    assert result.state == "failed", result.output[-4000:]
    assert f"No data landed for 2026-10-01: {LANDING}/date=2026-10-01 does not exist" in result.output
    assert list(w.jobs.list()) == [] and list(w.jobs.list_runs()) == []
    assert [(c.cluster_id, c.state) for c in w.clusters.list()] == clusters_before
