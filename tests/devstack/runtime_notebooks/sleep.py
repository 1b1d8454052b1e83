# Databricks notebook source
# ruff: noqa: F821
import time

dbutils.widgets.text("seconds", "60")
print("sleeping", flush=True)
time.sleep(float(dbutils.widgets.get("seconds")))
dbutils.notebook.exit("woke up")
