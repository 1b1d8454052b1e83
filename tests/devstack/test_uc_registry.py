"""The Unity Catalog model registry (``databricks-uc``) of the emulated workspaces.

MLflow's own client talks to two workspaces (dev, prod) that share one MLflow server and one
metastore directory, as Azure workspaces attach to one Unity Catalog metastore: what dev
registers, prod sees by alias, copies and loads.
"""

from __future__ import annotations

from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from devstack.services import start_workspace
from devstack.workspace.unity_catalog.backend import Metastore

TOKEN = "dapi-uc-registry-test"
UC = "/api/2.0/mlflow/unity-catalog"


@pytest.fixture(scope="module")
def uc(tmp_path_factory, mlflow_server):
    """dev and prod workspaces on one MLflow server and one metastore holding dev.ml and prod.ml."""
    root = tmp_path_factory.mktemp("uc-registry")
    metastore_dir = root / "metastore"
    metastore = Metastore(metastore_dir)
    for catalog in ("dev", "prod"):
        metastore.create_catalog(catalog)
        metastore.create_schema(catalog, "ml")
    metastore.close()
    shared = ["--metastore-dir", str(metastore_dir)]
    dev = start_workspace(
        "uc-dev", root / "dev", token=TOKEN, mlflow_tracking_uri=mlflow_server.url, extra_args=shared
    )
    prod = start_workspace(
        "uc-prod", root / "prod", token=TOKEN, mlflow_tracking_uri=mlflow_server.url, extra_args=shared
    )
    config = root / "databrickscfg"
    config.write_text(
        # DEFAULT is dev: the plain "databricks" / "databricks-uc" URIs (no profile) reach it.
        f"[DEFAULT]\nhost = {dev.url}\ntoken = {TOKEN}\n\n"
        f"[dev]\nhost = {dev.url}\ntoken = {TOKEN}\n\n[prod]\nhost = {prod.url}\ntoken = {TOKEN}\n"
    )
    yield SimpleNamespace(dev=dev, prod=prod, config=config, mlflow=mlflow_server)
    prod.stop()
    dev.stop()


