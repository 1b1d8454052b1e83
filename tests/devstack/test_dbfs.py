"""DBFS API 2.0 through databricks-sdk's ``w.dbfs`` and raw HTTP; storage shared with notebooks."""

from __future__ import annotations

import base64
import io

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound

from devstack.services import start_workspace

TOKEN = "dapi-dbfs-test"


@pytest.fixture(scope="module")
def dbfs_workspace(tmp_path_factory):
    service = start_workspace("dbfs", tmp_path_factory.mktemp("dbfs"), token=TOKEN)
    yield service
    service.stop()


@pytest.fixture
def w(dbfs_workspace) -> WorkspaceClient:
    return WorkspaceClient(host=dbfs_workspace.url, token=TOKEN)


def call(ws, method: str, path: str, body: dict) -> requests.Response:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    kwargs = {"params": body} if method == "GET" else {"json": body}
    return requests.request(method, f"{ws.url}/api/2.0/dbfs/{path}", headers=headers, timeout=30, **kwargs)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_streamed_upload_and_download_of_a_multi_block_file(w, dbfs_workspace):
    payload = bytes(range(256)) * 6000  # 1.5 MB: two add-block calls, two reads
    w.dbfs.upload("/tmp/big/data.bin", io.BytesIO(payload), overwrite=True)
    with w.dbfs.download("/tmp/big/data.bin") as fh:
        assert fh.read() == payload
    status = w.dbfs.get_status("dbfs:/tmp/big/data.bin")
    assert (status.path, status.is_dir, status.file_size) == ("/tmp/big/data.bin", False, len(payload))
    # The same bytes are where notebooks read dbfs:/tmp/big/data.bin.
    assert (dbfs_workspace.data_dir / "dbfs/tmp/big/data.bin").read_bytes() == payload


def test_put_list_mkdirs_move_delete(w):
    w.dbfs.put("/tmp/ops/a.txt", contents=b64(b"hello"), overwrite=True)
    w.dbfs.mkdirs("/tmp/ops/sub/deeper")
    assert [(f.path, f.is_dir) for f in w.dbfs.list("/tmp/ops")] == [
        ("/tmp/ops/a.txt", False),
        ("/tmp/ops/sub", True),
    ]
    assert [f.path for f in w.dbfs.list("/tmp/ops", recursive=True)] == ["/tmp/ops/a.txt"]
    w.dbfs.move("/tmp/ops/a.txt", "/tmp/ops/sub/b.txt")
    assert not w.dbfs.exists("/tmp/ops/a.txt")
    assert base64.b64decode(w.dbfs.read("/tmp/ops/sub/b.txt").data) == b"hello"
    w.dbfs.delete("/tmp/ops", recursive=True)
    assert not w.dbfs.exists("/tmp/ops")


def test_read_with_offset_and_length_stops_at_the_end(dbfs_workspace, w):
    w.dbfs.put("/tmp/read.txt", contents=b64(b"0123456789"), overwrite=True)
    body = call(dbfs_workspace, "GET", "read", {"path": "/tmp/read.txt", "offset": 7, "length": 100}).json()
    assert body == {"bytes_read": 3, "data": b64(b"789")}
    at_end = call(dbfs_workspace, "GET", "read", {"path": "/tmp/read.txt", "offset": 10}).json()
    assert at_end["bytes_read"] == 0


def test_read_past_the_end_is_refused(dbfs_workspace, w):
    w.dbfs.put("/tmp/short.txt", contents=b64(b"abc"), overwrite=True)
    response = call(dbfs_workspace, "GET", "read", {"path": "/tmp/short.txt", "offset": 50, "length": 10})
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "only 3 bytes" in response.json()["message"]


def test_inline_put_over_one_megabyte_is_refused(dbfs_workspace):
    response = call(
        dbfs_workspace, "POST", "put", {"path": "/tmp/huge.bin", "contents": b64(b"x" * (1024 * 1024 + 1))}
    )
    assert response.status_code == 400
    assert response.json()["error_code"] == "MAX_BLOCK_SIZE_EXCEEDED"
    assert "dbfs/create" in response.json()["message"]


