"""Repos API 2.0 (Git folders) and the git checkouts of job runs' git_source: backend.py holds
both, api.py answers /api/2.0/repos, git.py drives the ``git`` CLI."""
