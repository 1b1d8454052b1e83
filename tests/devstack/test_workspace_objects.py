"""Workspace API of the emulated workspace, through databricks-sdk over real HTTP."""

from __future__ import annotations

import base64
import io
import json
import uuid

import pytest
import requests
from databricks.sdk.errors import DatabricksError, NotFound, ResourceAlreadyExists
from databricks.sdk.service.workspace import ExportFormat, ImportFormat, Language, ObjectType


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


@pytest.fixture
def folder(ws_sdk) -> str:
    path = f"/Users/tester/{uuid.uuid4().hex[:8]}"
    ws_sdk.workspace.mkdirs(path)
    return path


def api(workspace, method: str, endpoint: str, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {workspace.token}"}
    return requests.request(
        method, f"{workspace.url}/api/2.0/{endpoint}", headers=headers, timeout=10, **kwargs
    )


def test_source_import_without_header_becomes_a_notebook_the_runtime_can_export(ws_sdk, workspace, folder):
    ws_sdk.workspace.import_(
        f"{folder}/train",
        content=b64("x = 1\nprint(x)\n"),
        format=ImportFormat.SOURCE,
        language=Language.PYTHON,
    )

    status = ws_sdk.workspace.get_status(f"{folder}/train")
    assert (status.object_type, status.language) == (ObjectType.NOTEBOOK, Language.PYTHON)
    assert status.object_id and status.created_at and status.size
    # Exactly what the notebook runtime asks for and reads.
    resp = api(workspace, "GET", "workspace/export", params={"path": f"{folder}/train", "format": "SOURCE"})
    assert resp.status_code == 200
    body = resp.json()
    assert body["file_type"] == "py"
    assert base64.b64decode(body["content"]).decode() == "# Databricks notebook source\nx = 1\nprint(x)\n"


def test_jupyter_import_converts_cells_and_exports_back(ws_sdk, folder):
    notebook = {
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": ["# Title\n", "text"]},
            {
                "cell_type": "code",
                "metadata": {},
                "source": ["a = 1\n", "a += 1"],
                "outputs": [],
                "execution_count": 1,
            },
            {
                "cell_type": "code",
                "metadata": {},
                "source": "%pip install x",
                "outputs": [],
                "execution_count": 2,
            },
        ],
        "metadata": {"kernelspec": {"language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    ws_sdk.workspace.import_(f"{folder}/nb", content=b64(json.dumps(notebook)), format=ImportFormat.JUPYTER)

    source = base64.b64decode(
        ws_sdk.workspace.export(f"{folder}/nb", format=ExportFormat.SOURCE).content
    ).decode()
    assert source.startswith("# Databricks notebook source\n")
    assert "# MAGIC %md\n# MAGIC # Title\n# MAGIC text" in source
    assert "a = 1\na += 1" in source
    assert "# MAGIC %pip install x" in source
    assert source.count("# COMMAND ----------") == 2

    exported = ws_sdk.workspace.export(f"{folder}/nb", format=ExportFormat.JUPYTER)
    assert exported.file_type == "ipynb"
    cells = json.loads(base64.b64decode(exported.content))["cells"]
    assert [(c["cell_type"], "".join(c["source"])) for c in cells] == [
        ("markdown", "# Title\ntext"),
        ("code", "a = 1\na += 1"),
        ("code", "%pip install x"),
    ]


def test_auto_import_tells_notebooks_from_files(ws_sdk, folder):
    ws_sdk.workspace.import_(
        f"{folder}/prep.py", content=b64("# Databricks notebook source\nprint(1)\n"), format=ImportFormat.AUTO
    )
    ws_sdk.workspace.import_(f"{folder}/data.csv", content=b64("a,b\n1,2\n"), format=ImportFormat.AUTO)
    ws_sdk.workspace.import_(f"{folder}/blob.bin", content=b64(b"\x00\xff"), format=ImportFormat.RAW)

    listed = {o.path: o.object_type for o in ws_sdk.workspace.list(folder)}
    assert listed == {
        f"{folder}/prep": ObjectType.NOTEBOOK,  # the extension is dropped for notebooks
        f"{folder}/data.csv": ObjectType.FILE,
        f"{folder}/blob.bin": ObjectType.FILE,
    }
    assert ws_sdk.workspace.download(f"{folder}/blob.bin").read() == b"\x00\xff"
    assert ws_sdk.workspace.export(f"{folder}/data.csv").file_type == "csv"


def test_sdk_upload_and_download(ws_sdk, folder):
    ws_sdk.workspace.upload(
        f"{folder}/up.py",
        io.BytesIO(b"# Databricks notebook source\nprint('up')\n"),
        format=ImportFormat.AUTO,
    )
    assert ws_sdk.workspace.get_status(f"{folder}/up").object_type == ObjectType.NOTEBOOK
    assert ws_sdk.workspace.download(f"{folder}/up").read() == b"# Databricks notebook source\nprint('up')\n"


def test_list_is_one_level_and_empty_folders_have_no_objects(ws_sdk, workspace, folder):
    ws_sdk.workspace.mkdirs(f"{folder}/a/b/c")
    ws_sdk.workspace.import_(
        f"{folder}/a/nb", content=b64("1"), format=ImportFormat.SOURCE, language=Language.SQL
    )

    listed = {o.path: o.object_type for o in ws_sdk.workspace.list(f"{folder}/a")}
    assert listed == {f"{folder}/a/b": ObjectType.DIRECTORY, f"{folder}/a/nb": ObjectType.NOTEBOOK}
    assert api(workspace, "GET", "workspace/list", params={"path": f"{folder}/a/b/c"}).json() == {}
    roots = {o.path for o in ws_sdk.workspace.list("/")}
    assert {"/Users", "/Shared", "/Repos"} <= roots
    # A SQL notebook exports with the SQL header and extension.
    exported = ws_sdk.workspace.export(f"{folder}/a/nb")
    assert exported.file_type == "sql"
    assert base64.b64decode(exported.content).decode().startswith("-- Databricks notebook source\n")


def test_mkdirs_is_idempotent_but_not_through_a_notebook(ws_sdk, folder):
    ws_sdk.workspace.mkdirs(f"{folder}/x/y")
    ws_sdk.workspace.mkdirs(f"{folder}/x/y")
    assert ws_sdk.workspace.get_status(f"{folder}/x/y").object_type == ObjectType.DIRECTORY

    ws_sdk.workspace.import_(
        f"{folder}/nb", content=b64("1"), format=ImportFormat.SOURCE, language=Language.PYTHON
    )
    with pytest.raises(ResourceAlreadyExists, match=f"{folder}/nb"):
        ws_sdk.workspace.mkdirs(f"{folder}/nb/sub")


def test_delete_needs_recursive_for_a_non_empty_folder(ws_sdk, folder):
    ws_sdk.workspace.mkdirs(f"{folder}/d/e")
    ws_sdk.workspace.import_(
        f"{folder}/d/e/nb", content=b64("1"), format=ImportFormat.SOURCE, language=Language.PYTHON
    )

    with pytest.raises(DatabricksError) as err:
        ws_sdk.workspace.delete(f"{folder}/d")
    assert err.value.error_code == "DIRECTORY_NOT_EMPTY"
    assert ws_sdk.workspace.get_status(f"{folder}/d/e/nb").object_type == ObjectType.NOTEBOOK

    ws_sdk.workspace.delete(f"{folder}/d", recursive=True)
    for gone in (f"{folder}/d", f"{folder}/d/e/nb"):
        with pytest.raises(NotFound):
            ws_sdk.workspace.get_status(gone)


def test_import_conflicts_overwrite_and_missing_parent(ws_sdk, folder):
    path = f"{folder}/nb"
    ws_sdk.workspace.import_(path, content=b64("v = 1"), format=ImportFormat.SOURCE, language=Language.PYTHON)
    with pytest.raises(ResourceAlreadyExists, match=path):
        ws_sdk.workspace.import_(
            path, content=b64("v = 2"), format=ImportFormat.SOURCE, language=Language.PYTHON
        )
    ws_sdk.workspace.import_(
        path, content=b64("v = 2"), format=ImportFormat.SOURCE, language=Language.PYTHON, overwrite=True
    )
    assert base64.b64decode(ws_sdk.workspace.export(path).content).decode().endswith("v = 2")

    with pytest.raises(NotFound, match=f"{folder}/no/such"):
        ws_sdk.workspace.import_(
            f"{folder}/no/such/nb", content=b64("1"), format=ImportFormat.SOURCE, language=Language.PYTHON
        )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"content": "eA==", "format": "SOURCE", "language": "PYTHON"}, "path"),
        ({"path": 123, "content": "eA==", "format": "SOURCE", "language": "PYTHON"}, "path"),
        ({"path": "/Shared/x", "content": "eA==", "format": "SOURCE"}, "language"),
        ({"path": "/Shared/x", "content": "eA==", "format": "SOURCE", "language": "COBOL"}, "language"),
        (
            {"path": "/Shared/x", "content": "not base64!", "format": "SOURCE", "language": "PYTHON"},
            "content",
        ),
        ({"path": "/Shared/x", "content": "eA==", "format": "WORD"}, "format"),
        ({"path": "/Shared/x", "content": "eA==", "format": "RAW", "overwrite": "maybe"}, "overwrite"),
    ],
)
def test_bad_import_input_names_the_field(workspace, body, field):
    resp = api(workspace, "POST", "workspace/import", json=body)
    assert resp.status_code == 400
    assert resp.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert field in resp.json()["message"]


def test_unknown_paths_are_not_found_naming_the_path(ws_sdk, workspace, folder):
    path = f"{folder}/missing"
    with pytest.raises(NotFound, match=path):
        ws_sdk.workspace.get_status(path)
    with pytest.raises(NotFound, match=path):
        ws_sdk.workspace.export(path)
    with pytest.raises(NotFound, match=path):
        list(ws_sdk.workspace.list(path))
    with pytest.raises(NotFound, match=path):
        ws_sdk.workspace.delete(path)
    resp = api(workspace, "GET", "workspace/export", params={"path": path, "format": "SOURCE"})
    assert (resp.status_code, resp.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
