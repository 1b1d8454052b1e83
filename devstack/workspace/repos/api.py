"""Repos API 2.0 over HTTP: ``/api/2.0/repos`` and ``/api/2.0/repos/{repo_id}``."""

from __future__ import annotations

from devstack.workspace.http import Request, invalid
from devstack.workspace.iam.backend import user_name_of
from devstack.workspace.repos.backend import ReposBackend, default_path
from devstack.workspace.workspace_files.backend import normalize_path


class ReposApi:
    def __init__(self, repos: ReposBackend):
        self.repos = repos

    def create(self, req: Request):
        url = req.require("url", str)
        provider = req.require("provider", str)
        path = normalize_path(req.get("path", str) or default_path(url.strip(), user_name_of(req.principal)))
        return self.repos.create(url, provider, path, req.get("sparse_checkout", dict))

    def get(self, req: Request):
        return self.repos.get(_repo_id(req))

    def list(self, req: Request):
        prefix = req.get("path_prefix", str)
        prefix = normalize_path(prefix, "path_prefix") if prefix else "/Repos"
        offset = 0
        token = req.get("next_page_token", str)
        if token:
            if not token.isdigit():
                raise invalid(f"Invalid value for field next_page_token: {token!r}")
            offset = int(token)
        repos, following = self.repos.list(prefix, offset)
        body: dict = {}
        if repos:
            body["repos"] = repos
        if following is not None:
            body["next_page_token"] = str(following)
        return body

    def update(self, req: Request):
        refs = {f: req.get(f, str) for f in ("branch", "tag", "commit")}
        return self.repos.update(_repo_id(req), **refs, sparse_checkout=req.get("sparse_checkout", dict))

    def delete(self, req: Request):
        self.repos.delete(_repo_id(req))
        return {}


def _repo_id(req: Request) -> int:
    raw = req.path_params["repo_id"]
    if not raw.isdigit():
        raise invalid(f"Invalid value for field repo_id: expected a numeric repo id, got {raw!r}")
    return int(raw)
