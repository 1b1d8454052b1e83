# Databricks notebook source
# MAGIC %md
# MAGIC # prepare_data
# MAGIC Reads the landed CSV, checks its schema and value ranges, writes the curated training
# MAGIC dataset (Parquet) and quarantines bad rows: counted and reported, never silently dropped.
# MAGIC
# MAGIC | widget | meaning |
# MAGIC |---|---|
# MAGIC | `landing_path` | the landed data of one date, `<landing>/date=YYYY-MM-DD` (required) |
# MAGIC | `landing_files` | JSON list of the files of it to read (default: all of it) |
# MAGIC | `curated_path` | where the curated Parquet goes (required, overwritten) |
# MAGIC | `quarantine_path` | where bad rows go (required, overwritten) |
# MAGIC | `features` | comma-separated feature columns (required) |
# MAGIC | `target` | the label column (required) |
# MAGIC | `ranges` | JSON: column -> [low, high] (required) |
# MAGIC | `max_bad_fraction` | fail above this fraction of bad rows (default 0.05) |
# MAGIC
# MAGIC Exits with JSON: landing_path, files, rows_in, rows_good, rows_bad, bad_fraction, bad_reasons.

# COMMAND ----------

dbutils.widgets.text("landing_path", "")
dbutils.widgets.text("landing_files", "")
dbutils.widgets.text("curated_path", "")
dbutils.widgets.text("quarantine_path", "")
dbutils.widgets.text("features", "")
dbutils.widgets.text("target", "")
dbutils.widgets.text("ranges", "")
dbutils.widgets.text("max_bad_fraction", "0.05")

import json

params = {
    name: dbutils.widgets.get(name).strip()
    for name in (
        "landing_path",
        "curated_path",
        "quarantine_path",
        "features",
        "target",
        "ranges",
        "max_bad_fraction",
    )
}
missing = [name for name, value in params.items() if not value]
assert not missing, f"Required widget(s) not set: {missing}. Pass them as notebook parameters."

# COMMAND ----------

from lifecycle.data import prepare_training_data

report = prepare_training_data(
    spark,
    landing_path=params["landing_path"],
    curated_path=params["curated_path"],
    quarantine_path=params["quarantine_path"],
    features=[f.strip() for f in params["features"].split(",") if f.strip()],
    target=params["target"],
    ranges=json.loads(params["ranges"]),
    max_bad_fraction=float(params["max_bad_fraction"]),
    landing_files=json.loads(dbutils.widgets.get("landing_files") or "null"),
)
print(json.dumps(report, indent=2))
dbutils.notebook.exit(json.dumps(report))
