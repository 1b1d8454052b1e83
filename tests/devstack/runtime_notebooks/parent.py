# Databricks notebook source
# ruff: noqa: F821
dbutils.widgets.text("timeout", "30")
child_value = dbutils.notebook.run("./child", int(dbutils.widgets.get("timeout")), {"n": "3"})
# The child ran in a fresh namespace: its variables do not leak into ours.
assert "child_secret_local" not in globals(), "child namespace leaked into the parent"
dbutils.notebook.exit(f"child said {child_value}")
