"""Repos API (Git folders) and git_source checkouts of the emulated workspace.

Repos clone real local git repositories; the tests check what a user sees: which commit is
checked out and which notebook content the workspace serves from it.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound, ResourceAlreadyExists
from databricks.sdk.service.workspace import ImportFormat, Language, ObjectType

from devstack.services import start_workspace
from devstack.workspace.http import ApiError
from devstack.workspace.repos.backend import GitSourceCheckouts
from devstack.workspace.runtime.notebook import find_notebook_file
from tests.devstack.conftest import git


def notebook_version(client: WorkspaceClient, path: str) -> str:
    source = base64.b64decode(client.workspace.export(path).content).decode()
    assert source.startswith("# Databricks notebook source\n")
    return source.split("VERSION = ", 1)[1].split("\n", 1)[0].strip("'")


def api(workspace, method: str, endpoint: str, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {workspace.token}"}
    return requests.request(
        method, f"{workspace.url}/api/2.0/{endpoint}", headers=headers, timeout=30, **kwargs
    )


@pytest.fixture
def repo_path() -> str:
    return f"/Repos/tester/proj-{uuid.uuid4().hex[:8]}"


def test_create_clones_the_default_branch_into_the_workspace_tree(ws_sdk, git_project, repo_path):
    repo = ws_sdk.repos.create(url=str(git_project.path), provider="gitHub", path=repo_path)
    assert (repo.branch, repo.head_commit_id, repo.path) == ("main", git_project.commits["main"], repo_path)

    status = ws_sdk.workspace.get_status(repo_path)
    assert (status.object_type, status.object_id) == (ObjectType.REPO, repo.id)
    listed = {o.path: o.object_type for o in ws_sdk.workspace.list(repo_path)}
    assert listed == {
        f"{repo_path}/notebooks": ObjectType.DIRECTORY,
        f"{repo_path}/README.md": ObjectType.FILE,
    }
    listed = {o.path: (o.object_type, o.language) for o in ws_sdk.workspace.list(f"{repo_path}/notebooks")}
    assert listed == {
        f"{repo_path}/notebooks/train": (ObjectType.NOTEBOOK, Language.PYTHON),  # train.py with the header
        f"{repo_path}/notebooks/helpers.py": (ObjectType.FILE, None),  # a plain module stays a file
    }
    assert notebook_version(ws_sdk, f"{repo_path}/notebooks/train") == "main-2"
    assert ws_sdk.workspace.download(f"{repo_path}/README.md").read() == b"# project\n"
    with pytest.raises(NotFound, match=f"{repo_path}/.git"):
        ws_sdk.workspace.get_status(f"{repo_path}/.git")


def test_notebooks_written_into_a_git_folder_land_in_its_checkout(ws_sdk, workspace, git_project, repo_path):
    repo = ws_sdk.repos.create(url=git_project.url, provider="gitHub", path=repo_path)
    checkout = workspace.data_dir / "repos" / str(repo.id)

    ws_sdk.workspace.import_(
        f"{repo_path}/notebooks/scratch",
        content=base64.b64encode(b"x = 1\n").decode(),
        format=ImportFormat.SOURCE,
        language=Language.PYTHON,
    )
    assert (checkout / "notebooks" / "scratch.py").read_text() == "# Databricks notebook source\nx = 1\n"
    ws_sdk.workspace.mkdirs(f"{repo_path}/notebooks/sub/dir")
    assert (checkout / "notebooks" / "sub" / "dir").is_dir()
    ws_sdk.workspace.delete(f"{repo_path}/notebooks/scratch")
    assert not (checkout / "notebooks" / "scratch.py").exists()

    # Outside /Repos a Git folder may sit in any folder, but never inside another Git folder.
    shared = f"/Shared/git-{uuid.uuid4().hex[:6]}"
    ws_sdk.repos.create(url=git_project.url, provider="gitHub", path=shared)
    assert ws_sdk.workspace.get_status(shared).object_type == ObjectType.REPO
    resp = api(
        workspace,
        "POST",
        "repos",
        json={
            "url": git_project.url,
            "provider": "gitHub",
            "path": f"{shared}/notebooks/nested",
        },
    )
    assert resp.status_code == 400 and "inside another Git folder" in resp.json()["message"]


def test_update_checks_out_branch_tag_and_commit(ws_sdk, workspace, git_project, repo_path):
    repo = ws_sdk.repos.create(url=git_project.url, provider="gitHub", path=repo_path)
    notebook = f"{repo_path}/notebooks/train"

    ws_sdk.repos.update(repo.id, branch="feature")
    got = ws_sdk.repos.get(repo.id)
    assert (got.branch, got.head_commit_id) == ("feature", git_project.commits["feature"])
    assert notebook_version(ws_sdk, notebook) == "feature"

    # The provider reads head_commit_id from the PATCH answer.
    resp = api(workspace, "PATCH", f"repos/{repo.id}", json={"tag": "v1"})
    assert resp.status_code == 200 and resp.json()["head_commit_id"] == git_project.commits["v1"]
    got = ws_sdk.repos.get(repo.id)
    assert (got.branch, got.head_commit_id) == (None, git_project.commits["v1"])  # detached at the tag
    assert notebook_version(ws_sdk, notebook) == "v1"

    resp = api(workspace, "PATCH", f"repos/{repo.id}", json={"commit": git_project.commits["main"]})
    assert resp.json()["head_commit_id"] == git_project.commits["main"]
    assert notebook_version(ws_sdk, notebook) == "main-2"


def test_update_without_ref_pulls_the_latest_commit_of_the_branch(ws_sdk, git_project, repo_path):
    repo = ws_sdk.repos.create(url=git_project.url, provider="gitHub", path=repo_path)
    newest = git_project.commit_version("main-3")

    ws_sdk.repos.update(repo.id)
    assert ws_sdk.repos.get(repo.id).head_commit_id == newest
    assert notebook_version(ws_sdk, f"{repo_path}/notebooks/train") == "main-3"


def test_list_filters_by_path_prefix_and_delete_removes_the_checkout(ws_sdk, workspace, git_project):
    folder = f"/Repos/lister-{uuid.uuid4().hex[:6]}"
    a = ws_sdk.repos.create(url=git_project.url, provider="gitLab", path=f"{folder}/a")
    b = ws_sdk.repos.create(url=git_project.url, provider="azureDevOpsServices", path=f"{folder}/b")
    listed = {r.path: (r.id, r.provider) for r in ws_sdk.repos.list(path_prefix=folder)}
    assert listed == {f"{folder}/a": (a.id, "gitLab"), f"{folder}/b": (b.id, "azureDevOpsServices")}

    checkout = workspace.data_dir / "repos" / str(a.id)
    assert (checkout / "notebooks" / "train.py").is_file()
    ws_sdk.repos.delete(a.id)
    with pytest.raises(NotFound, match=str(a.id)):
        ws_sdk.repos.get(a.id)
    with pytest.raises(NotFound):
        ws_sdk.workspace.get_status(f"{folder}/a/notebooks/train")
    assert not checkout.exists()
    assert [r.path for r in ws_sdk.repos.list(path_prefix=folder)] == [f"{folder}/b"]


def test_repo_errors_name_what_is_wrong(ws_sdk, workspace, git_project, repo_path, tmp_path):
    repo = ws_sdk.repos.create(url=git_project.url, provider="gitHub", path=repo_path)
    with pytest.raises(ResourceAlreadyExists, match=repo_path):
        ws_sdk.repos.create(url=git_project.url, provider="gitHub", path=repo_path)

    resp = api(workspace, "PATCH", f"repos/{repo.id}", json={"branch": "no-such-branch"})
    assert (resp.status_code, resp.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert "no-such-branch" in resp.json()["message"]
    assert ws_sdk.repos.get(repo.id).branch == "main"  # a failed update leaves the checkout alone

    missing = tmp_path / "not-a-repo"
    resp = api(
        workspace, "POST", "repos", json={"url": str(missing), "provider": "gitHub", "path": f"{repo_path}-x"}
    )
    assert resp.status_code == 400 and str(missing) in resp.json()["message"]
    with pytest.raises(NotFound):
        ws_sdk.workspace.get_status(f"{repo_path}-x")

    for body, field in (
        ({"provider": "gitHub"}, "url"),
        ({"url": git_project.url}, "provider"),
        ({"url": git_project.url, "provider": "svn"}, "provider"),
        ({"url": git_project.url, "provider": "gitHub", "path": "/Repos/too/deep/path"}, "path"),
    ):
        resp = api(workspace, "POST", "repos", json=body)
        assert resp.status_code == 400 and field in resp.json()["message"], body

    with pytest.raises(NotFound, match="424242"):
        ws_sdk.repos.get(424242)


def test_restart_keeps_workspace_objects_repos_and_secrets(tmp_path, git_project):
    data_dir = tmp_path / "ws"
    service = start_workspace("restart", data_dir, token="restart-token")
    try:
        client = WorkspaceClient(host=service.url, token=service.token)
        client.workspace.mkdirs("/Shared/keep")
        client.workspace.import_(
            "/Shared/keep/nb",
            content=base64.b64encode(b"print(1)").decode(),
            format=ImportFormat.SOURCE,
            language=Language.PYTHON,
        )
        repo = client.repos.create(url=git_project.url, provider="gitHub", path="/Repos/me/proj")
        client.repos.update(repo.id, branch="feature")
        client.secrets.create_scope("keep")
        client.secrets.put_secret("keep", "token", string_value="abc")
    finally:
        service.stop()

    service = start_workspace("restart", data_dir, token="restart-token")
    try:
        client = WorkspaceClient(host=service.url, token=service.token)
        assert client.workspace.get_status("/Shared/keep/nb").object_type == ObjectType.NOTEBOOK
        assert client.repos.get(repo.id).branch == "feature"
        assert notebook_version(client, "/Repos/me/proj/notebooks/train") == "feature"
        assert base64.b64decode(client.secrets.get_secret("keep", "token").value) == b"abc"
    finally:
        service.stop()


# --------------------------------------------------------------------------- git_source of job runs


def test_git_source_checkout_of_branch_tag_and_commit(tmp_path, git_project):
    checkouts = GitSourceCheckouts(tmp_path / "git-cache")
    url = git_project.url

    by_branch = checkouts.checkout({"git_url": url, "git_provider": "gitHub", "git_branch": "feature"})
    by_tag = checkouts.checkout({"git_url": url, "git_provider": "gitHub", "git_tag": "v1"})
    by_commit = checkouts.checkout(
        {"git_url": url, "git_provider": "gitHub", "git_commit": git_project.commits["main"]}
    )

    def version(root):
        return (root / "notebooks" / "train.py").read_text().split("VERSION = ")[1].split("\n")[0]

    assert (version(by_branch), version(by_tag), version(by_commit)) == ("'feature'", "'v1'", "'main-2'")
    assert git(by_tag, "rev-parse", "HEAD") == git_project.commits["v1"]
    # The same commit, however it is named, is one shared checkout.
    assert checkouts.checkout({"git_url": url, "git_branch": "main"}) == by_commit

    # A branch that moves resolves to its new commit.
    newest = git_project.commit_version("main-3")
    moved = checkouts.checkout({"git_url": url, "git_branch": "main"})
    assert moved.name == newest and version(moved) == "'main-3'"
    assert version(by_commit) == "'main-2'"  # earlier checkouts stay as they were

    assert find_notebook_file(by_branch, "notebooks/train") == by_branch / "notebooks" / "train.py"
    assert find_notebook_file(by_branch, "/notebooks/train.py") == by_branch / "notebooks" / "train.py"
    assert find_notebook_file(by_branch, "notebooks/nope") is None


def test_git_source_concurrent_checkouts_share_one_directory(tmp_path, git_project):
    checkouts = GitSourceCheckouts(tmp_path / "git-cache")
    results, errors = [], []

    def worker():
        try:
            results.append(checkouts.checkout({"git_url": str(git_project.path), "git_tag": "v1"}))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert {p.name for p in results} == {git_project.commits["v1"]}
    assert sorted(p.name for p in (tmp_path / "git-cache" / "checkouts").iterdir()) == [
        git_project.commits["v1"]
    ]


@pytest.mark.parametrize(
    ("source", "named"),
    [
        ({"git_branch": "no-such-branch"}, "no-such-branch"),
        ({"git_tag": "v9"}, "v9"),
        ({"git_commit": "0" * 40}, "0" * 40),
        ({"git_branch": "main", "git_tag": "v1"}, "exactly one"),
        ({}, "exactly one"),
    ],
)
def test_git_source_errors_name_the_ref(tmp_path, git_project, source, named):
    checkouts = GitSourceCheckouts(tmp_path / "git-cache")
    with pytest.raises(ApiError) as err:
        checkouts.checkout({"git_url": git_project.url, **source})
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    assert named in err.value.message


def test_git_source_unreachable_url_is_named(tmp_path):
    url = str(tmp_path / "nowhere")
    with pytest.raises(ApiError, match="nowhere") as err:
        GitSourceCheckouts(tmp_path / "git-cache").checkout({"git_url": url, "git_branch": "main"})
    assert err.value.status == 400


def test_remote_url_mapped_to_a_local_clone_runs_offline(tmp_path, git_project, monkeypatch):
    remote = "https://github.com/example/project.git"
    monkeypatch.setenv("DEVSTACK_GIT_MIRRORS", json.dumps({remote: str(git_project.path)}))
    root = GitSourceCheckouts(tmp_path / "git-cache").checkout({"git_url": remote, "git_branch": "feature"})
    assert root.name == git_project.commits["feature"]
