"""Batch scoring of one logical-date partition with one exact model version."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

PARTITION_COLUMN = "date"
SCORING_BATCH_ROWS = 100_000


class ScoringError(RuntimeError):
    """The partition could not be scored completely."""


def latest_partition(spark: SparkSession, input_path: str) -> str:
    """The newest ``date=YYYY-MM-DD`` partition under ``input_path`` (any Hadoop filesystem)."""
    jvm = spark.sparkContext._jvm
    root = jvm.org.apache.hadoop.fs.Path(input_path)
    fs = root.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(root):
        raise ScoringError(f"Scoring input folder {input_path} does not exist.")
    prefix = f"{PARTITION_COLUMN}="
    dates = sorted(
        status.getPath().getName()[len(prefix) :]
        for status in fs.listStatus(root)
        if status.isDirectory() and status.getPath().getName().startswith(prefix)
    )
    if not dates:
        raise ScoringError(f"Scoring input folder {input_path} has no {prefix}YYYY-MM-DD partitions.")
    return dates[-1]


def score_partition(
    spark: SparkSession,
    *,
    model_name: str,
    model_version: str,
    input_path: str,
    output_path: str,
    date: str,
    features: list[str],
    id_column: str,
) -> dict:
    """Score ``input_path/date=<date>`` with ``models:/<model_name>/<model_version>``.

    ``date`` may be ``latest``: the newest input partition, for jobs run by hand; mlops_batch_score
    always passes the date it fixed before the run, so every try scores the same one.

    Writes ``output_path/date=<date>`` with Spark's dynamic partition overwrite: the new files
    replace that partition only, and only when the job commits, so a failed run leaves the
    previous output of that date (or none) in place, never a partial partition. Every output
    row carries the model name and version that scored it. Returns rows_in and rows_out.
    """
    import mlflow.pyfunc
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    if date == "latest":
        date = latest_partition(spark, input_path)
    source = f"{input_path.rstrip('/')}/{PARTITION_COLUMN}={date}"
    try:
        # Only the header is read here; the data is read once, below, with its real types.
        columns = spark.read.option("header", True).csv(source).columns
    except Exception as exc:  # Spark raises AnalysisException for a missing path
        raise ScoringError(f"No scoring input for {date}: {source} cannot be read ({exc}).") from exc
    missing = [c for c in [id_column, *features] if c not in columns]
    if missing:
        raise ScoringError(f"{source} is missing column(s) {missing}; it has {columns}.")
    # Typed parsing instead of strings + casts: CSV columns are matched by position, so the
    # schema follows the header's order, and enforceSchema=false rejects a file whose header
    # differs from it.
    schema = StructType([StructField(c, DoubleType() if c in features else StringType()) for c in columns])
    frame = (
        spark.read.option("header", True)
        .option("enforceSchema", False)
        .schema(schema)
        .csv(source)
        .select(id_column, *features)
    )
    # Counting prunes every column (0.1 s for 1M rows); caching the frame instead would parse
    # them all twice over (1.8 s). The write below parses the file once more, fully.
    rows_in = frame.count()

    model_uri = f"models:/{model_name}/{model_version}"
    predict = mlflow.pyfunc.spark_udf(spark, model_uri, result_type="double", env_manager="local")
    scored = frame.select(
        id_column,
        *features,
        predict(F.struct(*[F.col(c) for c in features])).alias("prediction"),
        F.lit(model_name).alias("model_name"),
        F.lit(str(model_version)).alias("model_version"),
        F.current_timestamp().alias("scored_at"),
        F.lit(date).alias(PARTITION_COLUMN),
    )
    spark.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")
    # Big Arrow batches: the model predicts 100k rows per call instead of 10k (5x faster here).
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(SCORING_BATCH_ROWS))
    scored.write.mode("overwrite").partitionBy(PARTITION_COLUMN).parquet(output_path)

    written = spark.read.parquet(f"{output_path.rstrip('/')}/{PARTITION_COLUMN}={date}")
    counts = written.agg(F.count("*").alias("rows"), F.countDistinct(id_column).alias("ids")).first()
    rows_out, distinct_ids = counts["rows"], counts["ids"]
    return {
        "date": date,
        "model_name": model_name,
        "model_version": str(model_version),
        "rows_in": rows_in,
        "rows_out": rows_out,
        "distinct_ids": distinct_ids,
        "output_path": f"{output_path.rstrip('/')}/{PARTITION_COLUMN}={date}",
    }
