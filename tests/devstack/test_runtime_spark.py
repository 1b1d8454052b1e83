"""Spark in the cluster driver: started lazily, once per driver, shared by executions, cancelable.

Slow (a real JVM starts, ~5-10 s), so one driver serves every test here. Notebooks come from
a git checkout (source GIT): no workspace server is needed.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from devstack.workspace.runtime import DriverProcess

NOTEBOOKS = Path(__file__).parent / "runtime_notebooks"


def git_task(exec_id: str, notebook: str, **overrides) -> dict:
    base = {
        "exec_id": exec_id,
        "kind": "notebook",
        "source": "GIT",
        "notebook_path": notebook,
        "git_root": str(NOTEBOOKS),
        "python_file": None,
        "parameters": [],
        "base_parameters": {},
        "job_id": 1,
        "run_id": 2,
        "job_run_id": None,
        "task_key": "t",
        "env": {},
    }
    base.update(overrides)
    return base


def start(driver: DriverProcess, task: dict) -> tuple[threading.Event, list[dict]]:
    done, results = threading.Event(), []

    def on_done(result):
        results.append(result)
        done.set()

    driver.execute(task, on_done)
    return done, results


def run(driver: DriverProcess, task: dict, timeout: float = 120) -> dict:
    done, results = start(driver, task)
    assert done.wait(timeout), f"{task['exec_id']} did not finish within {timeout}s"
    return results[0]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("spark-data")


@pytest.fixture(scope="module")
def driver(tmp_path_factory, data_dir):
    cluster_dir = tmp_path_factory.mktemp("spark-cluster")
    driver = DriverProcess(
        "cluster-spark",
        cluster_dir=cluster_dir,
        data_dir=data_dir,
        workspace_url="http://127.0.0.1:9",  # never called: GIT notebooks only
        token="unused",
        spark_conf={"spark.sql.session.timeZone": "UTC", "spark.app.name": "runtime-test"},
    )
    driver.start()
    yield driver
    driver.kill()


def test_spark_starts_lazily_runs_sql_cells_and_is_shared(driver):
    before = run(driver, git_task("plain", "empty"))
    assert before["result_state"] == "SUCCESS"
    assert before["spark_started"] is False and driver.spark_started is False

    result = run(driver, git_task("sql", "spark_sql", base_parameters={"min_n": "5"}))

    assert result["result_state"] == "SUCCESS", (result["error"], result["error_trace"])
    assert result["notebook_result"] == "45"
    assert result["spark_started"] is True and driver.spark_started is True
    # display(df) and the %sql cell print readable tables into the run's output.
    assert "|n  |" in result["logs"]
    assert "|total|total_sum|" in result["logs"] and "|5    |35       |" in result["logs"]  # ${min_n} = 5

    # A second execution reuses the running session (and our spark_conf reached it).
    again = run(
        driver,
        git_task("conf", "spark_conf", source="GIT"),
    )
    assert again["result_state"] == "SUCCESS", (again["error"], again["error_trace"])
    assert again["notebook_result"] == "UTC local[2] false"


def test_failing_sql_cell_is_named_in_the_error(driver, tmp_path):
    (tmp_path / "bad_sql.py").write_text(
        "# Databricks notebook source\n# MAGIC %sql\n# MAGIC SELECT * FROM no_such_table\n"
    )
    result = run(driver, git_task("bad-sql", "bad_sql", git_root=str(tmp_path)))

    assert result["result_state"] == "FAILED"
    assert result["error"].startswith("AnalysisException: ")
    assert "no_such_table" in result["error"]
    assert result["error"].endswith("(in %sql cell 1 of notebook bad_sql)")


def test_cancel_stops_a_running_spark_job_and_spark_stays_usable(driver):
    done, results = start(driver, git_task("long", "spark_long_job"))
    deadline = time.monotonic() + 60
    while (
        "starting long job" not in (driver.cluster_dir / "driver.log").read_text()
        and time.monotonic() < deadline
    ):
        time.sleep(0.1)
    time.sleep(1.5)  # let the Spark job get going
    driver.cancel("long", grace=30)

    assert done.wait(20), "the canceled Spark job did not stop"
    assert results[0]["result_state"] == "CANCELED"
    assert driver.alive
    assert run(driver, git_task("after", "spark_sql"))["notebook_result"] == "45"


def test_spark_reads_and_writes_dbfs_and_volumes_paths_under_the_data_dir(driver, data_dir):
    result = run(driver, git_task("paths", "spark_paths"))

    assert result["result_state"] == "SUCCESS", (result["error"], result["error_trace"])
    assert json.loads(result["notebook_result"]) == {"count": 3, "sql": 3, "listed": ["rows"]}
    assert list((data_dir / "dbfs/curated/rows").glob("part-*.parquet"))
