# Databricks notebook source
# ruff: noqa: F821
import json

best = dbutils.jobs.taskValues.get("train", "best_run", debugValue={"run_id": "debug"})
fallback = dbutils.jobs.taskValues.get("train", "missing_key", default="fallback")
dbutils.notebook.exit(json.dumps({"best": best, "fallback": fallback}))
