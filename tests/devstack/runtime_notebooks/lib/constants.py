# Databricks notebook source
HELPER_NAME = "helpers-from-run"
