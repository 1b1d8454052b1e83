"""Git for the emulated workspace: Git folder (Repos) checkouts and the job runs' git_source.

Everything goes through the ``git`` CLI. A repository URL may be a local path, a ``file://``
URL, or a remote URL mapped to a local clone by the ``DEVSTACK_GIT_MIRRORS`` environment
variable (JSON ``{"https://github.com/org/repo": "/path/to/clone"}``), so the same job
definitions that name the real remote run offline.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import uuid
from collections import defaultdict
from hashlib import sha1
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from devstack.workspace.http import invalid

GIT_TIMEOUT = 120.0


class GitError(RuntimeError):
    """A git command failed; the message is git's own last line of stderr."""


def run_git(args: list[str], cwd: Path | None = None, timeout: float = GIT_TIMEOUT) -> str:
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",  # never wait for a password on a server thread
        "GIT_ASKPASS": "true",
        "LC_ALL": "C",
    }
    cmd = ["git", "-c", "advice.detachedHead=false", "-c", "protocol.file.allow=always", *args]
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} timed out after {timeout:.0f}s") from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        raise GitError(lines[-1] if lines else f"git {args[0]} exited with {proc.returncode}")
    return proc.stdout.strip()


def _mirrors() -> dict[str, str]:
    raw = os.environ.get("DEVSTACK_GIT_MIRRORS", "").strip()
    if not raw:
        return {}
    try:
        mapping = json.loads(raw)
    except ValueError:
        return {}
    return {_url_key(k): v for k, v in mapping.items()} if isinstance(mapping, dict) else {}


def _url_key(url: str) -> str:
    key = url.strip().rstrip("/")
    return key[:-4] if key.endswith(".git") else key


def clone_source(url: str) -> str:
    """What ``git clone`` should read for ``url``: a local path where there is one."""
    if url.startswith("file://"):
        return unquote(urlsplit(url).path)
    mapped = _mirrors().get(_url_key(url))
    if mapped:
        return mapped
    return url


def check_ref_name(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise invalid(f"Invalid value for field {field}: expected a non-empty string, got {value!r}")
    if value.startswith("-") or any(ch.isspace() or ord(ch) < 32 for ch in value):
        raise invalid(f"Invalid value for field {field}: {value!r} is not a valid git ref name.")
    return value


def reachable_error(url: str, exc: GitError):
    return invalid(
        f"Could not reach the git repository at url {url}: {exc}. Use a reachable URL, a local "
        "repository path or file:// URL, or map the URL to a local clone in DEVSTACK_GIT_MIRRORS."
    )


# --------------------------------------------------------------------------- checkouts (Repos)


def clone(url: str, dest: Path) -> None:
    """Clone ``url`` into ``dest`` with its default branch checked out."""
    try:
        run_git(["clone", "--quiet", "--", clone_source(url), str(dest)])
    except GitError as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise reachable_error(url, exc) from None


def head(checkout: Path) -> tuple[str | None, str]:
    """(current branch or None when detached, HEAD commit) of a working copy."""
    sha = run_git(["rev-parse", "HEAD"], cwd=checkout)
    try:
        branch = run_git(["symbolic-ref", "--quiet", "--short", "HEAD"], cwd=checkout) or None
    except GitError:
        branch = None
    return branch, sha


def _fetch(checkout: Path, url: str) -> None:
    try:
        run_git(["fetch", "--quiet", "--prune", "--tags", "--force", "origin"], cwd=checkout)
    except GitError as exc:
        raise reachable_error(url, exc) from None


def _verify(cwd: Path, rev: str) -> str | None:
    try:
        return run_git(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"], cwd=cwd)
    except GitError:
        return None


def checkout_ref(
    checkout: Path, url: str, *, branch: str | None = None, tag: str | None = None, commit: str | None = None
) -> None:
    """Fetch from origin, then check out a branch (tracking origin), a tag or a commit.

    With none given, the current branch is brought to origin's latest commit (a detached
    HEAD stays where it is), as Databricks does for an update without branch or tag.
    """
    _fetch(checkout, url)
    if branch is None and tag is None and commit is None:
        branch, _ = head(checkout)
        if branch is None:
            return
    if branch is not None:
        if _verify(checkout, f"refs/remotes/origin/{branch}") is None:
            raise invalid(
                f"Branch '{branch}' does not exist in {url}. Push it first or pick an existing branch."
            )
        run_git(
            ["checkout", "--quiet", "--force", "-B", branch, f"refs/remotes/origin/{branch}"], cwd=checkout
        )
        return
    if tag is not None:
        sha = _verify(checkout, f"refs/tags/{tag}")
        if sha is None:
            raise invalid(f"Tag '{tag}' does not exist in {url}. Push the tag first or pick an existing one.")
    else:
        sha = _verify(checkout, commit)
        if sha is None:
            raise invalid(f"Commit '{commit}' does not exist in {url}.")
    run_git(["checkout", "--quiet", "--force", "--detach", sha], cwd=checkout)


# --------------------------------------------------------------------------- git_source of job runs


class GitSourceCheckouts:
    """``ctx.services["git"]``: local checkouts of a Jobs API ``git_source``, one per commit.

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
        ref = check_ref_name(f"git_source.{field}", value)
        sha = self._resolve(url, field, ref)
        return self._materialize(url, sha)

    def _mirror(self, url: str) -> Path:
        return self.cache_dir / "mirrors" / (sha1(_url_key(url).encode()).hexdigest()[:16] + ".git")

    def _resolve(self, url: str, field: str, ref: str) -> str:
        mirror = self._mirror(url)
        rev = {"git_branch": f"refs/heads/{ref}", "git_tag": f"refs/tags/{ref}", "git_commit": ref}[field]
        with self._lock(f"mirror:{mirror}"):
            fresh = False
            if not mirror.exists():
                mirror.parent.mkdir(parents=True, exist_ok=True)
                tmp = mirror.with_name(f"{mirror.name}.tmp-{uuid.uuid4().hex[:8]}")
                try:
                    run_git(["clone", "--quiet", "--mirror", "--", clone_source(url), str(tmp)])
                except GitError as exc:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise reachable_error(url, exc) from None
                tmp.rename(mirror)
                fresh = True
            # Branches and tags move: fetch before resolving them. A known commit needs no fetch.
            sha = _verify(mirror, rev) if field == "git_commit" else None
            if sha is None and not fresh:
                try:
                    run_git(["fetch", "--quiet", "--prune", "--force", "origin"], cwd=mirror)
                except GitError as exc:
                    raise reachable_error(url, exc) from None
            if sha is None:
                sha = _verify(mirror, rev)
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
                run_git(["clone", "--quiet", "--shared", "--no-checkout", "--", str(mirror), str(tmp)])
                run_git(["checkout", "--quiet", "--detach", sha], cwd=tmp)
            except GitError as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                raise invalid(f"Could not check out commit {sha} of {url}: {exc}") from None
            # Appear all at once: a directory at dest is always a complete checkout.
            tmp.rename(dest)
            return dest
