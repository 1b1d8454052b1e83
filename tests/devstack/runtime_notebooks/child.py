# Databricks notebook source
# ruff: noqa: F821
dbutils.widgets.text("n", "1")
child_secret_local = 1
dbutils.notebook.exit(str(int(dbutils.widgets.get("n")) * 10))
