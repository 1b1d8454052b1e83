# Databricks notebook source
# MAGIC %run ./constants

# COMMAND ----------


def double(x):
    return 2 * x
