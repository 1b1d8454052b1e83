"""Local stand-ins for the cloud: emulated Databricks workspaces, MLflow, and a stack launcher."""
