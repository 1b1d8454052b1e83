# Databricks notebook source
# ruff: noqa: F821
import os
import time

dbutils.widgets.text("tag", "")
tag = dbutils.widgets.get("tag")
for i in range(5):
    print(f"{tag} line {i}", flush=True)
    time.sleep(0.02)
dbutils.notebook.exit(os.environ.get("RUN_TAG", "<unset>"))
