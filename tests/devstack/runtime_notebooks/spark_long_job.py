# Databricks notebook source
# ruff: noqa: F821
# A Spark job that runs far longer than the test waits: only cancel stops it.
import time


def slow(rows):
    for row in rows:
        time.sleep(0.5)
        yield row


print("starting long job", flush=True)
spark.sparkContext.parallelize(range(1000), 2).mapPartitions(slow).count()
