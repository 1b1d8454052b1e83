# Databricks notebook source
# ruff: noqa: F821
# Spark reads and writes DBFS and Volumes paths, which land under the workspace data dir.
import json

dbutils.fs.put("/Volumes/dev/ml/landing/rows.csv", "a,b\n1,x\n2,y\n3,z\n", True)
raw = spark.read.option("header", True).csv("/Volumes/dev/ml/landing/rows.csv")
raw.write.mode("overwrite").parquet("dbfs:/curated/rows")
back = spark.read.parquet("/dbfs/curated/rows")

# COMMAND ----------

# SQL and the Hadoop FileSystem API see dbfs:/ too.
via_sql = spark.sql("SELECT count(*) AS n FROM parquet.`dbfs:/curated/rows`").collect()[0]["n"]
jvm = spark.sparkContext._jvm
root = jvm.org.apache.hadoop.fs.Path("dbfs:/curated")
fs = root.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
names = sorted(status.getPath().getName() for status in fs.listStatus(root))
dbutils.notebook.exit(json.dumps({"count": back.count(), "sql": via_sql, "listed": names}))
