"""Sign-in as on Azure: the Entra ID stand-in, Databricks OAuth M2M, managed identity, SCIM identities.

Real clients throughout: the provider's DatabricksHook, databricks-sdk, azure-identity. The only
thing patched is the provider's Instance Metadata Service URL (169.254.169.254 is not ours to
call), pointed at the stand-in's local copy.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import PermissionDenied, Unauthenticated

from devstack import tls
from devstack.entra.backend import DATABRICKS_RESOURCE, MANAGEMENT_RESOURCE, Directory
from devstack.services import start_entra, start_workspace

PAT = "dapi-identity-test-token"
RESOURCE_ID = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/devstack/providers/Microsoft.Databricks/workspaces/signin"


@pytest.fixture(scope="module")
def entra(tmp_path_factory):
    service = start_entra(tmp_path_factory.mktemp("entra"))
    yield service
    service.stop()


@pytest.fixture(scope="module")
def directory(entra) -> Directory:
    """The stand-in's tenant, opened in-process on the same files (identities are created here)."""
    return Directory(entra.data_dir)


@pytest.fixture(scope="module")
def ca_bundle(entra):
    return tls.ca_bundle(entra.data_dir / "tls")


@pytest.fixture(scope="module")
def ws(tmp_path_factory, entra, directory):
    data = tmp_path_factory.mktemp("ws-signin")
    service = start_workspace(
        "signin",
        data,
        token=PAT,
        extra_args=[
            *("--entra-url", entra.url, "--entra-tenant-id", directory.tenant_id),
            *("--entra-ca-file", str(entra.data_dir / "tls" / "ca.pem")),
            *("--azure-resource-id", RESOURCE_ID),
            # The workspace issues its own certificate from the devstack CA (as compose would).
            *("--tls-ca-dir", str(entra.data_dir / "tls"), "--tls-name", "localhost"),
        ],
    )
    yield service
    service.stop()


@pytest.fixture
def trust_devstack_ca(monkeypatch, ca_bundle):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_bundle))


@pytest.fixture(scope="module")
def admin(ws) -> WorkspaceClient:
    return WorkspaceClient(host=ws.url, token=PAT)


def _databricks_sp(admin: WorkspaceClient, name: str) -> tuple[str, str]:
    """A Databricks-managed service principal of the workspace with an OAuth secret: (app id, secret)."""
    sp = admin.service_principals.create(display_name=name)
    secret = admin.service_principal_secrets_proxy.create(sp.id)
    assert secret.secret and secret.id
    return sp.application_id, secret.secret


def _connection(monkeypatch, conn_id: str, **fields) -> str:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "databricks", **fields}))
    return conn_id


def _me(ws, token: str, **headers) -> requests.Response:
    return requests.get(
        f"{ws.url}/api/2.0/preview/scim/v2/Me",
        headers={"Authorization": f"Bearer {token}", **headers},
        timeout=10,
    )


# --------------------------------------------------------------------------- Databricks OAuth M2M


def test_provider_hook_lists_jobs_as_an_m2m_service_principal(ws, admin, monkeypatch, trust_devstack_ca):
    from airflow.providers.databricks.hooks.databricks import DatabricksHook

    admin.jobs.create(name="visible-to-the-sp")
    app_id, secret = _databricks_sp(admin, "airflow-dev")
    # As a production connection: host (here with the port), SP client id + OAuth secret, no schema.
    # The provider fetches https://{host}/oidc/v1/token: the workspace's port answers TLS too.
    conn = _connection(
        monkeypatch,
        "dbx_m2m",
        host=f"127.0.0.1:{ws.port}",
        login=app_id,
        password=secret,
        extra={"service_principal_oauth": True},
    )
    hook = DatabricksHook(databricks_conn_id=conn)

    names = [job["settings"]["name"] for job in hook.list_jobs()]

    assert "visible-to-the-sp" in names
    me = hook._do_api_call(("GET", "2.0/preview/scim/v2/Me"), {})
    assert me["userName"] == app_id and me["displayName"] == "airflow-dev"


