"""The compose one-shot (`python -m devstack.compose init`) outside Docker, against real processes.

No Docker engine runs here, so the init runs in-process against an Entra stand-in and a
workspace started as compose starts them (TLS from the shared CA, the stand-in's tenant, the
storage flags), on 127.0.0.1. What it must achieve: the static connection of docker-compose.yaml,
with its local defaults, signs in through the provider's hook as the service principal.
"""

from __future__ import annotations

import json
import re
import stat

import pytest
import requests

from devstack import compose, lake
from devstack.entra.backend import Directory
from devstack.services import start_entra, start_workspace


def _interpolate_defaults(text: str) -> str:
    """What compose makes of ${VAR:-default} with no .env file."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", text)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("compose-init")
    tls_dir, lake_dir = root / "tls", root / "lake"
    entra = start_entra(root / "entra", tenant_id=compose.TENANT_ID.default, tls_dir=tls_dir)
    storage = lake.workspace_args(lake_dir, lake_dir / "metastore", lake.base_config())
    try:
        ws = start_workspace(
            "dev",
            root / "workspace-dev",
            token=compose.token("dev").default,
            extra_args=[
                *("--tls-ca-dir", str(tls_dir)),
                *("--entra-url", entra.url, "--entra-tenant-id", compose.TENANT_ID.default),
                *("--entra-ca-file", str(tls_dir / "ca.pem")),
                *storage,
            ],
        )
    except BaseException:
        entra.stop()
        raise
    yield {"root": root, "tls": tls_dir, "lake": lake_dir, "entra": entra, "ws": ws}
    ws.stop()
    entra.stop()


def _init(stack, monkeypatch):
    compose.init(
        stack["lake"],
        tls_dir=stack["tls"],
        entra_dir=stack["entra"].data_dir,
        entra_url=stack["entra"].url,
        workspaces={"dev": stack["ws"].url},
        environ={},  # no .env file: the local defaults
    )


def test_the_compose_connection_signs_in_as_the_principal_init_registered(stack, monkeypatch):
    from airflow.providers.databricks.hooks.databricks import DatabricksHook

    _init(stack, monkeypatch)

    bundle = stack["tls"] / "ca-bundle.pem"
    # Airflow's image runs as uid 50000: the bundle must be world-readable, the CA key not.
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o644
    assert stat.S_IMODE((stack["tls"] / "ca-key.pem").stat().st_mode) == 0o600
    env = compose.compose_connection_env()
    conn = json.loads(_interpolate_defaults(env["AIRFLOW_CONN_DATABRICKS_DEV"]))
    # The file's connection as it is, but at this test's address instead of workspace-dev:8000.
    conn["host"] = f"127.0.0.1:{stack['ws'].port}"
    monkeypatch.setenv("AIRFLOW_CONN_DATABRICKS_DEV", json.dumps(conn))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    hook = DatabricksHook(databricks_conn_id="databricks_dev", retry_limit=1)
    me = hook._do_api_call(("GET", "2.0/preview/scim/v2/Me"), {})
    assert (me["userName"], me["displayName"]) == (compose.sp_client_id("dev").default, "mlops-dev")
    # The notebooks are there for the principal to run, and the lake is seeded.
    folder = lake.base_config()["jobs"]["notebook_dir"]
    listed = hook._do_api_call(("GET", "2.0/workspace/list"), {"path": folder})["objects"]
    assert {o["object_type"] for o in listed} >= {"NOTEBOOK"}
    assert any(stack["lake"].rglob("*.csv"))


def test_init_again_changes_nothing(stack, monkeypatch):
    _init(stack, monkeypatch)  # a second `docker compose up` on the same volumes
    _init(stack, monkeypatch)

    ws = stack["ws"]
    admin = {"Authorization": f"Bearer {compose.token('dev').default}"}
    sps = requests.get(
        f"{ws.url}/api/2.0/preview/scim/v2/ServicePrincipals",
        params={"filter": f'applicationId eq "{compose.sp_client_id("dev").default}"'},
        headers=admin,
        timeout=10,
    ).json()["Resources"]
    assert len(sps) == 1
    secrets = requests.get(
        f"{ws.url}/api/2.0/accounts/servicePrincipals/{sps[0]['id']}/credentials/secrets",
        headers=admin,
        timeout=10,
    ).json()["secrets"]
    assert len(secrets) == 1
    app = Directory(stack["entra"].data_dir).application(compose.sp_client_id("dev").default)
    assert len(app["secret_digests"]) == 1


def test_only_the_workspace_admin_may_choose_a_secret_value(stack, monkeypatch):
    _init(stack, monkeypatch)
    ws = stack["ws"]
    token = requests.post(
        f"{ws.url}/oidc/v1/token",
        data={"grant_type": "client_credentials", "scope": "all-apis"},
        auth=(compose.sp_client_id("dev").default, compose.sp_oauth_secret("dev").default),
        timeout=10,
    ).json()["access_token"]
    sps = requests.get(
        f"{ws.url}/api/2.0/preview/scim/v2/ServicePrincipals",
        headers={"Authorization": f"Bearer {compose.token('dev').default}"},
        timeout=10,
    ).json()["Resources"]
    answer = requests.post(
        f"{ws.url}/api/2.0/devstack/service-principals/{sps[0]['id']}/secrets",
        json={"secret": "dose-chosen-by-the-principal-itself"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 403
    assert answer.json()["error_code"] == "PERMISSION_DENIED"
    assert "workspace admin" in answer.json()["message"]
    # A too-short value is refused naming the rule, even for the admin.
    short = requests.post(
        f"{ws.url}/api/2.0/devstack/service-principals/{sps[0]['id']}/secrets",
        json={"secret": "short"},
        headers={"Authorization": f"Bearer {compose.token('dev').default}"},
        timeout=10,
    )
    assert short.status_code == 400 and "at least 16 characters" in short.json()["message"]
