# Databricks notebook source
# ruff: noqa: F821
dbutils.widgets.text("min_n", "0")
df = spark.range(10).withColumnRenamed("id", "n")
df.createOrReplaceTempView("numbers")
display(df.limit(3))

# COMMAND ----------

# MAGIC %sql
# MAGIC SELECT count(*) AS total, sum(n) AS total_sum FROM numbers WHERE n >= ${min_n}

# COMMAND ----------

total = spark.sql("SELECT sum(n) AS s FROM numbers").collect()[0]["s"]
dbutils.notebook.exit(str(total))
