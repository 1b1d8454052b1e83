"""The registry hook signs in to a Databricks workspace exactly as the provider's DatabricksHook.

Real parts: the provider's hook (its token flows, cache and refresh), azure-identity and MSAL,
MLflow's own client, the devstack's Entra ID stand-in (tokens, JWKS, managed-identity endpoint)
and the emulated workspace. Mocked, at the HTTP boundary, only what cannot run here: Microsoft's
instance discovery (login.microsoftonline.com) and the Azure VM's instance metadata service.

Every test runs with sockets limited to the loopback interface: a request meant for the
internet fails the test instead of leaving the machine.
"""

from __future__ import annotations

import io
import json
import os
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from mlops.exceptions import ModelRegistryError
from mlops.hooks import MlflowRegistryHook
from mlops.triggers import ModelVersionTrigger

from devstack import tls
from devstack.entra.backend import DATABRICKS_RESOURCE, MANAGEMENT_RESOURCE, Directory
from devstack.services import start_entra, start_workspace
from devstack.workspace.unity_catalog.backend import Metastore

CREDENTIAL_VARS = ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_USERNAME", "DATABRICKS_PASSWORD")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
WORKSPACE_RESOURCE_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/ml/providers/"
    "Microsoft.Databricks/workspaces/dev"
)


# --------------------------------------------------------------------------- network fences


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Refuse to resolve or connect to anything but 127.0.0.1 in this process."""
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect
    refused: list[str] = []

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name not in LOOPBACK:
            refused.append(name)
            raise OSError(f"test network fence: {name} is not on the loopback interface")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self, address):
        if isinstance(address, tuple) and address[0] not in LOOPBACK:
            refused.append(str(address[0]))
            raise OSError(f"test network fence: {address[0]} is not on the loopback interface")
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    yield refused
    assert not refused, f"requests meant to leave the machine: {refused}"


@pytest.fixture(scope="module")
def entra(tmp_path_factory):
    """The Entra ID stand-in (https, devstack CA) and its directory, for creating identities."""
    root = tmp_path_factory.mktemp("entra")
    service = start_entra(root / "data", tls_dir=root / "tls")
    yield service, Directory(root / "data"), tls.ca_bundle(root / "tls")
    service.stop()


@pytest.fixture
def azure(entra, monkeypatch):
    """azure-identity pointed at the stand-in, with Microsoft's instance discovery answered here.

    MSAL asks https://login.microsoftonline.com/common/discovery/instance about any authority it
    does not know (msal/authority.py). The answer Microsoft gives for its own clouds is the
    authority's OpenID configuration URL: we give the stand-in's, without leaving the machine.
    """
    from requests.adapters import HTTPAdapter

    service, directory, bundle = entra
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", service.url)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    real_send = HTTPAdapter.send
    asked: list[str] = []

    def send(self, request, *args, **kwargs):
        parts = urlsplit(request.url)
        if parts.hostname == "login.microsoftonline.com" and parts.path == "/common/discovery/instance":
            import urllib3

            authorize = urlsplit(parse_qs(parts.query)["authorization_endpoint"][0])
            tenant = authorize.path.split("/")[1]
            asked.append(tenant)
            body = json.dumps(
                {
                    "tenant_discovery_endpoint": f"{service.url}/{tenant}/v2.0/.well-known/openid-configuration",
                    "api-version": "1.1",
                    "metadata": [],
                }
            ).encode()
            raw = urllib3.HTTPResponse(
                body=io.BytesIO(body),
                status=200,
                headers={"Content-Type": "application/json", "Content-Length": str(len(body))},
                preload_content=False,
            )
            return self.build_response(request, raw)
        return real_send(self, request, *args, **kwargs)

    monkeypatch.setattr(HTTPAdapter, "send", send)
    for var in CREDENTIAL_VARS:
        monkeypatch.delenv(var, raising=False)
    return service, directory, bundle


def _serve(handler_class) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class HeaderProxy:
    """Pass-through proxy on 127.0.0.1 in front of a real server, recording every request's headers."""

    def __init__(self, target_url: str):
        import http.client

        target = urlsplit(target_url)
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                proxy.requests.append((self.command, self.path, dict(self.headers.items())))
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PATCH = do_DELETE = _forward

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _serve(Handler)
        self.port = self.server.server_address[1]

    def mlflow_requests(self) -> list[dict[str, str]]:
        return [headers for _, path, headers in self.requests if "/api/2.0/mlflow/" in path]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def workspace_mlflow(sqlite_registry):
    """The workspace registry's REST API as MLflow's `databricks` client calls it (a real MLflow
    server behind a header-recording proxy), to see what the hook sends."""
    proxy = HeaderProxy(sqlite_registry.url)
    yield proxy
    proxy.stop()


