"""Git folders (the state behind the Repos API 2.0), and the git checkouts job runs use for
``git_source``.

Creating a repo really clones its URL (a local path, ``file://`` URL or a URL mapped in
``DEVSTACK_GIT_MIRRORS``; see :mod:`devstack.workspace.repos.git`) into
``<data dir>/repos/<repo id>``; updating it fetches and checks out the branch, tag or commit.
The repo's files then appear in the workspace tree under its path.

:class:`GitSourceCheckouts` serves notebook and Python file tasks with source GIT: the run
launcher gets it through its constructor.
"""

from __future__ import annotations

import posixpath
import shutil
import threading
import time
import uuid
from collections import defaultdict
from hashlib import sha1
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from devstack.workspace.http import already_exists, invalid, not_found
from devstack.workspace.iam.backend import ADMIN_USER
from devstack.workspace.repos import git
from devstack.workspace.store import Store, dumps, loads
from devstack.workspace.workspace_files.backend import WorkspaceTree

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


def default_path(url: str, user: str = ADMIN_USER) -> str:
    """Where a repo created without a path goes: /Repos/<the caller's user name>/<repo name>."""
    name = posixpath.basename(urlsplit(url).path.rstrip("/")) or "repo"
    if name.endswith(".git"):
        name = name[:-4]
    return f"/Repos/{user}/{name}"


_SELECT = "SELECT r.*, w.path AS path FROM repos r JOIN workspace_objects w ON w.object_id = r.id "


class ReposBackend:
    """The Git folders of one workspace, each a ``REPO`` node of the workspace tree.

    :param store: the workspace's store (table ``repos``).
    :param tree: the workspace tree the Git folders appear in.
    """

    def __init__(self, store: Store, tree: WorkspaceTree):
        self.store = store
        self.tree = tree
        store.ensure_schema(SCHEMA)
        # One git operation at a time per repo checkout.
        self._guard = threading.Lock()
        self._locks: dict[int, threading.Lock] = defaultdict(threading.Lock)

    def _repo_lock(self, repo_id: int) -> threading.Lock:
        with self._guard:
            return self._locks[repo_id]

    def _row(self, repo_id: int):
        row = self.store.one(_SELECT + "WHERE r.id = ?", (repo_id,))
        if row is None:
            raise not_found(f"Repo {repo_id} does not exist. List repos with GET /api/2.0/repos.")
        return row

    def get(self, repo_id: int) -> dict[str, Any]:
        return repo_info(self._row(repo_id))

    def create(self, url: str, provider: str, path: str, sparse_checkout: dict | None) -> dict[str, Any]:
        """Clone ``url`` into a new Git folder at workspace ``path`` (already normalized)."""
        url = url.strip()
        if not url:
            raise invalid("Invalid value for field url: it is empty.")
        spelled = PROVIDERS.get(provider.lower())
        if spelled is None:
            raise invalid(
                f"Invalid value for field provider: {provider!r}; expected one of {', '.join(PROVIDERS.values())}."
            )
        parts = path.split("/")[1:]
        if parts[0] == "Repos" and len(parts) != 3:
            raise invalid(
                f"Invalid value for field path: {path}; a repo in /Repos must be at /Repos/<folder>/<name>."
            )
        if self.tree.lookup(path) is not None:
            raise already_exists(f"Path ({path}) already exists. Pick another path or delete it first.")
        staging = self.tree.data_dir / "repos" / f".clone-{uuid.uuid4().hex[:12]}"
        staging.parent.mkdir(parents=True, exist_ok=True)
        # Clone before touching the tree: a bad URL leaves nothing behind.
        git.clone(url, staging)
        try:
            branch, sha = git.head(staging)
            with self.store.tx() as conn:
                repo_id = self.tree.add_repo_node(conn, path)
                conn.execute(
                    "INSERT INTO repos (id, url, provider, branch, head_commit_id, sparse_checkout, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        repo_id,
                        url,
                        spelled,
                        branch,
                        sha,
                        dumps(sparse_checkout) if sparse_checkout else None,
                        int(time.time() * 1000),
                    ),
                )
                staging.rename(self.tree.repo_dir(repo_id))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return self.get(repo_id)

    def list(self, path_prefix: str, offset: int) -> tuple[list[dict[str, Any]], int | None]:
        """One page of the repos under ``path_prefix``, and the offset of the next page (or None)."""
        rows = self.store.all(
            _SELECT + "WHERE substr(w.path, 1, length(?)) = ? ORDER BY w.path LIMIT ? OFFSET ?",
            (path_prefix, path_prefix, PAGE_SIZE + 1, offset),
        )
        following = offset + PAGE_SIZE if len(rows) > PAGE_SIZE else None
        return [repo_info(r) for r in rows[:PAGE_SIZE]], following

    def update(
        self,
        repo_id: int,
        *,
        branch: str | None = None,
        tag: str | None = None,
        commit: str | None = None,
        sparse_checkout: dict | None = None,
    ) -> dict[str, Any]:
        """Fetch, then check out a branch, a tag or a commit (or pull the current branch)."""
        given = {f: v for f, v in (("branch", branch), ("tag", tag), ("commit", commit)) if v is not None}
        if len(given) > 1:
            raise invalid(f"Give only one of branch, tag or commit; got {', '.join(sorted(given))}.")
        for field, value in given.items():
            git.check_ref_name(field, value)
        with self._repo_lock(repo_id):
            row = self._row(repo_id)
            checkout = self.tree.repo_dir(repo_id)
            git.checkout_ref(checkout, row["url"], **given)
            head_branch, sha = git.head(checkout)
            with self.store.tx() as conn:
                conn.execute(
                    "UPDATE repos SET branch = ?, head_commit_id = ?, sparse_checkout = COALESCE(?, sparse_checkout) "
                    "WHERE id = ?",
                    (head_branch, sha, dumps(sparse_checkout) if sparse_checkout else None, repo_id),
                )
        return self.get(repo_id)

    def delete(self, repo_id: int) -> None:
        with self._repo_lock(repo_id):
            self.tree.delete(self._row(repo_id)["path"], recursive=True)


