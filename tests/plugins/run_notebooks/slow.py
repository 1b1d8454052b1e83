# Databricks notebook source
# Runs until the test creates the release file: a run that outlives the Airflow worker.
dbutils.widgets.text("release_file", "")
import json
import os
import time

release = dbutils.widgets.get("release_file")
started = time.monotonic()
while not os.path.exists(release) and time.monotonic() - started < 240:
    time.sleep(0.5)
assert os.path.exists(release), f"{release} never appeared"
dbutils.notebook.exit(json.dumps({"released": True}))
