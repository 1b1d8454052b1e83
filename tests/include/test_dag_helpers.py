"""The inputs a lifecycle run fixes before its Databricks work: data date, champion of a day, lineage."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from include.dag_helpers import champion_at, date_to_process, lineage_template

NOON = datetime(2026, 11, 21, 12, tzinfo=UTC)


def _never() -> str:
    raise AssertionError("the newest partition must not be looked up")


@pytest.mark.parametrize(
    ("explicit", "run_type", "expected"),
    [
        ("2026-11-20", "manual", "2026-11-20"),  # the form's date wins
        (None, "scheduled", "2026-11-21"),  # the data interval's date
        (None, "backfill", "2026-11-21"),
    ],
)
def test_date_given_or_from_the_data_interval(explicit, run_type, expected):
    assert date_to_process(explicit, run_type, NOON, _never) == expected


@pytest.mark.parametrize("run_type", ["manual", "asset_triggered"])
def test_runs_without_a_date_take_the_newest_partition_once(run_type):
    calls = []
    assert date_to_process(None, run_type, NOON, lambda: calls.append(1) or "2026-11-22") == "2026-11-22"
    assert calls == [1]


def _entry(ts: int, version: str, status: str = "applied") -> dict:
    return {"ts": ts, "version": version, "status": status, "action": "promote"}


def test_champion_of_a_moment_from_the_history():
    history = [
        _entry(1000, "1"),
        _entry(2000, "2"),
        _entry(2500, "3", "superseded"),  # lost a race: never held the alias
        _entry(2600, "3", "failed"),
        _entry(3000, "1"),  # rolled back
    ]
    assert champion_at(history, 999) is None  # before the first promotion
    assert [champion_at(history, t) for t in (1000, 1999, 2000, 2700, 3000, 10**13)] == [
        "1",
        "1",
        "2",
        "2",
        "1",
        "1",
    ]


def test_lineage_records_the_date_path_and_files_read():
    from airflow.sdk import DAG

    data = {
        "date": "2026-11-22",
        "path": "/Volumes/dev/ml/landing/diabetes/date=2026-11-22",
        "files": [
            "/Volumes/dev/ml/landing/diabetes/date=2026-11-22/part-00000.csv",
            "/Volumes/dev/ml/landing/diabetes/date=2026-11-22/part-00001.csv",
        ],
    }
    ti = SimpleNamespace(xcom_pull=lambda task_ids: data if task_ids == "resolve_training_data" else None)
    env = DAG("lineage_render", schedule=None).get_template_env()
    rendered = env.from_string(lineage_template()).render(
        ti=ti,
        dag=SimpleNamespace(dag_id="mlops_train"),
        run_id="manual__1",
        dag_run=SimpleNamespace(triggering_user_name="alice", run_type="manual"),
        var=SimpleNamespace(value=SimpleNamespace(get=lambda name, default: "abc123")),
    )
    tags = json.loads(rendered)
    assert tags["mlops_data_date"] == "2026-11-22"
    assert tags["mlops_data_path"] == data["path"]
    assert tags["mlops_data_files"] == "part-00000.csv,part-00001.csv"
    assert tags["mlops_triggered_by"] == "alice" and tags["mlops_git_sha"] == "abc123"