def _connection(monkeypatch, conn_id: str, port: int, **fields: Any) -> None:
    conn = {"conn_type": "databricks", "host": "127.0.0.1", "port": port, "schema": "http", **fields}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def _claims(entra, token: str, audience: str) -> dict[str, Any]:
    """The claims of ``token`` after checking its signature against the stand-in's JWKS."""
    import jwt
    import requests

    service, directory, bundle = entra
    keys = requests.get(
        f"{service.url}/{directory.tenant_id}/discovery/v2.0/keys", verify=str(bundle), timeout=10
    ).json()
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwt.PyJWKSet.from_dict(keys).keys if k.key_id == kid)
    return jwt.decode(token, key.key, algorithms=["RS256"], audience=audience)


def _bearers(headers: list[dict[str, str]]) -> set[str]:
    found = set()
    for h in headers:
        scheme, _, value = (h.get("Authorization") or "").partition(" ")
        assert scheme == "Bearer", f"not a bearer token: {scheme!r}"
        found.add(value)
    return found


def _register(hook: MlflowRegistryHook, registry, name: str) -> str:
    model = registry.models[0]
    hook.create_registered_model(name)
    mv = hook.create_model_version(name, model.model_uri, run_id=model.run_id, model_id=model.model_id)
    return hook.wait_until_ready(name, mv.version, 30).version


# --------------------------------------------------------------------------- Entra ID


def test_entra_service_principal_signs_in_with_a_token_never_its_secret(
    azure, workspace_mlflow, sqlite_registry, model_name, monkeypatch, caplog, capfd
):
    service, directory, _ = azure
    sp = directory.create_service_principal("mlops-registry-dev")
    _connection(
        monkeypatch,
        "databricks_sp",
        workspace_mlflow.port,
        login=sp.client_id,
        password=sp.secret,
        extra={"azure_tenant_id": sp.tenant_id},
    )
    hook = MlflowRegistryHook(databricks_conn_id="databricks_sp", registry_uri="databricks")
    version = _register(hook, sqlite_registry, model_name)
    assert sqlite_registry.client().get_model_version(model_name, version).status == "READY"

    sent = workspace_mlflow.mlflow_requests()
    tokens = _bearers(sent)
    assert len(tokens) == 1, "the provider's token is cached across calls, not fetched per call"
    claims = _claims(azure, tokens.pop(), DATABRICKS_RESOURCE)
    assert (claims["appid"], claims["tid"]) == (sp.client_id, sp.tenant_id)
    # a workspace user: no management-token headers
    assert not [h for h in sent if "X-Databricks-Azure-SP-Management-Token" in h]
    logs = caplog.text + "".join(capfd.readouterr())  # stdlib logging and Airflow's structlog
    assert sp.secret not in json.dumps(workspace_mlflow.requests) + logs
    assert not [var for var in CREDENTIAL_VARS if var in os.environ]


