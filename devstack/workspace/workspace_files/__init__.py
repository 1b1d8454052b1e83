"""Workspace API 2.0: the notebooks, files and folders of the workspace tree (backend.py holds the
tree, api.py the /api/2.0/workspace/* calls)."""
