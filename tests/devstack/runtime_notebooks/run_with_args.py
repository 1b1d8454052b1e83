# Databricks notebook source
# MAGIC %run ./lib/greet $who="data team"

# COMMAND ----------

# MAGIC %fs mkdirs dbfs:/magic/dir

# COMMAND ----------

# MAGIC %fs ls dbfs:/magic

# COMMAND ----------

# ruff: noqa: F821
import pandas as pd

display(pd.DataFrame({"model": ["ridge", "forest"], "rmse": [55.1, 51.9]}))
dbutils.notebook.exit(GREETING)
