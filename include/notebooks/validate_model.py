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
# MAGIC | `tracking_uri` | a self-hosted MLflow server (http[s]://) to track and register in; empty = the workspace's MLflow |
# MAGIC | `tracking_secret_scope` | secret scope with that server's sign-in (`mlflow-tracking-token`, or `-username` and `-password`) |
# MAGIC | `smoke_rows` | how many holdout rows (and the candidate's predictions on them) to return for the serving smoke check; 0 or empty = none |
# MAGIC
# MAGIC Exits with JSON: candidate_version, candidate_metrics, champion_version and
# MAGIC champion_metrics (null before the first release), evaluation_run_id, smoke_rows and
# MAGIC smoke_predictions.

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
dbutils.widgets.text("tracking_uri", "")
dbutils.widgets.text("tracking_secret_scope", "")
dbutils.widgets.text("smoke_rows", "0")

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
        "tracking_uri",
        "tracking_secret_scope",
        "smoke_rows",
    )
}
OPTIONAL = ("registry_uri", "tracking_uri", "tracking_secret_scope", "smoke_rows")
missing = [n for n, v in params.items() if not v and n not in OPTIONAL]
assert not missing, f"Required widget(s) not set: {missing}. Pass them as notebook parameters."
features = [f.strip() for f in params["features"].split(",") if f.strip()]
assert (params["smoke_rows"] or "0").isdigit(), (
    f"smoke_rows must be a whole number, got {params['smoke_rows']!r}."
)

# COMMAND ----------

from lifecycle.evaluation import validate_candidate
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
    smoke_rows=int(params["smoke_rows"] or 0),
)
print(json.dumps({k: v for k, v in result.items() if not k.startswith("smoke_")}, indent=2))
print(f"{len(result['smoke_rows'])} holdout rows and their predictions returned for the serving smoke check.")
dbutils.notebook.exit(json.dumps(result))
