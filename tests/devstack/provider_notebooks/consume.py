# Databricks notebook source
# Second task of a workflow: reads the value the upstream task set, exits with it.
dbutils.widgets.text("upstream_task_key", "")
answer = dbutils.jobs.taskValues.get(
    taskKey=dbutils.widgets.get("upstream_task_key"), key="answer", debugValue=-1
)
print("consumed", answer)
dbutils.notebook.exit(str(answer))