# --------------------------------------------------------------------------- git_source of job runs


class GitSourceCheckouts:
    """Local checkouts of a Jobs API ``git_source``, one per commit (the run launcher's git).

    ``checkout(git_source)`` resolves git_branch / git_tag / git_commit of git_url to a commit
    and returns a directory holding exactly that commit's tree (plus .git). Checkouts live in
    ``<cache_dir>/checkouts/<sha>`` and are shared by every run of that commit; a bare mirror
    per URL in ``<cache_dir>/mirrors`` is fetched when a branch or tag must be resolved.
    Thread-safe: concurrent calls for one URL or one commit wait for each other.
    """

    def __init__(self, cache_dir: Path):
        self.cache_dir = cache_dir
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = defaultdict(threading.Lock)

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks[key]

    def checkout(self, git_source: dict[str, Any]) -> Path:
        if not isinstance(git_source, dict):
            raise invalid(f"Invalid value for field git_source: expected an object, got {git_source!r}")
        url = git_source.get("git_url")
        if not isinstance(url, str) or not url.strip():
            raise invalid("Missing required field: git_source.git_url")
        refs = {
            k: git_source[k] for k in ("git_branch", "git_tag", "git_commit") if git_source.get(k) is not None
        }
        if len(refs) != 1:
            raise invalid(
                f"git_source of {url} needs exactly one of git_branch, git_tag or git_commit; got {sorted(refs) or 'none'}."
            )
        field, value = next(iter(refs.items()))
        ref = git.check_ref_name(f"git_source.{field}", value)
        sha = self._resolve(url, field, ref)
        return self._materialize(url, sha)

    def _mirror(self, url: str) -> Path:
        return self.cache_dir / "mirrors" / (sha1(git.url_key(url).encode()).hexdigest()[:16] + ".git")

    def _resolve(self, url: str, field: str, ref: str) -> str:
        mirror = self._mirror(url)
        rev = {"git_branch": f"refs/heads/{ref}", "git_tag": f"refs/tags/{ref}", "git_commit": ref}[field]
        with self._lock(f"mirror:{mirror}"):
            fresh = False
            if not mirror.exists():
                mirror.parent.mkdir(parents=True, exist_ok=True)
                tmp = mirror.with_name(f"{mirror.name}.tmp-{uuid.uuid4().hex[:8]}")
                try:
                    git.run_git(["clone", "--quiet", "--mirror", "--", git.clone_source(url), str(tmp)])
                except git.GitError as exc:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise git.reachable_error(url, exc) from None
                tmp.rename(mirror)
                fresh = True
            # Branches and tags move: fetch before resolving them. A known commit needs no fetch.
            sha = git.verify_commit(mirror, rev) if field == "git_commit" else None
            if sha is None and not fresh:
                try:
                    git.run_git(["fetch", "--quiet", "--prune", "--force", "origin"], cwd=mirror)
                except git.GitError as exc:
                    raise git.reachable_error(url, exc) from None
            if sha is None:
                sha = git.verify_commit(mirror, rev)
        if sha is None:
            kind = {"git_branch": "Branch", "git_tag": "Tag", "git_commit": "Commit"}[field]
            raise invalid(f"{kind} '{ref}' (git_source.{field}) does not exist in {url}.")
        return sha

    def _materialize(self, url: str, sha: str) -> Path:
        dest = self.cache_dir / "checkouts" / sha
        with self._lock(f"checkout:{sha}"):
            if dest.is_dir():
                return dest
            dest.parent.mkdir(parents=True, exist_ok=True)
            mirror = self._mirror(url)
            tmp = dest.with_name(f"{sha}.tmp-{uuid.uuid4().hex[:8]}")
            try:
                git.run_git(["clone", "--quiet", "--shared", "--no-checkout", "--", str(mirror), str(tmp)])
                git.run_git(["checkout", "--quiet", "--detach", sha], cwd=tmp)
            except git.GitError as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                raise invalid(f"Could not check out commit {sha} of {url}: {exc}") from None
            # Appear all at once: a directory at dest is always a complete checkout.
            tmp.rename(dest)
            return dest
