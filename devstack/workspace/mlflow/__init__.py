"""The workspace's MLflow, as Databricks serves it: tracking and the Unity Catalog model registry."""