@pytest.fixture
def clients(uc, monkeypatch):
    """MLflow clients on registry databricks-uc://dev and ://prod; tracking on the MLflow server."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    for name in ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_CONFIG_PROFILE", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(uc.config))
    mlflow.set_tracking_uri(uc.mlflow.url)
    mlflow.set_registry_uri("databricks-uc://dev")
    yield SimpleNamespace(
        dev=mlflow.MlflowClient(tracking_uri=uc.mlflow.url, registry_uri="databricks-uc://dev"),
        prod=mlflow.MlflowClient(tracking_uri=uc.mlflow.url, registry_uri="databricks-uc://prod"),
    )
    mlflow.set_registry_uri(None)
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def data():
    import numpy as np

    rng = np.random.default_rng(7)
    x = rng.normal(size=(40, 3))
    return x, x @ [1.5, -2.0, 0.5] + 3.0


def _log_model(data):
    """A small scikit-learn model, with the signature Unity Catalog requires, on the MLflow server."""
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    x, y = data
    model = LinearRegression().fit(x, y)
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(model, name="model", signature=infer_signature(x, model.predict(x)))
    return run.info.run_id, info.model_uri, model


def _call(ws, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(
        method, f"{ws.url}{path}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30, **kwargs
    )


# --------------------------------------------------------------------------- the lifecycle


def test_register_alias_tag_copy_and_load_from_another_workspace(uc, clients, data):
    import mlflow

    run_id, model_uri, model = _log_model(data)
    mv = mlflow.register_model(model_uri, "dev.ml.m", tags={"git_sha": "abc123"})
    assert (mv.name, mv.version, mv.status) == ("dev.ml.m", "1", "READY")
    assert mv.run_id == run_id

    clients.dev.set_registered_model_alias("dev.ml.m", "challenger", mv.version)
    clients.dev.set_registered_model_tag("dev.ml.m", "team", "mlops")
    clients.dev.set_model_version_tag("dev.ml.m", mv.version, "validated", "false")

    # One metastore: prod sees what dev registered, by alias, with its tags.
    seen = clients.prod.get_model_version_by_alias("dev.ml.m", "challenger")
    assert seen.version == "1"
    assert seen.tags == {"git_sha": "abc123", "validated": "false"}  # bookkeeping tags stay hidden
    model_seen = clients.prod.get_registered_model("dev.ml.m")
    assert model_seen.aliases == {"challenger": "1"}
    assert model_seen.tags == {"team": "mlops"}
    assert [v.version for v in clients.prod.search_model_versions("name = 'dev.ml.m'")] == ["1"]
    assert "dev.ml.m" in [m.name for m in clients.prod.search_registered_models()]

    # The MLflow server's own registry (what its UI shows) holds the same model and alias.
    server = mlflow.MlflowClient(tracking_uri=uc.mlflow.url, registry_uri=uc.mlflow.url)
    assert server.get_registered_model("dev.ml.m").aliases == {"challenger": "1"}

    # Promotion: prod copies the version (download + re-upload through presigned URLs).
    copied = clients.prod.copy_model_version("models:/dev.ml.m@challenger", "prod.ml.m")
    assert (copied.name, copied.version, copied.status) == ("prod.ml.m", "1", "READY")
    assert copied.source == "models:/dev.ml.m/1"
    clients.prod.set_registered_model_alias("prod.ml.m", "champion", copied.version)

    # Load by alias through the prod workspace: same predictions as the trained model.
    x, _ = data
    mlflow.set_registry_uri("databricks-uc://prod")
    for uri in ("models:/prod.ml.m@champion", "models:/dev.ml.m@challenger"):
        loaded = mlflow.pyfunc.load_model(uri)
        assert loaded.predict(x).tolist() == pytest.approx(model.predict(x).tolist())

    # Moving the alias and deleting it are seen from the other workspace.
    clients.dev.delete_registered_model_alias("dev.ml.m", "challenger")
    assert clients.prod.get_registered_model("dev.ml.m").aliases == {}


def test_version_files_are_read_only_once_finalized(uc, clients, data):
    import mlflow

    _, model_uri, _ = _log_model(data)
    mv = mlflow.register_model(model_uri, "dev.ml.frozen")
    answer = _call(
        uc.dev,
        "POST",
        f"{UC}/model-versions/generate-temporary-credentials",
        json={
            "name": "dev.ml.frozen",
            "version": mv.version,
            "operation": "MODEL_VERSION_OPERATION_READ_WRITE",
        },
    )
    assert answer.status_code == 400
    assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "READY" in answer.json()["message"]
    read = _call(
        uc.dev,
        "POST",
        f"{UC}/model-versions/generate-temporary-credentials",
        json={"name": "dev.ml.frozen", "version": mv.version, "operation": "MODEL_VERSION_OPERATION_READ"},
    )
    assert read.json()["credentials"]["storage_mode"] == "DEFAULT_STORAGE"
    upload = _call(
        uc.dev,
        "POST",
        "/api/2.0/fs/create-upload-url",
        json={"path": f"/Models/dev/ml/frozen/{mv.version}/MLmodel"},
    )
    assert (upload.status_code, upload.json()["error_code"]) == (403, "PERMISSION_DENIED")


def test_presigned_urls_are_signed_and_expire(uc, clients, data):
    import mlflow

    _, model_uri, _ = _log_model(data)
    mv = mlflow.register_model(model_uri, "dev.ml.signed")
    path = f"/Models/dev/ml/signed/{mv.version}/MLmodel"
    url = _call(uc.dev, "POST", "/api/2.0/fs/create-download-url", json={"path": path}).json()["url"]
    got = requests.get(url, timeout=30)  # no Authorization: the signature is the credential
    assert got.status_code == 200 and b"flavors" in got.content

    query = parse_qs(urlsplit(url).query)
    forged = requests.get(url.replace(query["sig"][0], "0" * 64), timeout=30)
    assert (forged.status_code, forged.json()["error_code"]) == (403, "PERMISSION_DENIED")
    # A read URL does not allow writing.
    assert requests.put(url, data=b"x", timeout=30).status_code == 403


# --------------------------------------------------------------------------- bad input


def test_two_level_name_gets_the_three_levels_error_and_the_clients_hint(uc, clients):
    from mlflow.exceptions import MlflowException

    answer = _call(uc.dev, "POST", f"{UC}/registered-models/create", json={"name": "ml.m"})
    assert (answer.status_code, answer.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert "specify all three levels" in answer.json()["message"]
    with pytest.raises(MlflowException, match="legacy Workspace Model Registry"):
        clients.dev.create_registered_model("ml.m")


@pytest.mark.parametrize(
    ("name", "code", "named"),
    [
        ("nope.ml.m", "CATALOG_DOES_NOT_EXIST", "'nope'"),
        ("dev.nope.m", "SCHEMA_DOES_NOT_EXIST", "'dev.nope'"),
    ],
)
def test_unknown_catalog_or_schema_is_named(uc, name, code, named):
    answer = _call(uc.dev, "POST", f"{UC}/registered-models/create", json={"name": name})
    assert (answer.status_code, answer.json()["error_code"]) == (404, code)
    assert named in answer.json()["message"]


def test_stage_transition_on_a_unity_catalog_model_is_refused(uc, clients, data):
    import mlflow
    from mlflow.exceptions import MlflowException

    _, model_uri, _ = _log_model(data)
    mv = mlflow.register_model(model_uri, "dev.ml.staged")
    with pytest.raises(MlflowException, match="aliases instead of stages"):
        clients.dev.transition_model_version_stage("dev.ml.staged", mv.version, "Production")
    # Through the workspace registry's endpoint, the only one a stage request can reach.
    answer = _call(
        uc.dev,
        "POST",
        "/api/2.0/mlflow/model-versions/transition-stage",
        json={"name": "dev.ml.staged", "version": mv.version, "stage": "Production"},
    )
    assert (answer.status_code, answer.json()["error_code"]) == (400, "INVALID_PARAMETER_VALUE")
    assert "set_registered_model_alias" in answer.json()["message"]
    assert clients.dev.get_model_version("dev.ml.staged", mv.version).current_stage in (None, "", "None")


def test_alias_on_a_missing_version_is_refused(uc, clients, data):
    import mlflow

    _, model_uri, _ = _log_model(data)
    mlflow.register_model(model_uri, "dev.ml.aliased")
    answer = _call(
        uc.dev,
        "POST",
        f"{UC}/registered-models/alias",
        json={"name": "dev.ml.aliased", "alias": "champion", "version": "99"},
    )
    assert (answer.status_code, answer.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert "99" in answer.json()["message"] and "dev.ml.aliased" in answer.json()["message"]
    assert clients.dev.get_registered_model("dev.ml.aliased").aliases == {}


def test_every_call_of_the_client_has_a_route(tmp_path):
    """Each UcModelRegistryService and FilesystemService call of mlflow's protos is served."""
    from mlflow.protos.databricks_filesystem_service_pb2 import FilesystemService
    from mlflow.protos.databricks_uc_registry_service_pb2 import UcModelRegistryService
    from mlflow.utils.rest_utils import _REST_API_PATH_PREFIX, extract_api_info_for_service

    from devstack.workspace.app import Workspace
    from devstack.workspace.context import WorkspaceContext
    from devstack.workspace.store import Store

    ctx = WorkspaceContext(
        name="t", host="127.0.0.1", port=0, data_dir=tmp_path, token="t", store=Store(tmp_path / "db")
    )
    workspace = Workspace(ctx)
    try:
        for service in (UcModelRegistryService, FilesystemService):
            for path, method in extract_api_info_for_service(service, _REST_API_PATH_PREFIX).values():
                workspace.router.match(method, path)  # raises ENDPOINT_NOT_FOUND when missing
    finally:
        workspace.close()


