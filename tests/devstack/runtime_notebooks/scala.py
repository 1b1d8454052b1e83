# Databricks notebook source
print("python cell runs")

# COMMAND ----------

# MAGIC %scala
# MAGIC println("no scala here")
