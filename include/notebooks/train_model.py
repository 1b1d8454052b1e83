# Databricks notebook source
# MAGIC %md
# MAGIC # train_model
# MAGIC Trains a scikit-learn pipeline on the curated data, logs params, metrics, signature and
# MAGIC input example to MLflow, and registers the model as a new version of `model_name`.
# MAGIC
# MAGIC | widget | meaning |
# MAGIC |---|---|
# MAGIC | `curated_path` | the curated Parquet from prepare_data (required) |
# MAGIC | `features`, `target` | columns (required) |
# MAGIC | `model_name` | registry name, e.g. dev.ml.diabetes (required) |
# MAGIC | `experiment` | MLflow experiment path (required) |
# MAGIC | `hyperparameters` | JSON, e.g. {"model_type": "ridge", "alpha": 1.0} (required) |
# MAGIC | `registry_uri` | e.g. databricks (legacy workspace registry); empty = the runtime's default, databricks-uc |
# MAGIC | `tracking_uri` | a self-hosted MLflow server (http[s]://) to track and register in; empty = the workspace's MLflow |
# MAGIC | `tracking_secret_scope` | secret scope with that server's sign-in (`mlflow-tracking-token`, or `-username` and `-password`) |
# MAGIC | `lineage` | JSON of tags for the run (DAG run, git sha, data date) |
# MAGIC
# MAGIC A retried or cleared training of the same DAG run (the `lineage` tags `mlops_dag_id` and
# MAGIC `mlops_dag_run_id`) registers nothing: it returns the version that DAG run registered.
# MAGIC
# MAGIC Exits with JSON: model_name, version, run_id, metrics, reused.

# COMMAND ----------

dbutils.widgets.text("curated_path", "")
dbutils.widgets.text("features", "")
dbutils.widgets.text("target", "")
dbutils.widgets.text("model_name", "")
dbutils.widgets.text("experiment", "")
dbutils.widgets.text("hyperparameters", "")
dbutils.widgets.text("registry_uri", "")
dbutils.widgets.text("tracking_uri", "")
dbutils.widgets.text("tracking_secret_scope", "")
dbutils.widgets.text("lineage", "{}")

import json

params = {
    name: dbutils.widgets.get(name).strip()
    for name in (
        "curated_path",
        "features",
        "target",
        "model_name",
        "experiment",
        "hyperparameters",
        "registry_uri",
        "tracking_uri",
        "tracking_secret_scope",
        "lineage",
    )
}
missing = [
    n
    for n in ("curated_path", "features", "target", "model_name", "experiment", "hyperparameters")
    if not params[n]
]
assert not missing, f"Required widget(s) not set: {missing}. Pass them as notebook parameters."
features = [f.strip() for f in params["features"].split(",") if f.strip()]
hyperparameters = json.loads(params["hyperparameters"])
lineage = json.loads(params["lineage"] or "{}")

# COMMAND ----------

from lifecycle.tracking import configure_mlflow
from lifecycle.training import train_and_register

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

frame = spark.read.parquet(params["curated_path"]).toPandas()
result = train_and_register(
    frame,
    features=features,
    target=params["target"],
    hyperparameters=hyperparameters,
    model_name=params["model_name"],
    experiment=params["experiment"],
    tags=lineage,
)
print(json.dumps(result, indent=2))
dbutils.notebook.exit(json.dumps(result))
