# Databricks notebook source
# Fails on purpose, so tests can check the error reaches the Airflow task log.
rows = 0

# COMMAND ----------

if rows == 0:
    raise ValueError("provider-test: the input table dbfs:/landing/empty.csv has no rows")