def test_service_principal_outside_the_workspace_sends_the_management_token(
    azure, workspace_mlflow, monkeypatch
):
    _, directory, _ = azure
    sp = directory.create_service_principal("mlops-registry-prod")
    _connection(
        monkeypatch,
        "databricks_sp_mgmt",
        workspace_mlflow.port,
        login=sp.client_id,
        password=sp.secret,
        extra={"azure_tenant_id": sp.tenant_id, "azure_resource_id": WORKSPACE_RESOURCE_ID},
    )
    hook = MlflowRegistryHook(databricks_conn_id="databricks_sp_mgmt", registry_uri="databricks")
    hook.search_registered_model_names(max_results=1)
    hook.search_registered_model_names(max_results=2)

    sent = workspace_mlflow.mlflow_requests()
    assert len(sent) == 2
    for headers in sent:
        assert headers["X-Databricks-Azure-Workspace-Resource-Id"] == WORKSPACE_RESOURCE_ID
        management = _claims(azure, headers["X-Databricks-Azure-SP-Management-Token"], MANAGEMENT_RESOURCE)
        workspace = _claims(azure, headers["Authorization"].removeprefix("Bearer "), DATABRICKS_RESOURCE)
        assert management["appid"] == workspace["appid"] == sp.client_id


@pytest.fixture
def instance_metadata(azure, monkeypatch):
    """The provider checks the Azure VM metadata service before a managed identity: its module
    constant (http://169.254.169.254/metadata/instance) is pointed at the stand-in's copy."""
    from airflow.providers.databricks.hooks import databricks_base

    service, _, _ = azure
    url = f"http://127.0.0.1:{service.port}/metadata/instance"
    monkeypatch.setattr(databricks_base, "AZURE_METADATA_SERVICE_INSTANCE_URL", url)


def test_managed_identity_signs_in_with_no_password(azure, instance_metadata, workspace_mlflow, monkeypatch):
    service, directory, _ = azure
    identity = directory.create_managed_identity("airflow-workers")
    # App Service / Container Apps managed identity: azure-identity calls IDENTITY_ENDPOINT.
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{service.port}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", identity.secret)
    _connection(
        monkeypatch,
        "databricks_mi",
        workspace_mlflow.port,
        extra={"use_azure_managed_identity": True, "azure_managed_identity_client_id": identity.client_id},
    )
    hook = MlflowRegistryHook(databricks_conn_id="databricks_mi", registry_uri="databricks")
    assert hook.test_connection()[0] is True

    (token,) = _bearers(workspace_mlflow.mlflow_requests())
    assert _claims(azure, token, DATABRICKS_RESOURCE)["appid"] == identity.client_id


def test_token_is_refreshed_before_it_expires(azure, workspace_mlflow, monkeypatch):
    _, directory, _ = azure
    sp = directory.create_service_principal("mlops-refresh")
    _connection(
        monkeypatch,
        "databricks_refresh",
        workspace_mlflow.port,
        login=sp.client_id,
        password=sp.secret,
        extra={"azure_tenant_id": sp.tenant_id},
    )
    hook = MlflowRegistryHook(databricks_conn_id="databricks_refresh", registry_uri="databricks")
    hook.search_registered_model_names(max_results=1)
    hook.search_registered_model_names(max_results=1)
    first = _bearers(workspace_mlflow.mlflow_requests())
    assert len(first) == 1

    # The clock moves on: the cached token now expires in 60 s, inside the provider's
    # refresh lead time (TOKEN_REFRESH_LEAD_TIME, 120 s). The next call must not send it.
    (cached,) = hook._signin.oauth_tokens.values()
    cached["expires_on"] = int(time.time()) + 60
    workspace_mlflow.requests.clear()
    hook.search_registered_model_names(max_results=1)
    (second,) = _bearers(workspace_mlflow.mlflow_requests())
    assert second not in first
    assert _claims(azure, second, DATABRICKS_RESOURCE)["appid"] == sp.client_id


