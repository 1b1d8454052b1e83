# Databricks notebook source
# MAGIC %md
# MAGIC # batch_score
# MAGIC Scores one logical-date partition with one exact model version (resolved from the
# MAGIC champion alias by the DAG before the run, so a promotion mid-run changes nothing).
# MAGIC Overwrites that date's output partition only; every row carries model name and version.
# MAGIC
# MAGIC | widget | meaning |
# MAGIC |---|---|
# MAGIC | `model_name`, `model_version` | the exact model to score with (required) |
# MAGIC | `input_path` | folder of `date=YYYY-MM-DD` input partitions (required) |
# MAGIC | `output_path` | folder of `date=YYYY-MM-DD` prediction partitions (required) |
# MAGIC | `date` | the date to score, YYYY-MM-DD (required; `latest` = the newest partition, for hand-run jobs only: mlops_batch_score fixes the date before the run) |
# MAGIC | `features`, `id_column` | columns (required) |
# MAGIC | `registry_uri` | e.g. databricks (legacy workspace registry); empty = the runtime's default, databricks-uc |
# MAGIC | `tracking_uri` | a self-hosted MLflow server (http[s]://) to track and register in; empty = the workspace's MLflow |
# MAGIC | `tracking_secret_scope` | secret scope with that server's sign-in (`mlflow-tracking-token`, or `-username` and `-password`) |
# MAGIC
# MAGIC Exits with JSON: date, model_name, model_version, rows_in, rows_out, distinct_ids, output_path.

# COMMAND ----------

dbutils.widgets.text("model_name", "")
dbutils.widgets.text("model_version", "")
dbutils.widgets.text("input_path", "")
dbutils.widgets.text("output_path", "")
dbutils.widgets.text("date", "")
dbutils.widgets.text("features", "")
dbutils.widgets.text("id_column", "")
dbutils.widgets.text("registry_uri", "")
dbutils.widgets.text("tracking_uri", "")
dbutils.widgets.text("tracking_secret_scope", "")

import json

params = {
    name: dbutils.widgets.get(name).strip()
    for name in (
        "model_name",
        "model_version",
        "input_path",
        "output_path",
        "date",
        "features",
        "id_column",
        "registry_uri",
        "tracking_uri",
        "tracking_secret_scope",
    )
}
OPTIONAL = ("registry_uri", "tracking_uri", "tracking_secret_scope")
missing = [n for n, v in params.items() if not v and n not in OPTIONAL]
assert not missing, f"Required widget(s) not set: {missing}. Pass them as notebook parameters."

# COMMAND ----------

from lifecycle.scoring import score_partition
from lifecycle.tracking import configure_mlflow

# Before any MLflow call: the runtime's MLflow, or the team's own server (registry.tracking_uri).
print(
    "MLflow:",
    configure_mlflow(
        tracking_uri=params["tracking_uri"],
        registry_uri=params["registry_uri"],
        secret_scope=params["tracking_secret_scope"],
        secrets=dbutils.secrets,
    ),
)

result = score_partition(
    spark,
    model_name=params["model_name"],
    model_version=params["model_version"],
    input_path=params["input_path"],
    output_path=params["output_path"],
    date=params["date"],
    features=[f.strip() for f in params["features"].split(",") if f.strip()],
    id_column=params["id_column"],
)
print(json.dumps(result, indent=2))
dbutils.notebook.exit(json.dumps(result))