def test_provider_hook_with_a_wrong_oauth_secret_is_refused_without_echoing_it(
    ws, admin, monkeypatch, trust_devstack_ca
):
    from airflow.exceptions import AirflowException
    from airflow.providers.databricks.hooks.databricks import DatabricksHook

    app_id, _secret = _databricks_sp(admin, "airflow-wrong-secret")
    wrong = "dose" + uuid.uuid4().hex
    conn = _connection(
        monkeypatch,
        "dbx_m2m_wrong",
        host=f"127.0.0.1:{ws.port}",
        login=app_id,
        password=wrong,
        extra={"service_principal_oauth": True},
    )

    with pytest.raises(AirflowException) as refused:
        DatabricksHook(databricks_conn_id=conn, retry_limit=1).list_jobs()

    text = str(refused.value)
    assert "Status Code: 401" in text and "invalid_client" in text
    assert f"not an OAuth secret of service principal {app_id}" in text
    assert wrong not in text


def test_sdk_oauth_m2m_signs_in_as_the_service_principal_with_a_home_folder(ws, admin):
    app_id, secret = _databricks_sp(admin, "sdk-m2m")

    w = WorkspaceClient(host=ws.url, client_id=app_id, client_secret=secret, auth_type="oauth-m2m")
    me = w.current_user.me()

    assert me.user_name == app_id and me.display_name == "sdk-m2m"
    assert w.workspace.get_status(f"/Users/{app_id}").object_type.value == "DIRECTORY"


def test_oidc_token_endpoint_refuses_unknown_clients_and_wrong_secrets(ws, admin):
    app_id, secret = _databricks_sp(admin, "oidc-errors")
    url = f"{ws.url}/oidc/v1/token"
    data = {"grant_type": "client_credentials", "scope": "all-apis"}

    unknown = str(uuid.uuid4())
    r = requests.post(url, data=data, auth=(unknown, secret), timeout=10)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert unknown in r.json()["error_description"] and "Add it" in r.json()["error_description"]
    assert secret not in r.text

    r = requests.post(url, data=data, auth=(app_id, secret + "x"), timeout=10)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert secret not in r.text

    r = requests.post(url, data=data, auth=(app_id, secret), timeout=10)
    assert r.status_code == 200 and r.json()["token_type"] == "Bearer" and r.json()["expires_in"] > 0
    assert _me(ws, r.json()["access_token"]).json()["userName"] == app_id


# --------------------------------------------------------------------------- Entra ID tokens


def test_entra_token_from_azure_identity_is_accepted_once_the_sp_is_added(
    ws, admin, entra, directory, trust_devstack_ca
):
    from azure.identity import ClientSecretCredential

    sp = directory.create_service_principal("mlops-entra-dev")
    credential = ClientSecretCredential(
        sp.tenant_id, sp.client_id, sp.secret, authority=entra.url, disable_instance_discovery=True
    )
    token = credential.get_token(f"{DATABRICKS_RESOURCE}/.default").token
    w = WorkspaceClient(host=ws.url, token=token)

    with pytest.raises(PermissionDenied) as refused:
        w.current_user.me()
    assert f"service principal {sp.client_id}" in str(refused.value) and "has not been added" in str(
        refused.value
    )

    admin.service_principals.create(application_id=sp.client_id, display_name=sp.display_name)
    me = w.current_user.me()

    assert me.user_name == sp.client_id and me.display_name == "mlops-entra-dev"
    assert w.workspace.get_status(f"/Users/{sp.client_id}").object_type.value == "DIRECTORY"


def test_entra_refuses_a_wrong_secret_and_an_unknown_app_without_echoing_the_secret(entra, directory):
    sp = directory.create_service_principal("entra-errors")
    url = f"http://127.0.0.1:{entra.port}/{sp.tenant_id}/oauth2/v2.0/token"
    form = {"grant_type": "client_credentials", "scope": f"{DATABRICKS_RESOURCE}/.default"}

    wrong = sp.secret[:-4] + "abcd"
    r = requests.post(url, data={**form, "client_id": sp.client_id, "client_secret": wrong}, timeout=10)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert r.json()["error_codes"] == [7000215] and sp.client_id in r.json()["error_description"]
    assert wrong not in r.text

    unknown = str(uuid.uuid4())
    r = requests.post(url, data={**form, "client_id": unknown, "client_secret": sp.secret}, timeout=10)
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"
    assert r.json()["error_codes"] == [700016] and unknown in r.json()["error_description"]
    assert sp.secret not in r.text


