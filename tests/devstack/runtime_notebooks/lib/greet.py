# Databricks notebook source
# ruff: noqa: F821
dbutils.widgets.text("who", "nobody")
GREETING = f"hello {dbutils.widgets.get('who')}"
