# Databricks notebook source
# Fails on its first run and succeeds on the next: a transient fault that a retry must fix.
dbutils.widgets.text("marker_dir", "")
import json
import os

marker = os.path.join(dbutils.widgets.get("marker_dir"), "failed-once")

# COMMAND ----------

if not os.path.exists(marker):
    open(marker, "w").close()
    raise RuntimeError("flaky: the first run fails on purpose")
dbutils.notebook.exit(json.dumps({"answer": 42, "second_run": True}))
