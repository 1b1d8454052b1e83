# Databricks notebook source
# ruff: noqa: F821
# Spark reads and writes DBFS and Volumes paths, which land under the workspace data dir.
dbutils.fs.put("/Volumes/dev/ml/landing/rows.csv", "a,b\n1,x\n2,y\n3,z\n", True)
raw = spark.read.option("header", True).csv("/Volumes/dev/ml/landing/rows.csv")
raw.write.mode("overwrite").parquet("dbfs:/curated/rows")
back = spark.read.parquet("/dbfs/curated/rows")
dbutils.notebook.exit(str(back.count()))