def test_wrong_client_secret_fails_naming_the_cause_and_never_the_secret(
    azure, workspace_mlflow, monkeypatch, caplog, capfd
):
    _, directory, _ = azure
    sp = directory.create_service_principal("mlops-wrong-secret")
    wrong = "Xy7" + "8Q~" + "not-the-secret-of-this-application-1"
    _connection(
        monkeypatch,
        "databricks_badsecret",
        workspace_mlflow.port,
        login=sp.client_id,
        password=wrong,
        extra={"azure_tenant_id": sp.tenant_id},
    )
    hook = MlflowRegistryHook(databricks_conn_id="databricks_badsecret", registry_uri="databricks")
    with pytest.raises(ModelRegistryError) as caught:
        hook.search_registered_model_names(max_results=1)
    message = str(caught.value)
    assert "'databricks_badsecret' (Entra ID service principal)" in message
    assert "AADSTS7000215" in message
    logs = caplog.text + "".join(capfd.readouterr())
    assert "AADSTS7000215" in logs, "the refusal is logged"
    assert wrong not in message and wrong not in logs
    assert workspace_mlflow.mlflow_requests() == [], "nothing reaches the workspace without a token"


def test_trigger_signs_in_from_the_triggerer_with_the_async_connection(
    azure, workspace_mlflow, sqlite_registry, model_name, monkeypatch
):
    """The deferrable sensor's trigger: connection read asynchronously, tokens fetched by the
    provider's sync flow in the poll's worker thread, the event loop never blocked."""
    import asyncio

    _, directory, _ = azure
    sp = directory.create_service_principal("mlops-trigger")
    _connection(
        monkeypatch,
        "databricks_trigger",
        workspace_mlflow.port,
        login=sp.client_id,
        password=sp.secret,
        extra={"azure_tenant_id": sp.tenant_id},
    )
    writer = MlflowRegistryHook(databricks_conn_id="databricks_trigger", registry_uri="databricks")
    version = _register(writer, sqlite_registry, model_name)
    workspace_mlflow.requests.clear()

    trigger = ModelVersionTrigger(
        model_name=model_name,
        version=version,
        databricks_conn_id="databricks_trigger",
        registry_uri="databricks",
        poke_interval=0.2,
        timeout=30,
    )

    async def first_event():
        async for event in trigger.run():
            return event.payload

    event = asyncio.run(first_event())
    assert event["status"] == "success", event
    assert event["version"] == str(version)
    (token,) = _bearers(workspace_mlflow.mlflow_requests())
    assert _claims(azure, token, DATABRICKS_RESOURCE)["appid"] == sp.client_id


# --------------------------------------------------------------------------- the emulated workspace

ADMIN_PAT = "dapi-signin-admin"


@pytest.fixture(scope="module")
def signin_workspace(tmp_path_factory, entra, mlflow_server):
    """An emulated workspace that accepts the stand-in's tokens and Databricks OAuth, TLS on its port
    (the provider fetches OAuth tokens from https://{host}/oidc/v1/token)."""
    service, directory, _ = entra
    data = tmp_path_factory.mktemp("ws-signin")
    tls_dir = service.data_dir.parent / "tls"
    cert, key = tls.issue_server_cert(tls_dir, data / "cert")
    metastore = Metastore(data / "metastore")
    for catalog in ("dev", "prod"):
        metastore.create_catalog(catalog)
        metastore.create_schema(catalog, "ml")
    metastore.close()
    workspace = start_workspace(
        "signin",
        data,
        token=ADMIN_PAT,
        mlflow_tracking_uri=mlflow_server.url,
        extra_args=[
            *("--entra-url", service.url, "--entra-tenant-id", directory.tenant_id),
            *("--entra-ca-file", str(tls_dir / "ca.pem"), "--azure-resource-id", WORKSPACE_RESOURCE_ID),
            *("--tls-cert", str(cert), "--tls-key", str(key)),
            *("--metastore-dir", str(data / "metastore")),
        ],
    )
    yield workspace
    workspace.stop()


@pytest.fixture
def admin(signin_workspace, azure):
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(host=signin_workspace.url, token=ADMIN_PAT)


