# Databricks notebook source
# Parameters: greeting (text), who (text). Exits with "<greeting>, <who>".
dbutils.widgets.text("greeting", "hello")
dbutils.widgets.text("who", "nobody")

# COMMAND ----------

message = f"{dbutils.widgets.get('greeting')}, {dbutils.widgets.get('who')}"
print(message)
dbutils.notebook.exit(message)
