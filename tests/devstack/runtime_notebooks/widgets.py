# Databricks notebook source
# ruff: noqa: F821
# MAGIC %md
# MAGIC # Widgets
# MAGIC Parameters: `model` (text), `env` (dropdown), `threshold` (text).

# COMMAND ----------

import json

dbutils.widgets.text("model", "diabetes", "Model name")
dbutils.widgets.dropdown("env", "dev", ["dev", "staging", "prod"], "Environment")
dbutils.widgets.text("threshold", "0.5")

# COMMAND ----------

values = {
    "model": dbutils.widgets.get("model"),
    "env": dbutils.widgets.get("env"),
    "threshold": getArgument("threshold"),
    "all": dbutils.widgets.getAll(),
}
print(f"scoring {values['model']} in {values['env']}")
dbutils.notebook.exit(json.dumps(values))

# COMMAND ----------

raise AssertionError("cells after dbutils.notebook.exit must not run")