@pytest.mark.parametrize(
    ("method", "endpoint", "body", "status", "code"),
    [
        ("GET", "read", {"path": "/tmp/none.txt"}, 404, "RESOURCE_DOES_NOT_EXIST"),
        ("GET", "get-status", {"path": "/tmp/none.txt"}, 404, "RESOURCE_DOES_NOT_EXIST"),
        ("GET", "list", {"path": "/tmp/none"}, 404, "RESOURCE_DOES_NOT_EXIST"),
        (
            "GET",
            "read",
            {"path": "/tmp/exists.txt", "length": 2 * 1024 * 1024},
            400,
            "MAX_READ_SIZE_EXCEEDED",
        ),
        ("GET", "read", {"path": "/tmp/exists.txt", "offset": -1}, 400, "INVALID_PARAMETER_VALUE"),
        ("POST", "put", {"path": "/tmp/exists.txt", "contents": b64(b"y")}, 400, "RESOURCE_ALREADY_EXISTS"),
        ("POST", "create", {"path": "/tmp/exists.txt"}, 400, "RESOURCE_ALREADY_EXISTS"),
        ("POST", "mkdirs", {"path": "/tmp/exists.txt/sub"}, 400, "RESOURCE_ALREADY_EXISTS"),
        ("POST", "add-block", {"handle": 987654, "data": b64(b"z")}, 404, "RESOURCE_DOES_NOT_EXIST"),
        ("POST", "close", {"handle": 987654}, 404, "RESOURCE_DOES_NOT_EXIST"),
        (
            "POST",
            "move",
            {"source_path": "/tmp/none", "destination_path": "/tmp/x"},
            404,
            "RESOURCE_DOES_NOT_EXIST",
        ),
        ("POST", "delete", {"path": "/tmp/full"}, 400, "IO_ERROR"),
        ("POST", "put", {"path": "relative.txt", "contents": b64(b"y")}, 400, "INVALID_PARAMETER_VALUE"),
    ],
)
def test_bad_input_answers_databricks_errors(dbfs_workspace, w, method, endpoint, body, status, code):
    w.dbfs.put("/tmp/exists.txt", contents=b64(b"x"), overwrite=True)
    w.dbfs.put("/tmp/full/file.txt", contents=b64(b"x"), overwrite=True)
    response = call(dbfs_workspace, method, endpoint, body)
    assert (response.status_code, response.json()["error_code"]) == (status, code), response.text


def test_add_block_over_one_megabyte_is_refused(dbfs_workspace, w):
    handle = w.dbfs.create("/tmp/blocks.bin", overwrite=True).handle
    response = call(
        dbfs_workspace, "POST", "add-block", {"handle": handle, "data": b64(b"x" * (1024 * 1024 + 1))}
    )
    assert (response.status_code, response.json()["error_code"]) == (400, "MAX_BLOCK_SIZE_EXCEEDED")
    w.dbfs.add_block(handle, b64(b"ok"))
    w.dbfs.close(handle)
    assert base64.b64decode(w.dbfs.read("/tmp/blocks.bin").data) == b"ok"


def test_sdk_raises_not_found_for_missing_files(w):
    with pytest.raises(NotFound, match="/tmp/missing.txt"):
        w.dbfs.get_status("/tmp/missing.txt")


def test_put_as_multipart_form_takes_the_file_part_raw(dbfs_workspace, w):
    # The DBFS reference allows put as multipart/form-data (contents as a file part), not only JSON.
    response = requests.post(
        f"{dbfs_workspace.url}/api/2.0/dbfs/put",
        headers={"Authorization": f"Bearer {TOKEN}"},
        data={"path": "/tmp/form.bin", "overwrite": "true"},
        files={"contents": ("form.bin", b"\x00\x01raw bytes")},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert base64.b64decode(w.dbfs.read("/tmp/form.bin").data) == b"\x00\x01raw bytes"


def test_backend_in_process_streams_a_file_and_keeps_handles_apart(tmp_path):
    """The DBFS backend without HTTP: a stream shows its file only once closed; a closed handle
    is gone; dbfs:/ and / name the same file; volume paths are sent to the Files API."""
    from devstack.workspace.files.dbfs import Dbfs
    from devstack.workspace.http import ApiError

    dbfs = Dbfs(tmp_path / "dbfs", tmp_path / "spool")
    assert [f["path"] for f in dbfs.list("/")] == ["/FileStore", "/tmp", "/user"]
    first, second = dbfs.create("/tmp/a.bin"), dbfs.create("dbfs:/tmp/b.bin")
    assert first != second
    dbfs.add_block(first, b"hello ")
    dbfs.add_block(second, b"other")
    dbfs.add_block(first, b"world")
    with pytest.raises(ApiError) as missing:
        dbfs.status("/tmp/a.bin")
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    dbfs.close(first)
    dbfs.close(second)
    assert dbfs.read("dbfs:/tmp/a.bin") == b"hello world"
    assert dbfs.read("/tmp/a.bin", 6, 3) == b"wor"
    assert dbfs.status("/tmp/b.bin")["file_size"] == 5
    with pytest.raises(ApiError) as closed:
        dbfs.add_block(first, b"late")
    assert closed.value.status == 404 and f"{first}" in closed.value.message
    with pytest.raises(ApiError) as volume:
        dbfs.put("/Volumes/main/default/v/x", b"x")
    assert "Files API" in volume.value.message
    assert list((tmp_path / "spool").iterdir()) == []
