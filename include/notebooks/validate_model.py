# Databricks notebook source
# MAGIC %md
# MAGIC # validate_model
# MAGIC Pre-prod test on held-out data: scores the candidate AND the current champion on the same
# MAGIC rows, logs both to one MLflow evaluation run, and exits with their metrics.
# MAGIC
# MAGIC | widget | meaning |
# MAGIC |---|---|
# MAGIC | `holdout_path` | held-out CSV with features and target (required) |
# MAGIC | `features`, `target` | columns (required) |
# MAGIC | `candidate_model_name`, `candidate_version` | the candidate (required) |
# MAGIC | `champion_model_name`, `champion_alias` | where the champion lives (required) |
# MAGIC | `experiment` | MLflow experiment for the evaluation run (required) |
# MAGIC | `registry_uri` | e.g. databricks (legacy workspace registry); empty = the runtime's default, databricks-uc |
# MAGIC
# MAGIC Exits with JSON: candidate_version, candidate_metrics, champion_version and
# MAGIC champion_metrics (null before the first release), evaluation_run_id.

# COMMAND ----------

dbutils.widgets.text("holdout_path", "")
dbutils.widgets.text("features", "")
dbutils.widgets.text("target", "")
dbutils.widgets.text("candidate_model_name", "")
dbutils.widgets.text("candidate_version", "")
dbutils.widgets.text("champion_model_name", "")
dbutils.widgets.text("champion_alias", "champion")
dbutils.widgets.text("experiment", "")
dbutils.widgets.text("registry_uri", "")

import json

params = {
    name: dbutils.widgets.get(name).strip()
    for name in (
        "holdout_path",
        "features",
        "target",
        "candidate_model_name",
        "candidate_version",
        "champion_model_name",
        "champion_alias",
        "experiment",
        "registry_uri",
    )
}
missing = [n for n, v in params.items() if not v and n != "registry_uri"]
assert not missing, f"Required widget(s) not set: {missing}. Pass them as notebook parameters."
features = [f.strip() for f in params["features"].split(",") if f.strip()]

# COMMAND ----------

import mlflow
from lifecycle.evaluation import validate_candidate

if params["registry_uri"]:
    mlflow.set_registry_uri(params["registry_uri"])

holdout = spark.read.option("header", True).option("inferSchema", True).csv(params["holdout_path"]).toPandas()
result = validate_candidate(
    holdout,
    features=features,
    target=params["target"],
    candidate_model_name=params["candidate_model_name"],
    candidate_version=params["candidate_version"],
    champion_model_name=params["champion_model_name"],
    champion_alias=params["champion_alias"],
    experiment=params["experiment"],
)
print(json.dumps(result, indent=2))
dbutils.notebook.exit(json.dumps(result))
