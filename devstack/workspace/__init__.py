"""An emulated Databricks workspace: the REST API the real clients speak, with real execution.

Run one with ``python -m devstack.workspace --name dev --port 8001 --data-dir DIR --token T``.
"""
