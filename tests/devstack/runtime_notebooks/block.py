# Databricks notebook source
# ruff: noqa: F821
# A notebook stuck in a child process: only killing the cluster stops it.
import subprocess

dbutils.widgets.text("pid_file", "")
proc = subprocess.Popen(["sleep", "300"])
with open(dbutils.widgets.get("pid_file"), "w") as fh:
    fh.write(str(proc.pid))
proc.wait()
