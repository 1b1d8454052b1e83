"""Data preparation: schema and range checks on the landed data, with bad rows kept, not dropped."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

REASON = "_reject_reason"


class DataValidationError(ValueError):
    """The landed data cannot be used: wrong schema, or too many bad rows."""


def check_schema(columns: list[str], required: list[str], source: str) -> None:
    """Fail naming the missing columns (and the ones present) when ``required`` are not all there."""
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataValidationError(
            f"{source} is missing column(s) {missing}; it has {columns}. "
            f"Fix the extract that lands this file, or the feature list in include/config/environments.yaml."
        )


def split_valid_rows(df: DataFrame, ranges: dict[str, list[float]]) -> tuple[DataFrame, DataFrame]:
    """Split ``df`` into (good, bad) rows; bad rows carry the reason in ``_reject_reason``.

    A row is bad when a ranged column is missing, not a number, or outside [low, high].
    Columns are cast to double (try_cast: Spark 4 is ANSI by default); the first failing
    check of a row names its reason.
    """
    from pyspark.sql import functions as F

    reason = F.lit(None).cast("string")
    casted = df
    # Build the reason right to left so the first column's failure wins.
    for column, (low, high) in reversed(list(ranges.items())):
        value = F.col(column).try_cast("double")
        reason = (
            F.when(F.col(column).isNull(), F.lit(f"{column} is missing"))
            .when(value.isNull(), F.lit(f"{column} is not a number"))
            .when((value < low) | (value > high), F.lit(f"{column} outside [{low}, {high}]"))
            .otherwise(reason)
        )
    casted = df.withColumn(REASON, reason)
    for column in ranges:
        casted = casted.withColumn(column, F.col(column).try_cast("double"))
    good = casted.where(F.col(REASON).isNull()).drop(REASON)
    bad = casted.where(F.col(REASON).isNotNull())
    return good, bad


def prepare_training_data(
    spark: SparkSession,
    *,
    landing_path: str,
    curated_path: str,
    quarantine_path: str,
    features: list[str],
    target: str,
    ranges: dict[str, list[float]],
    max_bad_fraction: float,
    landing_files: list[str] | None = None,
) -> dict:
    """Read the landed CSV, validate it, write curated (good) and quarantined (bad) rows.

    ``landing_path`` is one date's partition; ``landing_files``, when given, are the files of it
    to read (the ones Airflow listed before the run, so a file landing meanwhile is not read).
    Both outputs are overwritten, so a re-run gives the same result. Returns a report:
    landing_path, files, rows_in, rows_good, rows_bad, bad_fraction, bad_reasons (reason -> count).
    Raises :class:`DataValidationError` when the schema is wrong or too many rows are bad;
    the quarantine is written first, so the bad rows can be inspected either way.
    """
    sources = list(landing_files) if landing_files else [landing_path]
    raw = spark.read.option("header", True).csv(sources)
    check_schema(raw.columns, [*features, target], landing_path)
    checked_ranges = {c: ranges[c] for c in [*features, target] if c in ranges}
    unchecked = [c for c in [*features, target] if c not in ranges]
    good, bad = split_valid_rows(raw.select(*features, target), checked_ranges)
    for column in unchecked:
        good = good.withColumn(column, good[column].cast("double"))

    good = good.cache()
    bad = bad.cache()
    rows_good, rows_bad = good.count(), bad.count()
    rows_in = rows_good + rows_bad
    reasons = {row[0]: row[1] for row in bad.groupBy(REASON).count().collect()}
    bad.write.mode("overwrite").parquet(quarantine_path)
    report = {
        "landing_path": landing_path,
        "files": sources,
        "rows_in": rows_in,
        "rows_good": rows_good,
        "rows_bad": rows_bad,
        "bad_fraction": (rows_bad / rows_in) if rows_in else 0.0,
        "bad_reasons": reasons,
        "curated_path": curated_path,
        "quarantine_path": quarantine_path,
    }
    if rows_in == 0:
        raise DataValidationError(f"{landing_path} has no rows.")
    if report["bad_fraction"] > max_bad_fraction:
        raise DataValidationError(
            f"{rows_bad} of {rows_in} rows of {landing_path} are bad ({report['bad_fraction']:.1%} > "
            f"{max_bad_fraction:.1%} allowed): {reasons}. They are in {quarantine_path}."
        )
    good.write.mode("overwrite").parquet(curated_path)
    good.unpersist()
    bad.unpersist()
    return report