def test_entra_v1_endpoint_issues_a_databricks_token_with_entra_claims(entra, directory):
    import jwt

    sp = directory.create_service_principal("entra-v1")
    r = requests.post(
        f"http://127.0.0.1:{entra.port}/{sp.tenant_id}/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": sp.client_id,
            "client_secret": sp.secret,
            "resource": DATABRICKS_RESOURCE,
        },
        timeout=10,
    )
    assert r.status_code == 200, r.text
    jwks = requests.get(
        f"http://127.0.0.1:{entra.port}/{sp.tenant_id}/discovery/v2.0/keys", timeout=10
    ).json()
    token = r.json()["access_token"]
    key = jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == jwt.get_unverified_header(token)["kid"])).key
    claims = jwt.decode(token, key, algorithms=["RS256"], audience=DATABRICKS_RESOURCE)
    assert claims["iss"] == f"https://sts.windows.net/{sp.tenant_id}/"
    assert claims["appid"] == sp.client_id and claims["tid"] == sp.tenant_id and claims["oid"] == sp.object_id
    assert claims["nbf"] <= time.time() < claims["exp"]


@pytest.mark.parametrize(
    "case",
    ["expired", "foreign-signed", "wrong-audience", "other-tenant"],
)
def test_bad_entra_tokens_are_refused_naming_the_cause(ws, admin, directory, tmp_path, case):
    sp = directory.create_service_principal(f"bad-{case}")
    admin.service_principals.create(application_id=sp.client_id, display_name=sp.display_name)
    if case == "expired":
        token, _ = directory.issue(sp.client_id, sp.object_id, DATABRICKS_RESOURCE, now=time.time() - 7200)
        expected = "expired at"
    elif case == "foreign-signed":
        foreign = Directory(tmp_path / "foreign", tenant_id=directory.tenant_id)
        token, _ = foreign.issue(sp.client_id, sp.object_id, DATABRICKS_RESOURCE)
        expected = f"is not signed with a key of tenant {directory.tenant_id}"
    elif case == "wrong-audience":
        token, _ = directory.issue(sp.client_id, sp.object_id, MANAGEMENT_RESOURCE)
        expected = f"audience '{MANAGEMENT_RESOURCE}', expected {DATABRICKS_RESOURCE}"
    else:
        other = Directory(tmp_path / "other")
        other._key, other.kid = directory._key, directory.kid  # same key, another tenant's issuer
        token, _ = other.issue(sp.client_id, sp.object_id, DATABRICKS_RESOURCE)
        expected = f"not by tenant {directory.tenant_id}"

    r = _me(ws, token)

    assert r.status_code == 401, r.text
    assert r.json()["error_code"] == "UNAUTHENTICATED"
    assert expected in r.json()["message"]


def test_management_token_headers_let_a_contributor_in_without_being_added(ws, admin, entra, directory):
    sp = directory.create_service_principal("contributor")
    token, _ = directory.issue(sp.client_id, sp.object_id, DATABRICKS_RESOURCE)
    management, _ = directory.issue(sp.client_id, sp.object_id, MANAGEMENT_RESOURCE)

    wrong_workspace = _me(
        ws,
        token,
        **{
            "X-Databricks-Azure-SP-Management-Token": management,
            "X-Databricks-Azure-Workspace-Resource-Id": RESOURCE_ID + "-other",
        },
    )
    assert wrong_workspace.status_code == 403 and wrong_workspace.json()["error_code"] == "PERMISSION_DENIED"
    assert "is not this workspace" in wrong_workspace.json()["message"]

    r = _me(
        ws,
        token,
        **{
            "X-Databricks-Azure-SP-Management-Token": management,
            "X-Databricks-Azure-Workspace-Resource-Id": RESOURCE_ID,
        },
    )

    assert r.status_code == 200, r.text
    assert r.json()["userName"] == sp.client_id
    listed = [
        p.application_id for p in admin.service_principals.list(filter=f'applicationId eq "{sp.client_id}"')
    ]
    assert listed == [sp.client_id]


