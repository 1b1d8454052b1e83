# Databricks notebook source
# ruff: noqa: F821
from pyspark.sql import SparkSession

# Library code often builds its own session handle: it must get the cluster's session.
session = SparkSession.builder.getOrCreate()
assert isinstance(spark, SparkSession), "spark must pass isinstance checks in library code"
conf = session.sparkContext.getConf()
dbutils.notebook.exit(
    f"{session.conf.get('spark.sql.session.timeZone')} {conf.get('spark.master')} {conf.get('spark.ui.enabled')}"
)
