"""Data preparation on real Spark: bad rows are counted and quarantined, never silently dropped."""

from __future__ import annotations

import pandas as pd
import pytest
from lifecycle.data import DataValidationError, prepare_training_data

from include.config import load_config

CONFIG = load_config(overlay="")
FEATURES = CONFIG["model"]["features"]
TARGET = CONFIG["model"]["target"]
RANGES = CONFIG["data"]["ranges"]
LANDING = "include/data/landing/diabetes/date=2026-11-22/part-00000.csv"


def _prepare(spark, landing: str, tmp_path, max_bad_fraction: float = 0.05) -> dict:
    return prepare_training_data(
        spark,
        landing_path=landing,
        curated_path=str(tmp_path / "curated"),
        quarantine_path=str(tmp_path / "quarantine"),
        features=FEATURES,
        target=TARGET,
        ranges=RANGES,
        max_bad_fraction=max_bad_fraction,
    )


def test_shipped_landing_file_is_clean(spark, tmp_path):
    report = _prepare(spark, LANDING, tmp_path)
    assert report["rows_in"] == 353 and report["rows_bad"] == 0
    curated = spark.read.parquet(str(tmp_path / "curated"))
    assert curated.count() == 353
    assert dict(curated.dtypes)["bmi"] == "double"


def test_bad_rows_are_counted_by_reason_and_quarantined(spark, tmp_path):
    frame = pd.read_csv(LANDING)
    frame.loc[0, "age"] = 250  # out of range
    frame.loc[1, "bmi"] = None  # missing
    frame["sex"] = frame["sex"].astype(object)
    frame.loc[2, "sex"] = "unknown"  # not a number
    landing = tmp_path / "landed.csv"
    frame.to_csv(landing, index=False)

    report = _prepare(spark, str(landing), tmp_path)

    assert (report["rows_in"], report["rows_good"], report["rows_bad"]) == (353, 350, 3)
    assert report["bad_reasons"] == {
        "age outside [0, 120]": 1,
        "bmi is missing": 1,
        "sex is not a number": 1,
    }
    quarantined = spark.read.parquet(str(tmp_path / "quarantine"))
    assert quarantined.count() == 3
    assert spark.read.parquet(str(tmp_path / "curated")).count() == 350


def test_too_many_bad_rows_fail_and_leave_no_curated_output(spark, tmp_path):
    frame = pd.read_csv(LANDING)
    frame.loc[:40, "bp"] = 999
    landing = tmp_path / "landed.csv"
    frame.to_csv(landing, index=False)

    with pytest.raises(DataValidationError, match=r"41 of 353 rows .* are bad .*bp outside \[30, 250\]"):
        _prepare(spark, str(landing), tmp_path)
    assert not (tmp_path / "curated").exists()
    assert spark.read.parquet(str(tmp_path / "quarantine")).count() == 41


def test_missing_column_is_named(spark, tmp_path):
    frame = pd.read_csv(LANDING).drop(columns=["s3"])
    landing = tmp_path / "landed.csv"
    frame.to_csv(landing, index=False)

    with pytest.raises(DataValidationError, match=r"missing column\(s\) \['s3'\]"):
        _prepare(spark, str(landing), tmp_path)


def test_a_date_partition_reads_only_the_files_listed_before_the_run(spark, tmp_path):
    frame = pd.read_csv(LANDING)
    partition = tmp_path / "landing" / "date=2026-11-22"
    partition.mkdir(parents=True)
    frame.head(100).to_csv(partition / "part-00000.csv", index=False)
    # Landed after Airflow listed the date: not part of this training run.
    frame.tail(50).to_csv(partition / "part-00001.csv", index=False)
    listed = [str(partition / "part-00000.csv")]

    report = prepare_training_data(
        spark,
        landing_path=str(partition),
        landing_files=listed,
        curated_path=str(tmp_path / "curated"),
        quarantine_path=str(tmp_path / "quarantine"),
        features=FEATURES,
        target=TARGET,
        ranges=RANGES,
        max_bad_fraction=0.05,
    )

    assert report["rows_in"] == 100 and report["files"] == listed
    assert report["landing_path"] == str(partition)
    assert spark.read.parquet(str(tmp_path / "curated")).count() == 100
