"""Git for the emulated workspace: the ``git`` CLI behind Git folders and job runs' git_source.

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
    return {url_key(k): v for k, v in mapping.items()} if isinstance(mapping, dict) else {}


def url_key(url: str) -> str:
    key = url.strip().rstrip("/")
    return key[:-4] if key.endswith(".git") else key


def clone_source(url: str) -> str:
    """What ``git clone`` should read for ``url``: a local path where there is one."""
    if url.startswith("file://"):
        return unquote(urlsplit(url).path)
    mapped = _mirrors().get(url_key(url))
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


def verify_commit(cwd: Path, rev: str) -> str | None:
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
        if verify_commit(checkout, f"refs/remotes/origin/{branch}") is None:
            raise invalid(
                f"Branch '{branch}' does not exist in {url}. Push it first or pick an existing branch."
            )
        run_git(
            ["checkout", "--quiet", "--force", "-B", branch, f"refs/remotes/origin/{branch}"], cwd=checkout
        )
        return
    if tag is not None:
        sha = verify_commit(checkout, f"refs/tags/{tag}")
        if sha is None:
            raise invalid(f"Tag '{tag}' does not exist in {url}. Push the tag first or pick an existing one.")
    else:
        sha = verify_commit(checkout, commit)
        if sha is None:
            raise invalid(f"Commit '{commit}' does not exist in {url}.")
    run_git(["checkout", "--quiet", "--force", "--detach", sha], cwd=checkout)
