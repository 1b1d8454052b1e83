# Databricks notebook source
# ruff: noqa: F821
dbutils.widgets.text("declared", "x")
dbutils.widgets.get("not_declared")
