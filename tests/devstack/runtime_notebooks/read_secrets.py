# Databricks notebook source
# ruff: noqa: F821
password = dbutils.secrets.get("db", "password")
print(f"connecting with password={password}")
keys = sorted(s.key for s in dbutils.secrets.list("db"))
scopes = sorted(s.name for s in dbutils.secrets.listScopes())
print(f"keys={keys} scopes={scopes}")
assert password == "s3cr3t-Pa55", "secret value must be the real one inside the notebook"
dbutils.notebook.exit(",".join(keys))
