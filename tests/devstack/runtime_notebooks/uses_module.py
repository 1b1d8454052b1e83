# Databricks notebook source
# ruff: noqa: F821
from rtlib.scaling import scale

dbutils.notebook.exit(",".join(str(v) for v in scale([1, 2, 3], 10)))