def test_update_rename_and_delete_as_unity_catalog_does(uc, clients, data):
    import mlflow
    from mlflow.exceptions import MlflowException

    _, model_uri, _ = _log_model(data)
    mv = mlflow.register_model(model_uri, "dev.ml.before")
    clients.dev.update_registered_model("dev.ml.before", description="baseline")
    clients.dev.update_model_version("dev.ml.before", mv.version, description="first try")
    clients.dev.rename_registered_model("dev.ml.before", "after")  # a leaf name: same schema
    renamed = clients.prod.get_registered_model("dev.ml.after")
    assert (renamed.name, renamed.description) == ("dev.ml.after", "baseline")
    assert clients.prod.get_model_version("dev.ml.after", mv.version).description == "first try"
    storage = clients.prod.get_model_version_download_uri("dev.ml.after", mv.version)
    assert storage.startswith("file://") and storage.endswith("/models/dev/ml/after/1")

    clients.dev.delete_model_version("dev.ml.after", mv.version)
    with pytest.raises(
        MlflowException, match="Model version 1 of registered model 'dev.ml.after' does not exist"
    ):
        clients.prod.get_model_version("dev.ml.after", mv.version)
    clients.dev.delete_registered_model("dev.ml.after")
    answer = _call(uc.prod, "GET", f"{UC}/registered-models/get", params={"name": "dev.ml.after"})
    assert (answer.status_code, answer.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")


def test_presigned_url_past_its_expiry_is_refused():
    from devstack.workspace.http import ApiError
    from devstack.workspace.mlflow.uc_registry_backend import PresignedUrls

    path = "/Models/dev/ml/m/1/MLmodel"
    expired = PresignedUrls(ttl_seconds=-1)
    signed = expired.sign(path, "read")
    with pytest.raises(ApiError, match="expired") as info:
        expired.verify(signed["t"], signed["sig"], "read")
    assert (info.value.status, info.value.error_code) == (403, "PERMISSION_DENIED")
    fresh = PresignedUrls(key=expired.key)
    signed = fresh.sign(path, "read")
    assert fresh.verify(signed["t"], signed["sig"], "read") == path


def test_version_search_takes_unity_catalogs_filters_only(uc, clients, data):
    import mlflow
    from mlflow.exceptions import MlflowException

    run_id, model_uri, _ = _log_model(data)
    mv = mlflow.register_model(model_uri, "dev.ml.searched")
    by_run = clients.prod.search_model_versions(f"run_id = '{run_id}'")
    assert [(v.name, v.version) for v in by_run] == [("dev.ml.searched", mv.version)]
    assert [v.version for v in clients.prod.search_model_versions('name = "dev.ml.searched"')] == [mv.version]
    # The MLflow server behind would answer a tag filter; Unity Catalog on Azure does not.
    with pytest.raises(MlflowException, match="one condition") as info:
        clients.prod.search_model_versions("tags.validated = 'true'")
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"


def test_the_databricks_road_log_through_the_workspace_register_and_load_from_prod(uc, clients, data):
    """Tracking ``databricks`` and registry ``databricks-uc``, as notebooks on Azure use them."""
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    x, y = data
    model = LinearRegression().fit(x, y)
    mlflow.set_tracking_uri("databricks")  # DEFAULT profile: the dev workspace
    mlflow.set_registry_uri("databricks-uc")
    experiment = mlflow.MlflowClient().create_experiment("/Shared/uc-registry-test")
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(x, model.predict(x)),
            registered_model_name="dev.ml.tracked",
        )
    mv = clients.dev.get_model_version("dev.ml.tracked", info.registered_model_version)
    assert (mv.status, mv.model_id, mv.source) == ("READY", info.model_id, info.model_uri)
    # The source run's workspace is recorded, from the X-Databricks-Org-Id the workspace answers.
    raw = _call(
        uc.prod, "GET", f"{UC}/model-versions/get", params={"name": "dev.ml.tracked", "version": mv.version}
    )
    org_id = _call(uc.dev, "GET", "/api/2.0/preview/scim/v2/Me").headers["X-Databricks-Org-Id"]
    assert raw.json()["model_version"]["run_tracking_server_id"] == org_id

    clients.dev.set_registered_model_alias("dev.ml.tracked", "challenger", mv.version)
    mlflow.set_registry_uri("databricks-uc://prod")
    loaded = mlflow.pyfunc.load_model("models:/dev.ml.tracked@challenger")
    assert loaded.predict(x).tolist() == pytest.approx(model.predict(x).tolist())
