"""Secrets API 2.0: Databricks-backed secret scopes, secrets and scope ACLs (backend.py holds them,
api.py answers /api/2.0/secrets/*)."""
