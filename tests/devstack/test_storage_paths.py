"""abfss://, /Volumes and dbfs:/ paths inside notebooks: Spark, dbutils.fs, open() and pandas.

One real notebook run (a Spark JVM starts once) on a workspace given a shared metastore and a
storage account, as `devstack up` starts them; plus the path mapping itself, in-process.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.catalog import VolumeType
from databricks.sdk.service.workspace import ImportFormat, Language

from devstack.services import start_workspace
from devstack.workspace.runtime.fs import StorageMap, abfss_to_local, parse_storage_accounts
from tests.devstack.jobs_support import Api, notebook_task

TOKEN = "dapi-storage-test"
LAKE = "abfss://lake@mlopsdevlake.dfs.core.windows.net"
VOLUME = "/Volumes/dev/ml/landing"

NOTEBOOK = f'''# Databricks notebook source
import json
import os

import pandas as pd

lake, vol = "{LAKE}", "{VOLUME}"
df = spark.read.option("header", True).option("inferSchema", True).csv(f"{{lake}}/landing/diabetes.csv")
rows = df.count()
df.write.mode("overwrite").partitionBy("sex").parquet(f"{{lake}}/curated/diabetes")
df.write.mode("overwrite").partitionBy("sex").parquet(f"{{vol}}/curated")

# COMMAND ----------

out = {{
    "rows": rows,
    "abfss_back": spark.read.parquet(f"{{lake}}/curated/diabetes").count(),
    "volume_back": spark.read.parquet(f"{{vol}}/curated").count(),
    "sql_abfss": spark.sql(f"SELECT COUNT(*) AS n FROM parquet.`{{lake}}/curated/diabetes`").first().n,
    "ls_abfss": sorted(f.name for f in dbutils.fs.ls(f"{{lake}}/curated/diabetes") if f.isDir()),
}}
dbutils.fs.cp(f"{{lake}}/landing/diabetes.csv", f"{{vol}}/copy.csv")
dbutils.fs.put("dbfs:/tmp/hello.txt", "hello", True)
out["ls_volume"] = sorted(f.name for f in dbutils.fs.ls(vol))

# COMMAND ----------

pdf = pd.read_csv(f"{{vol}}/copy.csv")
pdf.to_parquet("/dbfs/tmp/scored.parquet")
with open(f"{{vol}}/note.txt", "w") as fh:
    fh.write("from open()")
out["pandas_csv"] = len(pdf)
out["pandas_parquet_dbfs"] = len(pd.read_parquet("/dbfs/tmp/scored.parquet"))
out["pandas_partitioned_volume"] = len(pd.read_parquet(f"{{vol}}/curated"))
out["open_dbfs"] = open("/dbfs/tmp/hello.txt").read()
out["listdir_volume"] = sorted(os.listdir(vol))
out["missing_volume_exists"] = os.path.exists("/Volumes/dev/ml/nosuchvolume/x.csv")
try:
    spark.read.csv("abfss://lake@unknownacct.dfs.core.windows.net/x.csv")
except Exception as exc:
    out["unknown_account"] = str(exc)
dbutils.notebook.exit(json.dumps(out))
'''


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("storage")
    lake = root / "lake"
    (lake / "dev" / "lake" / "landing").mkdir(parents=True)
    csv = ["age,sex,bmi,target"] + [f"{30 + i},{1 + i % 2},{20 + i / 10},{100 + i}" for i in range(40)]
    (lake / "dev" / "lake" / "landing" / "diabetes.csv").write_text("\n".join(csv) + "\n")
    service = start_workspace(
        "storage",
        root / "ws",
        token=TOKEN,
        extra_args=[
            "--metastore-dir",
            str(root / "metastore"),
            "--storage-account",
            f"mlopsdevlake={lake / 'dev'}",
        ],
    )
    w = WorkspaceClient(host=service.url, token=TOKEN)
    w.catalogs.create(name="dev")
    w.schemas.create(name="ml", catalog_name="dev")
    w.volumes.create(catalog_name="dev", schema_name="ml", name="landing", volume_type=VolumeType.MANAGED)
    yield {"service": service, "w": w, "root": root, "lake": lake / "dev" / "lake"}
    service.stop()


def test_notebook_reads_and_writes_abfss_volumes_and_dbfs(stack):
    w, service, root = stack["w"], stack["service"], stack["root"]
    w.workspace.mkdirs("/Shared/storage")
    w.workspace.import_(
        "/Shared/storage/paths",
        content=base64.b64encode(NOTEBOOK.encode()).decode(),
        format=ImportFormat.SOURCE,
        language=Language.PYTHON,
        overwrite=True,
    )
    api = Api(service.url, TOKEN)
    run_id = api.submit(run_name="storage paths", tasks=[notebook_task("paths", "/Shared/storage/paths")])
    run = api.wait(run_id, timeout=240)
    task_run = run["tasks"][0]["run_id"]
    output = api.ok("GET", "2.1/jobs/runs/get-output", {"run_id": task_run})
    assert run["state"]["result_state"] == "SUCCESS", output.get("error_trace") or output
    out = json.loads(output["notebook_output"]["result"])

    assert out["rows"] == out["abfss_back"] == out["volume_back"] == out["sql_abfss"] == 40
    assert out["ls_abfss"] == ["sex=1/", "sex=2/"]
    assert out["pandas_csv"] == out["pandas_parquet_dbfs"] == out["pandas_partitioned_volume"] == 40
    assert out["open_dbfs"] == "hello"
    assert {"copy.csv", "curated", "note.txt"} <= set(out["listdir_volume"])
    assert out["missing_volume_exists"] is False
    assert (
        "'unknownacct'" in out["unknown_account"]
        and "--storage-account unknownacct=DIR" in out["unknown_account"]
    )
    # Where the bytes went: the lake dir of the account, the shared metastore, the DBFS root.
    assert sorted(p.name for p in (stack["lake"] / "curated" / "diabetes").glob("sex=*")) == [
        "sex=1",
        "sex=2",
    ]
    volume_dir = root / "metastore" / "volumes" / "dev" / "ml" / "landing"
    assert (volume_dir / "note.txt").read_text() == "from open()"
    assert list((volume_dir / "curated").glob("sex=1/*.parquet"))
    assert (root / "ws" / "dbfs" / "tmp" / "scored.parquet").is_file()
    # And the Files API serves what the notebook wrote into the volume.
    assert w.files.download(f"{VOLUME}/note.txt").contents.read() == b"from open()"


# --------------------------------------------------------------------------- the mapping itself


def test_abfss_maps_under_the_account_dir_and_cannot_climb_out(tmp_path):
    accounts = parse_storage_accounts([f"mlopsdevlake={tmp_path}"])
    assert abfss_to_local(f"{LAKE}/landing/x.csv", accounts) == tmp_path / "lake" / "landing" / "x.csv"
    assert abfss_to_local("abfss://lake@MLOPSDEVLAKE.dfs.core.windows.net", accounts) == tmp_path / "lake"
    assert abfss_to_local(f"{LAKE}/../../../etc/passwd", accounts) == tmp_path / "lake" / "etc" / "passwd"


def test_unknown_account_and_bad_flag_are_named(tmp_path):
    with pytest.raises(ValueError, match="'mlopsprodlake'.*--storage-account mlopsprodlake=DIR"):
        abfss_to_local("abfss://lake@mlopsprodlake.dfs.core.windows.net/x", {"mlopsdevlake": tmp_path})
    with pytest.raises(ValueError, match="expected NAME=DIR"):
        parse_storage_accounts(["mlopsdevlake"])


def test_volume_paths_need_an_existing_volume_when_a_metastore_is_set(tmp_path):
    from devstack.workspace.unity_catalog.backend import Metastore

    metastore = Metastore(tmp_path / "ms")
    metastore.create_catalog("dev")
    metastore.create_schema("dev", "ml")
    metastore.create_volume("dev", "ml", "landing")
    storage = StorageMap(tmp_path / "ws", tmp_path / "ms")
    assert storage.to_local("/Volumes/dev/ml/landing/a.csv") == Path(
        tmp_path / "ms/volumes/dev/ml/landing/a.csv"
    )
    with pytest.raises(FileNotFoundError, match="dev.ml.other"):
        storage.to_local("/Volumes/dev/ml/other/a.csv")
    metastore.close()


FUSE_SCRIPT = """
import os, shutil, sys
from pathlib import Path
from devstack.workspace.runtime import fuse
from devstack.workspace.runtime.fs import StorageMap
fuse.install(StorageMap(Path(sys.argv[1])))
os.makedirs("/dbfs/tmp/a/b", exist_ok=True)
Path("/dbfs/tmp/a/b/x.txt").write_text("x")
os.rename(src="/dbfs/tmp/a/b/x.txt", dst="/dbfs/tmp/a/b/y.txt")
shutil.copy("/dbfs/tmp/a/b/y.txt", "/dbfs/tmp/a/z.txt")
assert os.listdir() is not None  # no path: the working directory, untouched
print(sorted(os.listdir("/dbfs/tmp/a")), open("/dbfs/tmp/a/z.txt").read(), os.path.isdir("/dbfs/tmp/a/b"))
"""


def test_fuse_paths_cover_os_pathlib_and_shutil(tmp_path):
    import subprocess
    import sys

    # In a child process: the shim patches the interpreter for good, as it does in a driver.
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", FUSE_SCRIPT, str(tmp_path)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['b', 'z.txt'] x True"
    assert (tmp_path / "dbfs" / "tmp" / "a" / "b" / "y.txt").read_text() == "x"