def test_provider_managed_identity_path_signs_in(ws, admin, entra, directory, monkeypatch, trust_devstack_ca):
    import airflow.providers.databricks.hooks.databricks_base as base
    from airflow.providers.databricks.hooks.databricks import DatabricksHook

    identity = directory.create_managed_identity("airflow-mi")
    admin.service_principals.create(application_id=identity.client_id, display_name=identity.display_name)
    # Azure's Instance Metadata Service lives at 169.254.169.254: point the provider at the stand-in's copy.
    monkeypatch.setattr(
        base, "AZURE_METADATA_SERVICE_INSTANCE_URL", f"http://127.0.0.1:{entra.port}/metadata/instance"
    )
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{entra.port}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", identity.secret)
    conn = _connection(
        monkeypatch,
        "dbx_mi",
        host=f"127.0.0.1:{ws.port}",
        extra={"use_azure_managed_identity": True, "azure_managed_identity_client_id": identity.client_id},
    )
    hook = DatabricksHook(databricks_conn_id=conn, retry_limit=1)

    me = hook._do_api_call(("GET", "2.0/preview/scim/v2/Me"), {})

    assert me["userName"] == identity.client_id and me["displayName"] == "airflow-mi"
    assert isinstance(hook.list_jobs(), list)


def test_unknown_and_missing_tokens_keep_databricks_answers(ws):
    assert _me(ws, "dapi-not-a-token").status_code == 403
    assert _me(ws, "dapi-not-a-token").json() == {
        "error_code": "PERMISSION_DENIED",
        "message": "Invalid access token.",
    }
    missing = requests.get(f"{ws.url}/api/2.0/preview/scim/v2/Me", timeout=10)
    assert missing.status_code == 401 and missing.json()["error_code"] == "UNAUTHENTICATED"


def test_an_expired_workspace_token_is_refused_as_unauthenticated(ws):
    with pytest.raises(Unauthenticated) as refused:
        WorkspaceClient(host=ws.url, token=_expired_token(ws)).current_user.me()
    assert "expired at" in str(refused.value)


def _expired_token(ws) -> str:
    """A workspace token already past its expiry, minted through the backend the notebook runtime uses."""
    from devstack.workspace.iam.backend import Identities
    from devstack.workspace.store import Store

    store = Store(ws.data_dir / "workspace.db")
    try:
        identities = Identities(store, workspace_name="signin", pat=PAT)
        return identities.issue_token(identities.admin, -1)
    finally:
        store.close()


def test_deferrable_road_signs_in_with_m2m_over_tls(ws, admin, ca_bundle, tmp_path):
    """The provider's async hook (triggers) fetches its OAuth token with aiohttp, which reads
    SSL_CERT_FILE when it is imported: run it in a process whose environment is Airflow's."""
    import os
    import subprocess
    import sys

    app_id, secret = _databricks_sp(admin, "triggerer")
    conn = {
        "conn_type": "databricks",
        "host": f"127.0.0.1:{ws.port}",
        "login": app_id,
        "password": secret,
        "extra": {"service_principal_oauth": True},
    }
    script = (
        "import asyncio, json\n"
        "from airflow.providers.databricks.hooks.databricks import DatabricksHook\n"
        "async def main():\n"
        "    async with DatabricksHook('dbx_async', retry_limit=1) as hook:\n"
        "        me = await hook._a_do_api_call(('GET', '2.0/preview/scim/v2/Me'), {})\n"
        "    print(json.dumps(me))\n"
        "asyncio.run(main())\n"
    )
    env = {
        **os.environ,
        "AIRFLOW_CONN_DBX_ASYNC": json.dumps(conn),
        "SSL_CERT_FILE": str(ca_bundle),
        "REQUESTS_CA_BUNDLE": str(ca_bundle),
    }
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["userName"] == app_id


def test_provider_default_azure_credential_path_signs_in_through_the_managed_identity(
    ws, admin, entra, directory, monkeypatch, trust_devstack_ca
):
    from airflow.providers.databricks.hooks.databricks import DatabricksHook

    identity = directory.create_managed_identity("airflow-default-credential")
    admin.service_principals.create(application_id=identity.client_id, display_name=identity.display_name)
    # Only the managed-identity leg of DefaultAzureCredential is configured: nothing else is tried.
    for var in ("AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{entra.port}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", identity.secret)
    conn = _connection(
        monkeypatch,
        "dbx_default_cred",
        host=f"127.0.0.1:{ws.port}",
        extra={"use_default_azure_credential": True},
    )

    me = DatabricksHook(databricks_conn_id=conn, retry_limit=1)._do_api_call(
        ("GET", "2.0/preview/scim/v2/Me"), {}
    )

    assert me["userName"] == identity.client_id
