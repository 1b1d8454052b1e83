"""Files API on Unity Catalog volumes, through databricks-sdk's ``w.files`` and raw HTTP."""

from __future__ import annotations

import io

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import AlreadyExists, BadRequest, NotFound
from databricks.sdk.service.catalog import VolumeType

from devstack.services import start_workspace

TOKEN = "dapi-files-test"
VOLUME = "/Volumes/files_cat/ml/landing"


@pytest.fixture(scope="module")
def files_workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    service = start_workspace(
        "files", root / "ws", token=TOKEN, extra_args=["--metastore-dir", str(root / "metastore")]
    )
    service.metastore_dir = root / "metastore"
    w = WorkspaceClient(host=service.url, token=TOKEN)
    w.catalogs.create(name="files_cat")
    w.schemas.create(name="ml", catalog_name="files_cat")
    w.volumes.create(
        catalog_name="files_cat", schema_name="ml", name="landing", volume_type=VolumeType.MANAGED
    )
    yield service
    service.stop()


@pytest.fixture
def w(files_workspace) -> WorkspaceClient:
    return WorkspaceClient(host=files_workspace.url, token=TOKEN)


def raw(files_workspace, method: str, path: str, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {TOKEN}", **kwargs.pop("headers", {})}
    return requests.request(
        method, f"{files_workspace.url}/api/2.0/{path}", headers=headers, timeout=30, **kwargs
    )


def test_upload_download_metadata_roundtrip(w, files_workspace):
    target = f"{VOLUME}/raw/filesit-with-?-and-#-1.csv"
    w.files.upload(target, io.BytesIO(b"a,b\n1,2\n"))
    assert w.files.download(target).contents.read() == b"a,b\n1,2\n"
    meta = w.files.get_metadata(target)
    assert meta.content_length == 8 and meta.content_type == "application/octet-stream" and meta.last_modified
    # The file sits in the shared metastore's volume storage, where notebooks read /Volumes paths.
    on_disk = files_workspace.metastore_dir / "volumes/files_cat/ml/landing/raw/filesit-with-?-and-#-1.csv"
    assert on_disk.read_bytes() == b"a,b\n1,2\n"


def test_range_download(files_workspace, w):
    w.files.upload(f"{VOLUME}/range.bin", io.BytesIO(bytes(range(100))))
    response = raw(files_workspace, "GET", f"fs/files{VOLUME}/range.bin", headers={"Range": "bytes=10-19"})
    assert response.status_code == 206 and response.content == bytes(range(10, 20))
    assert response.headers["Content-Range"] == "bytes 10-19/100"
    past = raw(files_workspace, "GET", f"fs/files{VOLUME}/range.bin", headers={"Range": "bytes=200-"})
    assert past.status_code == 416


def test_directories_list_pages_and_delete(w):
    folder = f"{VOLUME}/listing"
    w.files.create_directory(f"{folder}/sub/")
    w.files.create_directory(f"{folder}/sub/")  # idempotent
    for i in range(3):
        w.files.upload(f"{folder}/file{i}.txt", io.BytesIO(b"x" * i))
    w.files.get_directory_metadata(folder)
    entries = list(w.files.list_directory_contents(folder, page_size=2))
    assert [(e.name, e.is_directory, e.file_size) for e in entries] == [
        ("file0.txt", False, 0),
        ("file1.txt", False, 1),
        ("file2.txt", False, 2),
        ("sub", True, None),
    ]
    assert entries[0].path == f"{folder}/file0.txt"
    w.files.delete(f"{folder}/file0.txt")
    w.files.delete_directory(f"{folder}/sub")
    assert [e.name for e in w.files.list_directory_contents(folder)] == ["file1.txt", "file2.txt"]


def test_overwrite_false_on_existing_file_is_refused(w, files_workspace):
    target = f"{VOLUME}/once.txt"
    w.files.upload(target, io.BytesIO(b"first"), overwrite=False)
    with pytest.raises(AlreadyExists, match="already exists; pass overwrite=true") as info:
        w.files.upload(target, io.BytesIO(b"second"), overwrite=False)
    assert info.value.error_code == "ALREADY_EXISTS"
    response = raw(files_workspace, "PUT", f"fs/files{target}?overwrite=false", data=b"third")
    assert (response.status_code, response.json()["error_code"]) == (409, "ALREADY_EXISTS")
    assert w.files.download(target).contents.read() == b"first"
    w.files.upload(target, io.BytesIO(b"second"), overwrite=True)
    assert w.files.download(target).contents.read() == b"second"


def test_path_outside_any_volume_is_refused(files_workspace):
    response = raw(files_workspace, "PUT", "fs/files/tmp/elsewhere.txt", data=b"x")
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "/Volumes/<catalog>/<schema>/<volume>" in response.json()["message"]


@pytest.mark.parametrize(
    ("path", "code", "named"),
    [
        ("/Volumes/nocat/ml/landing/x.txt", "CATALOG_DOES_NOT_EXIST", "'nocat'"),
        ("/Volumes/files_cat/noschema/landing/x.txt", "SCHEMA_DOES_NOT_EXIST", "'files_cat.noschema'"),
        ("/Volumes/files_cat/ml/novolume/x.txt", "RESOURCE_DOES_NOT_EXIST", "'files_cat.ml.novolume'"),
    ],
)
def test_missing_parent_volume_is_named(files_workspace, path, code, named):
    response = raw(files_workspace, "PUT", f"fs/files{path}", data=b"x")
    assert response.status_code == 404
    assert response.json()["error_code"] == code and named in response.json()["message"]


def test_missing_parent_directory_and_file_answer_not_found(w):
    with pytest.raises(NotFound, match="does not exist") as info:
        list(w.files.list_directory_contents(f"{VOLUME}/no/such/dir"))
    assert info.value.error_code == "NOT_FOUND"
    with pytest.raises(NotFound):
        w.files.get_metadata(f"{VOLUME}/no/such/file.txt")
    with pytest.raises(NotFound):
        w.files.delete(f"{VOLUME}/no/such/file.txt")


def test_file_where_a_parent_directory_should_be_is_refused(w):
    w.files.upload(f"{VOLUME}/plain.txt", io.BytesIO(b"x"))
    with pytest.raises(AlreadyExists, match="plain.txt is a file"):
        w.files.upload(f"{VOLUME}/plain.txt/child.txt", io.BytesIO(b"y"))


def test_non_empty_directory_delete_is_refused(w):
    w.files.upload(f"{VOLUME}/full/a.txt", io.BytesIO(b"x"))
    with pytest.raises(BadRequest, match="not empty"):
        w.files.delete_directory(f"{VOLUME}/full")


def test_two_workspaces_on_one_metastore_see_the_same_file(files_workspace, tmp_path, w):
    other = start_workspace(
        "files-prod",
        tmp_path / "ws2",
        token=TOKEN,
        extra_args=["--metastore-dir", str(files_workspace.metastore_dir)],
    )
    try:
        w.files.upload(f"{VOLUME}/shared.txt", io.BytesIO(b"from dev"))
        prod = WorkspaceClient(host=other.url, token=TOKEN)
        assert prod.files.download(f"{VOLUME}/shared.txt").contents.read() == b"from dev"
        assert "landing" in {v.name for v in prod.volumes.list(catalog_name="files_cat", schema_name="ml")}
    finally:
        other.stop()


def test_sdk_dbutils_fs_on_volumes_probes_files_and_directories(w):
    # databricks-sdk's dbutils.fs tells files from directories by HEAD on each endpoint (a 404
    # from the other one), then copies through the Files API.
    w.dbutils.fs.put(f"{VOLUME}/dbutils/a.txt", "from dbutils", True)
    w.dbutils.fs.cp(f"{VOLUME}/dbutils/a.txt", f"{VOLUME}/dbutils/b.txt")
    assert w.dbutils.fs.head(f"{VOLUME}/dbutils/b.txt") == "from dbutils"
    assert sorted(f.name for f in w.dbutils.fs.ls(f"{VOLUME}/dbutils")) == ["a.txt", "b.txt"]
    w.dbutils.fs.rm(f"{VOLUME}/dbutils", recurse=True)
    with pytest.raises(NotFound):
        w.files.get_directory_metadata(f"{VOLUME}/dbutils")


def test_model_version_storage_is_served_under_models_paths(w, files_workspace):
    # The registry keeps a version's files in the metastore; clients list and fetch them as /Models/...
    from devstack.workspace.unity_catalog.backend import Metastore

    metastore = Metastore(files_workspace.metastore_dir)
    (metastore.model_storage_dir("files_cat", "ml", "diabetes", 1) / "MLmodel").write_text("flavors: {}\n")
    metastore.close()
    entries = list(w.files.list_directory_contents("/Models/files_cat/ml/diabetes/1"))
    assert [(e.name, e.path) for e in entries] == [("MLmodel", "/Models/files_cat/ml/diabetes/1/MLmodel")]
    assert w.files.download("/Models/files_cat/ml/diabetes/1/MLmodel").contents.read() == b"flavors: {}\n"
    with pytest.raises(NotFound, match="SCHEMA_DOES_NOT_EXIST|Schema 'files_cat.nope'"):
        list(w.files.list_directory_contents("/Models/files_cat/nope/diabetes/1"))


def test_backend_in_process_pages_by_last_name_and_hides_uploads_in_flight(tmp_path):
    """The Files backend on a metastore, without HTTP: a page token is the last name returned, so
    a file added before it meanwhile does not shift the next page; a half-written upload is not
    listed; a volume's root cannot be deleted as a directory."""
    from devstack.workspace.files.backend import FilesBackend
    from devstack.workspace.http import ApiError
    from devstack.workspace.unity_catalog.backend import Metastore

    metastore = Metastore(tmp_path / "metastore")
    metastore.create_catalog("c")
    metastore.create_schema("c", "s")
    metastore.create_volume("c", "s", "v", volume_type="MANAGED")
    files = FilesBackend(metastore)
    for name in ("b", "d", "f"):
        files.upload(f"/Volumes/c/s/v/dir/{name}.txt", name.encode())
    (metastore.local_path("/Volumes/c/s/v/dir") / ".g.txt.upload").write_bytes(b"half")

    first = files.list("/Volumes/c/s/v/dir", page_size=2)
    assert [e["name"] for e in first["contents"]] == ["b.txt", "d.txt"]
    files.upload("/Volumes/c/s/v/dir/a.txt", b"late")
    rest = files.list("/Volumes/c/s/v/dir", page_size=2, page_token=first["next_page_token"])
    assert [e["name"] for e in rest["contents"]] == ["f.txt"] and "next_page_token" not in rest
    assert files.read("/Volumes/c/s/v/dir/d.txt") == b"d"
    with pytest.raises(ApiError) as root:
        files.delete_directory("/Volumes/c/s/v")
    assert "root of a volume" in root.value.message
