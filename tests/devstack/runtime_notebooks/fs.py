# Databricks notebook source
# ruff: noqa: F821
import json

dbutils.fs.mkdirs("dbfs:/mlops/in")
dbutils.fs.put("dbfs:/mlops/in/a.csv", "x,y\n1,2\n", True)
dbutils.fs.cp("dbfs:/mlops/in", "/Volumes/dev/ml/raw/copy", True)
dbutils.fs.mv("/Volumes/dev/ml/raw/copy/a.csv", "/Volumes/dev/ml/raw/copy/b.csv")
listing = [(f.name, f.size) for f in dbutils.fs.ls("/Volumes/dev/ml/raw/")]
head = dbutils.fs.head("/dbfs/mlops/in/a.csv", 3)
dbutils.fs.rm("dbfs:/mlops/in", True)
try:
    dbutils.fs.ls("dbfs:/mlops/in")
    missing_error = None
except FileNotFoundError as exc:
    missing_error = str(exc)
dbutils.notebook.exit(json.dumps({"listing": listing, "head": head, "missing_error": missing_error}))
