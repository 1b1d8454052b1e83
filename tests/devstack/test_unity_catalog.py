"""Unity Catalog: the shared metastore (in-process) and its catalogs/schemas/volumes API."""

from __future__ import annotations

import pytest

from devstack.workspace.http import ApiError
from devstack.workspace.unity_catalog.backend import Metastore

# --------------------------------------------------------------------------- the metastore itself


@pytest.fixture
def metastore(tmp_path) -> Metastore:
    store = Metastore(tmp_path / "metastore")
    store.create_catalog("dev")
    store.create_schema("dev", "ml")
    yield store
    store.close()


def test_two_metastore_handles_on_one_dir_share_volumes(metastore, tmp_path):
    other = Metastore(tmp_path / "metastore")
    metastore.create_volume("dev", "ml", "landing")
    other.local_path("/Volumes/dev/ml/landing/a.csv").write_text("x\n1\n")
    assert metastore.local_path("/Volumes/dev/ml/landing/a.csv").read_text() == "x\n1\n"
    other.close()


@pytest.mark.parametrize(
    ("catalog", "schema", "code", "named"),
    [
        ("nope", "ml", "CATALOG_DOES_NOT_EXIST", "'nope'"),
        ("dev", "nope", "SCHEMA_DOES_NOT_EXIST", "'dev.nope'"),
    ],
)
def test_require_schema_names_what_is_missing(metastore, catalog, schema, code, named):
    with pytest.raises(ApiError) as info:
        metastore.require_schema(catalog, schema)
    assert (info.value.status, info.value.error_code) == (404, code)
    assert named in info.value.message


def test_local_path_refuses_paths_outside_volumes_and_climbing(metastore):
    metastore.create_volume("dev", "ml", "landing")
    with pytest.raises(ApiError) as info:
        metastore.local_path("/tmp/x")
    assert info.value.status == 400 and "/Volumes/<catalog>" in info.value.message
    with pytest.raises(ApiError) as info:
        metastore.local_path("/Volumes/dev/ml/missing/x")
    assert info.value.status == 404 and "dev.ml.missing" in info.value.message
    inside = metastore.local_path("/Volumes/dev/ml/landing/../../../../etc/passwd")
    assert inside.is_relative_to(metastore.root / "volumes" / "dev" / "ml" / "landing")


def test_model_storage_is_under_models_and_reached_by_files_paths(metastore):
    directory = metastore.model_storage_dir("dev", "ml", "diabetes", 3)
    assert directory == metastore.root / "models" / "dev" / "ml" / "diabetes" / "3"
    assert metastore.local_path("/Models/dev/ml/diabetes/3/MLmodel") == directory / "MLmodel"


# --------------------------------------------------------------------------- the REST API, over HTTP

TOKEN = "dapi-uc-test"


@pytest.fixture(scope="module")
def uc_workspace(tmp_path_factory):
    from devstack.services import start_workspace

    root = tmp_path_factory.mktemp("uc")
    service = start_workspace(
        "uc", root / "ws", token=TOKEN, extra_args=["--metastore-dir", str(root / "metastore")]
    )
    yield service
    service.stop()


@pytest.fixture
def w(uc_workspace):
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(host=uc_workspace.url, token=TOKEN)


def test_sdk_catalog_schema_volume_lifecycle(w):
    from databricks.sdk.service.catalog import VolumeType

    catalog = w.catalogs.create(name="Lifecycle", comment="made by a test")
    assert catalog.name == "lifecycle" and catalog.comment == "made by a test" and catalog.created_at
    assert {s.name for s in w.schemas.list(catalog_name="lifecycle")} == {"default", "information_schema"}
    schema = w.schemas.create(name="ml", catalog_name="lifecycle")
    assert schema.full_name == "lifecycle.ml"
    volume = w.volumes.create(
        catalog_name="lifecycle", schema_name="ml", name="landing", volume_type=VolumeType.MANAGED
    )
    assert volume.full_name == "lifecycle.ml.landing" and volume.volume_type == VolumeType.MANAGED
    assert w.volumes.read("lifecycle.ml.landing").volume_id == volume.volume_id
    assert [v.name for v in w.volumes.list(catalog_name="lifecycle", schema_name="ml")] == ["landing"]
    assert "lifecycle" in {c.name for c in w.catalogs.list()}

    assert w.catalogs.update("lifecycle", comment="renamed?").comment == "renamed?"
    assert w.schemas.update("lifecycle.ml", comment="models").comment == "models"
    assert w.volumes.update("lifecycle.ml.landing", new_name="raw").full_name == "lifecycle.ml.raw"

    w.volumes.delete("lifecycle.ml.raw")
    w.schemas.delete("lifecycle.ml")
    w.catalogs.delete("lifecycle")
    assert "lifecycle" not in {c.name for c in w.catalogs.list()}


def test_sdk_list_follows_pages(w):
    for i in range(3):
        w.catalogs.create(name=f"paged_{i}")
    response = w.api_client.do("GET", "/api/2.1/unity-catalog/catalogs", query={"max_results": 2})
    assert len(response["catalogs"]) == 2 and response["next_page_token"]
    assert {f"paged_{i}" for i in range(3)} <= {c.name for c in w.catalogs.list(max_results=1)}


def test_bad_input_answers_databricks_errors(w):
    from databricks.sdk.errors import BadRequest, NotFound, ResourceConflict
    from databricks.sdk.service.catalog import VolumeType

    w.catalogs.create(name="errs")
    with pytest.raises(ResourceConflict, match="Catalog 'errs' already exists"):
        w.catalogs.create(name="errs")
    with pytest.raises(NotFound, match="Catalog 'nowhere' does not exist") as info:
        w.schemas.create(name="ml", catalog_name="nowhere")
    assert info.value.error_code == "CATALOG_DOES_NOT_EXIST"
    with pytest.raises(NotFound, match="Schema 'errs.nothing' does not exist") as info:
        w.schemas.get("errs.nothing")
    assert info.value.error_code == "SCHEMA_DOES_NOT_EXIST"
    with pytest.raises(BadRequest, match="expected <catalog>.<schema>.<volume>"):
        w.volumes.read("errs.default")
    w.schemas.create(name="full", catalog_name="errs")
    w.volumes.create(catalog_name="errs", schema_name="full", name="v", volume_type=VolumeType.MANAGED)
    with pytest.raises(BadRequest, match="not empty") as info:
        w.catalogs.delete("errs")
    assert info.value.error_code == "CATALOG_NOT_EMPTY"
    with pytest.raises(BadRequest, match="storage_location"):
        w.volumes.create(catalog_name="errs", schema_name="full", name="ext", volume_type=VolumeType.EXTERNAL)
    w.catalogs.delete("errs", force=True)
    with pytest.raises(NotFound):
        w.volumes.read("errs.full.v")
