# Databricks notebook source
print("before the failure")

# COMMAND ----------


def validate(rows):
    if rows < 10:
        raise ValueError(f"bad input: only {rows} rows")


validate(3)
