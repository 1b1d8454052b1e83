# Databricks notebook source
# MAGIC %run ./cycle_b