def _registers(hook: MlflowRegistryHook) -> str:
    """A real Unity Catalog registry call through the hook: create a model, read it back."""
    name = f"dev.ml.signin_{uuid.uuid4().hex[:8]}"
    hook.create_registered_model(name, tags={"purpose": "sign-in test"})
    assert hook.get_registered_model(name).tags == {"purpose": "sign-in test"}
    return name


def _workspace_connection(monkeypatch, conn_id: str, workspace, **fields: Any) -> None:
    """As a production connection: host (here with its port), no schema, the sign-in fields."""
    conn = {"conn_type": "databricks", "host": f"127.0.0.1:{workspace.port}", **fields}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def test_databricks_oauth_m2m_service_principal_is_accepted_by_the_workspace(
    signin_workspace, admin, monkeypatch, caplog, capfd
):
    sp = admin.service_principals.create(display_name="mlops-registry-m2m")
    secret = admin.service_principal_secrets_proxy.create(sp.id).secret
    _workspace_connection(
        monkeypatch,
        "databricks_m2m",
        signin_workspace,
        login=sp.application_id,
        password=secret,
        extra={"service_principal_oauth": True},
    )
    hook = MlflowRegistryHook(databricks_conn_id="databricks_m2m")
    _registers(hook)
    (cached,) = hook._signin.oauth_tokens.values()  # a Databricks OAuth token, not the secret
    first = cached["access_token"]
    assert first != secret
    # Close to expiry (inside the provider's 2-minute lead): the next call signs in again.
    cached["expires_on"] = int(time.time()) + 60
    _registers(hook)
    (renewed,) = hook._signin.oauth_tokens.values()
    assert renewed["access_token"] not in (first, secret)

    wrong = "dose" + "0123456789abcdef0123456789abcdef"
    _workspace_connection(
        monkeypatch,
        "databricks_m2m_wrong",
        signin_workspace,
        login=sp.application_id,
        password=wrong,
        extra={"service_principal_oauth": True},
    )
    with pytest.raises(
        ModelRegistryError, match=r"'databricks_m2m_wrong' \(Databricks OAuth M2M\)"
    ) as caught:
        MlflowRegistryHook(databricks_conn_id="databricks_m2m_wrong").search_registered_model_names()
    logs = caplog.text + "".join(capfd.readouterr())
    assert wrong not in str(caught.value) and wrong not in logs
    assert secret not in logs


def _log_signed_model(tracking_url: str) -> str:
    """A tiny model with the signature Unity Catalog requires, logged on the MLflow server."""
    import mlflow
    import numpy as np
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    x = np.arange(20, dtype=float).reshape(10, 2)
    model = LinearRegression().fit(x, x @ np.array([1.5, -0.5]))
    client = mlflow.MlflowClient(tracking_uri=tracking_url)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_url)
    try:
        mlflow.set_experiment("mlops-signin-tests")
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(x, model.predict(x)),
                pip_requirements=["scikit-learn"],
            )
    finally:
        mlflow.set_tracking_uri(previous)
    assert client.get_logged_model(info.model_id)
    return info.model_uri


