"""Repos API 2.0 (Git folders), and the git checkouts job runs use for ``git_source``.

Creating a repo really clones its URL (a local path, ``file://`` URL or a URL mapped in
``DEVSTACK_GIT_MIRRORS``; see :mod:`devstack.workspace.gitutil`) into
``<data dir>/repos/<repo id>``; updating it fetches and checks out the branch, tag or commit.
The repo's files then appear in the workspace tree under its path.

This module also publishes ``ctx.services["git"]``, a
:class:`~devstack.workspace.gitutil.GitSourceCheckouts`, for notebook tasks with source GIT.
"""

from __future__ import annotations

import posixpath
import shutil
import threading
import time
import uuid
from collections import defaultdict
from urllib.parse import urlsplit

from devstack.workspace import gitutil
from devstack.workspace.context import WorkspaceContext
from devstack.workspace.http import Request, already_exists, invalid, not_found
from devstack.workspace.store import dumps, loads
from devstack.workspace.workspace_objects import normalize_path

SCHEMA = """
CREATE TABLE IF NOT EXISTS repos (
    id              INTEGER PRIMARY KEY REFERENCES workspace_objects(object_id) ON DELETE CASCADE,
    url             TEXT NOT NULL,
    provider        TEXT NOT NULL,
    branch          TEXT,
    head_commit_id  TEXT NOT NULL,
    sparse_checkout TEXT,
    created_at      INTEGER NOT NULL
);
"""

# Accepted case-insensitively, answered in Databricks' spelling.
PROVIDERS = {
    p.lower(): p
    for p in (
        "gitHub",
        "bitbucketCloud",
        "gitLab",
        "azureDevOpsServices",
        "gitHubEnterprise",
        "bitbucketServer",
        "gitLabEnterpriseEdition",
        "awsCodeCommit",
    )
}
# The emulator's one user: repos without a path go to /Repos/<user>/<repo name>.
CURRENT_USER = "devstack-user"
PAGE_SIZE = 100


def repo_info(row) -> dict:
    info = {
        "id": row["id"],
        "path": row["path"],
        "url": row["url"],
        "provider": row["provider"],
        "head_commit_id": row["head_commit_id"],
    }
    if row["branch"]:
        info["branch"] = row["branch"]
    sparse = loads(row["sparse_checkout"])
    if sparse:
        info["sparse_checkout"] = sparse
    return info


def default_path(url: str) -> str:
    name = posixpath.basename(urlsplit(url).path.rstrip("/")) or "repo"
    if name.endswith(".git"):
        name = name[:-4]
    return f"/Repos/{CURRENT_USER}/{name}"


