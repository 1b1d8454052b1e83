# Databricks notebook source
# ruff: noqa: F821
import json
import os
from concurrent.futures import ThreadPoolExecutor


def work(i):
    print(f"worker {i} sees {os.environ.get('RUN_TAG')}", flush=True)
    return i * i


with ThreadPoolExecutor(max_workers=2) as pool:
    squares = list(pool.map(work, range(3)))

ctx = dbutils.notebook.entry_point.getDbutils().notebook().getContext()
dbutils.notebook.exit(
    json.dumps(
        {
            "squares": squares,
            "path": ctx.notebookPath().get(),
            "job_id": ctx.jobId().getOrElse(None),
            "tags": ctx.tags(),
        }
    )
)