def test_service_principal_registers_promotes_and_downloads_a_model_version(
    signin_workspace, admin, mlflow_server, model_name, context, monkeypatch, tmp_path
):
    """The whole registry road on Azure's sign-in: source read through the workspace's tracking,
    version created in Unity Catalog, copied from dev.ml to prod.ml, artifacts moved through
    presigned URLs, alias set, model downloaded back."""
    from mlops.operators import PromoteModelVersionOperator, RegisterModelVersionOperator

    sp = admin.service_principals.create(display_name="mlops-registry-release")
    secret = admin.service_principal_secrets_proxy.create(sp.id).secret
    _workspace_connection(
        monkeypatch,
        "databricks_release",
        signin_workspace,
        login=sp.application_id,
        password=secret,
        extra={"service_principal_oauth": True},
    )
    source = _log_signed_model(mlflow_server.url)
    common = {"databricks_conn_id": "databricks_release", "model_name": model_name}
    register = RegisterModelVersionOperator(task_id="register", model_uri=source, **common)
    first_try = context("register")
    version = register.execute(first_try)
    # A retry finds its version by tags: Unity Catalog's search answers carry none, the hook re-reads them.
    assert register.execute(first_try) == version
    prod_name = model_name.replace("dev.ml.", "prod.ml.", 1)
    promoted = PromoteModelVersionOperator(
        task_id="promote", version=version, alias="champion", target_model_name=prod_name, **common
    ).execute(context("promote"))

    hook = MlflowRegistryHook(databricks_conn_id="databricks_release")
    champion = hook.get_model_version_by_alias(prod_name, "champion")
    assert champion.version == str(promoted["version"])
    local = hook.download_artifacts(
        hook.get_model_version_download_uri(prod_name, champion.version), str(tmp_path)
    )
    assert os.path.isfile(os.path.join(local, "MLmodel"))
    assert not [var for var in CREDENTIAL_VARS if var in os.environ]


def test_managed_identity_registers_in_unity_catalog_once_added(
    signin_workspace, admin, azure, instance_metadata, monkeypatch
):
    service, directory, _ = azure
    identity = directory.create_managed_identity("airflow-workers-uc")
    admin.service_principals.create(application_id=identity.client_id, display_name=identity.display_name)
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{service.port}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", identity.secret)
    _workspace_connection(
        monkeypatch,
        "databricks_mi_uc",
        signin_workspace,
        extra={"use_azure_managed_identity": True, "azure_managed_identity_client_id": identity.client_id},
    )
    _registers(MlflowRegistryHook(databricks_conn_id="databricks_mi_uc"))


def test_entra_service_principal_is_refused_until_added_unless_it_brings_the_management_token(
    signin_workspace, admin, azure, monkeypatch
):
    _, directory, _ = azure
    sp = directory.create_service_principal("mlops-registry-entra")
    fields = {"login": sp.client_id, "password": sp.secret}
    _workspace_connection(
        monkeypatch, "databricks_entra", signin_workspace, **fields, extra={"azure_tenant_id": sp.tenant_id}
    )
    with pytest.raises(Exception) as refused:
        MlflowRegistryHook(databricks_conn_id="databricks_entra").search_registered_model_names()
    assert getattr(refused.value, "error_code", None) == "PERMISSION_DENIED"
    assert "has not been added" in str(refused.value)

    admin.service_principals.create(application_id=sp.client_id, display_name=sp.display_name)
    _registers(MlflowRegistryHook(databricks_conn_id="databricks_entra"))

    # A principal with Azure rights on the workspace (management token) need not be added first.
    outsider = directory.create_service_principal("mlops-registry-contributor")
    _workspace_connection(
        monkeypatch,
        "databricks_contributor",
        signin_workspace,
        login=outsider.client_id,
        password=outsider.secret,
        extra={"azure_tenant_id": outsider.tenant_id, "azure_resource_id": WORKSPACE_RESOURCE_ID},
    )
    _registers(MlflowRegistryHook(databricks_conn_id="databricks_contributor"))


# --------------------------------------------------------------------------- personal access token


def test_personal_access_token_still_signs_in_and_a_wrong_one_is_refused(
    signin_workspace, azure, monkeypatch
):
    _workspace_connection(monkeypatch, "databricks_pat", signin_workspace, password=ADMIN_PAT)
    _registers(MlflowRegistryHook(databricks_conn_id="databricks_pat"))

    _workspace_connection(
        monkeypatch, "databricks_badpat", signin_workspace, password="dapi-not-of-this-workspace"
    )
    with pytest.raises(Exception) as refused:
        MlflowRegistryHook(databricks_conn_id="databricks_badpat").search_registered_model_names()
    assert getattr(refused.value, "error_code", None) in ("PERMISSION_DENIED", "UNAUTHENTICATED"), (
        refused.value
    )
    assert not [var for var in CREDENTIAL_VARS if var in os.environ]
