"""Batch-scoring throughput: the scoring notebook's Spark path against plain pandas.

    .venv/bin/python -m benchmarks.scoring_throughput [--rows 1000000] [--cores 2]

Makes one ``date=`` partition of ``--rows`` rows (resampled from the diabetes features, CSV like
the real input), trains the ridge pipeline of the training notebook and registers it in a local
MLflow registry (SQLite), then scores the partition twice, side by side on the same machine:

- pandas: one process, ``read_csv -> model.predict -> to_parquet`` with the model loaded by
  ``mlflow.pyfunc.load_model``;
- spark: ``lifecycle.scoring.score_partition`` (what the batch_score notebook runs), i.e.
  ``mlflow.pyfunc.spark_udf`` on a local Spark session with ``--cores`` cores, with the same
  settings as the emulated workspace's drivers. The Spark session is started (and warmed with one
  small job) before the clock starts, as a cluster would be. It scores twice: "cold" (Spark's
  Python workers start and load the model, as in every scoring job) and "warm" (workers reused).

Both timings include loading the model and writing Parquet. Results go to
``benchmarks/results/scoring_throughput-<time>.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "include" / "notebooks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from benchmarks.results_file import save  # noqa: E402

FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
DATE = "2026-11-20"


def make_partition(root: Path, rows: int) -> Path:
    import numpy as np
    import pandas as pd

    train = pd.read_csv(ROOT / "include" / "data" / "landing" / "diabetes.csv")
    rng = np.random.default_rng(7)
    sample = train[FEATURES].sample(n=rows, replace=True, random_state=7).reset_index(drop=True)
    sample = sample * (1 + rng.normal(0, 0.01, size=sample.shape))
    sample.insert(0, "patient_id", np.arange(rows).astype(str))
    part = root / "input" / f"date={DATE}"
    part.mkdir(parents=True)
    sample.round(4).to_csv(part / "part-00000.csv", index=False)
    return root / "input"


def register_model(root: Path) -> tuple[str, str]:
    import mlflow
    import pandas as pd
    from lifecycle.training import train_and_register

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    # Artifacts in the temporary folder too (a SQLite store defaults them to ./mlruns).
    mlflow.create_experiment("bench", artifact_location=(root / "artifacts").as_uri())
    train = pd.read_csv(ROOT / "include" / "data" / "landing" / "diabetes.csv")
    result = train_and_register(
        train,
        features=FEATURES,
        target="target",
        hyperparameters={"model_type": "ridge", "alpha": 1.0},
        model_name="bench.ml.diabetes",
        experiment="bench",
    )
    return result["model_name"], result["version"]


def pandas_path(input_dir: Path, output: Path, model_uri: str) -> tuple[float, int]:
    import mlflow.pyfunc
    import pandas as pd

    started = time.perf_counter()
    model = mlflow.pyfunc.load_model(model_uri)
    frame = pd.read_csv(input_dir / f"date={DATE}" / "part-00000.csv")
    frame["prediction"] = model.predict(frame[FEATURES])
    output.mkdir(parents=True)
    frame.to_parquet(output / "part-00000.parquet", index=False)
    return time.perf_counter() - started, len(frame)


def spark_session(cores: int, workdir: Path):
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    spark = (
        SparkSession.builder.master(f"local[{cores}]")
        .appName("scoring-benchmark")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", str(cores * 2))
        .config("spark.sql.warehouse.dir", str(workdir / "warehouse"))
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )
    spark.range(1000).count()  # warm: the JVM and a first job, as on a running cluster
    return spark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args(argv)

    from lifecycle.scoring import score_partition

    with tempfile.TemporaryDirectory(prefix="scoring-bench-") as tmp:
        root = Path(tmp)
        input_dir = make_partition(root, args.rows)
        name, version = register_model(root)
        model_uri = f"models:/{name}/{version}"

        pandas_seconds, pandas_rows = pandas_path(input_dir, root / "pandas-out", model_uri)
        spark = spark_session(args.cores, root)
        timings = []
        # First call: Spark's Python workers start and load the model (once per job on a
        # cluster). Second call: the same on warm workers, as when a job scores several days.
        for attempt in ("cold", "warm"):
            started = time.perf_counter()
            result = score_partition(
                spark,
                model_name=name,
                model_version=version,
                input_path=str(input_dir),
                output_path=str(root / f"spark-out-{attempt}"),
                date=DATE,
                features=FEATURES,
                id_column="patient_id",
            )
            timings.append(time.perf_counter() - started)
        spark.stop()
        spark_seconds = timings[0]

    assert result["rows_out"] == result["rows_in"] == pandas_rows == args.rows, result
    figures = {
        "rows": args.rows,
        "cores": args.cores,
        "pandas_seconds": round(pandas_seconds, 2),
        "pandas_rows_per_s": round(pandas_rows / pandas_seconds),
        "spark_seconds": round(spark_seconds, 2),
        "spark_rows_per_s": round(args.rows / spark_seconds),
        "spark_rows_per_s_per_core": round(args.rows / spark_seconds / args.cores),
        "spark_per_core_vs_pandas": round(
            args.rows / spark_seconds / args.cores / (pandas_rows / pandas_seconds), 2
        ),
        "spark_warm_seconds": round(timings[1], 2),
        "spark_warm_rows_per_s": round(args.rows / timings[1]),
        "spark_warm_per_core_vs_pandas": round(
            args.rows / timings[1] / args.cores / (pandas_rows / pandas_seconds), 2
        ),
    }
    save("scoring_throughput", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
