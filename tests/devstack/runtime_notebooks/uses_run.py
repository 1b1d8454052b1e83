# Databricks notebook source
# MAGIC %run ./lib/helpers

# COMMAND ----------

# MAGIC %pip install some-package-that-does-not-exist

# COMMAND ----------

# ruff: noqa: F821
dbutils.notebook.exit(f"{double(21)} {HELPER_NAME}")
