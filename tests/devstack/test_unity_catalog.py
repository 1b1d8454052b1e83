"""Unity Catalog: the shared metastore (in-process) and its catalogs/schemas/volumes API."""

from __future__ import annotations

import pytest

from devstack.workspace.api import ApiError
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
