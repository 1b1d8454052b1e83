# Databricks notebook source
# ruff: noqa: F821
dbutils.notebook.run("./sleep", 1, {"seconds": "60"})
