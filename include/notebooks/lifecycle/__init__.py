"""The logic of the lifecycle notebooks, as plain functions that run and test without a notebook.

The notebooks in include/notebooks/ read their widgets and call these functions; on Databricks
this folder sits next to them (workspace files or a Git folder), so ``import lifecycle`` works.
"""