def register(router, ctx: WorkspaceContext) -> None:
    store = ctx.store
    store.ensure_schema(SCHEMA)
    tree = ctx.services["workspace"]
    ctx.services["git"] = gitutil.GitSourceCheckouts(ctx.data_dir / "git-cache")
    # One git operation at a time per repo checkout.
    guard = threading.Lock()
    locks: dict[int, threading.Lock] = defaultdict(threading.Lock)

    def repo_lock(repo_id: int) -> threading.Lock:
        with guard:
            return locks[repo_id]

    def repo_id_param(req: Request) -> int:
        raw = req.path_params["repo_id"]
        if not raw.isdigit():
            raise invalid(f"Invalid value for field repo_id: expected a numeric repo id, got {raw!r}")
        return int(raw)

    def get_row(repo_id: int):
        row = store.one(
            "SELECT r.*, w.path AS path FROM repos r JOIN workspace_objects w ON w.object_id = r.id "
            "WHERE r.id = ?",
            (repo_id,),
        )
        if row is None:
            raise not_found(f"Repo {repo_id} does not exist. List repos with GET /api/2.0/repos.")
        return row

    def create(req: Request):
        url = req.require("url", str).strip()
        if not url:
            raise invalid("Invalid value for field url: it is empty.")
        provider_raw = req.require("provider", str)
        provider = PROVIDERS.get(provider_raw.lower())
        if provider is None:
            raise invalid(
                f"Invalid value for field provider: {provider_raw!r}; expected one of {', '.join(PROVIDERS.values())}."
            )
        path = normalize_path(req.get("path", str) or default_path(url))
        parts = path.split("/")[1:]
        if parts[0] == "Repos" and len(parts) != 3:
            raise invalid(
                f"Invalid value for field path: {path}; a repo in /Repos must be at /Repos/<folder>/<name>."
            )
        sparse = req.get("sparse_checkout", dict)
        if tree.lookup(path) is not None:
            raise already_exists(f"Path ({path}) already exists. Pick another path or delete it first.")
        staging = ctx.data_dir / "repos" / f".clone-{uuid.uuid4().hex[:12]}"
        staging.parent.mkdir(parents=True, exist_ok=True)
        # Clone before touching the tree: a bad URL leaves nothing behind.
        gitutil.clone(url, staging)
        try:
            branch, sha = gitutil.head(staging)
            with store.tx() as conn:
                repo_id = tree.add_repo_node(conn, path)
                conn.execute(
                    "INSERT INTO repos (id, url, provider, branch, head_commit_id, sparse_checkout, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        repo_id,
                        url,
                        provider,
                        branch,
                        sha,
                        dumps(sparse) if sparse else None,
                        int(time.time() * 1000),
                    ),
                )
                staging.rename(tree.repo_dir(repo_id))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return repo_info(get_row(repo_id))

    def get(req: Request):
        return repo_info(get_row(repo_id_param(req)))

    def list_(req: Request):
        prefix = req.get("path_prefix", str)
        prefix = normalize_path(prefix, "path_prefix") if prefix else "/Repos"
        offset = 0
        token = req.get("next_page_token", str)
        if token:
            if not token.isdigit():
                raise invalid(f"Invalid value for field next_page_token: {token!r}")
            offset = int(token)
        rows = store.all(
            "SELECT r.*, w.path AS path FROM repos r JOIN workspace_objects w ON w.object_id = r.id "
            "WHERE substr(w.path, 1, length(?)) = ? ORDER BY w.path LIMIT ? OFFSET ?",
            (prefix, prefix, PAGE_SIZE + 1, offset),
        )
        body: dict = {}
        if rows:
            body["repos"] = [repo_info(r) for r in rows[:PAGE_SIZE]]
        if len(rows) > PAGE_SIZE:
            body["next_page_token"] = str(offset + PAGE_SIZE)
        return body

    def update(req: Request):
        repo_id = repo_id_param(req)
        refs = {f: req.get(f, str) for f in ("branch", "tag", "commit")}
        given = {f: v for f, v in refs.items() if v is not None}
        if len(given) > 1:
            raise invalid(f"Give only one of branch, tag or commit; got {', '.join(sorted(given))}.")
        for field, value in given.items():
            gitutil.check_ref_name(field, value)
        sparse = req.get("sparse_checkout", dict)
        with repo_lock(repo_id):
            row = get_row(repo_id)
            checkout = tree.repo_dir(repo_id)
            gitutil.checkout_ref(checkout, row["url"], **given)
            branch, sha = gitutil.head(checkout)
            with store.tx() as conn:
                conn.execute(
                    "UPDATE repos SET branch = ?, head_commit_id = ?, sparse_checkout = COALESCE(?, sparse_checkout) "
                    "WHERE id = ?",
                    (branch, sha, dumps(sparse) if sparse else None, repo_id),
                )
        return repo_info(get_row(repo_id))

    def delete(req: Request):
        repo_id = repo_id_param(req)
        with repo_lock(repo_id):
            tree.delete(get_row(repo_id)["path"], recursive=True)
        return {}

    router.add("POST", "2.0", "/repos", create)
    router.add("GET", "2.0", "/repos", list_)
    # The Airflow provider calls "2.0/repos/" + "/" + id; Databricks accepts the double slash.
    for item in ("/repos/{repo_id}", "/repos//{repo_id}"):
        router.add("GET", "2.0", item, get)
        router.add("PATCH", "2.0", item, update)
        router.add("DELETE", "2.0", item, delete)
