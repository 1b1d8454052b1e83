# Databricks notebook source
# First task of a workflow: hands a value to the next task through task values.
dbutils.widgets.text("factor", "1")
factor = int(dbutils.widgets.get("factor"))
dbutils.jobs.taskValues.set(key="answer", value=21 * factor)
print("produced", 21 * factor)
