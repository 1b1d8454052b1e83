"""`devstack up` signs Airflow in as production does: one service principal per environment.

Starts the whole devstack (on free ports) once, checks the connections it writes work through
the provider's hook as that environment's service principal, and that a restart reuses them.
"""

from __future__ import annotations

import json
import stat

import pytest
import requests

from devstack import stack as devstack
from devstack.processes import free_port


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("devstack-identity")
    yield path
    devstack.down(path, quiet=True)


def _up(state_dir):
    ports = {"mlflow": free_port(), "dev": free_port(), "staging": free_port(), "prod": free_port()}
    return devstack.up(state_dir, ports=ports, use_postgres=False, quiet=True)


def test_up_creates_a_service_principal_per_environment_and_connections_sign_in_with_them(
    state_dir, monkeypatch
):
    from airflow.providers.databricks.hooks.databricks import DatabricksHook

    stack = _up(state_dir)
    config = devstack.load_project_config_for(state_dir / "lake")
    env = devstack.connection_env(stack, config)

    principals_file = state_dir / devstack.SERVICE_PRINCIPALS
    assert stat.S_IMODE(principals_file.stat().st_mode) == 0o600
    principals = json.loads(principals_file.read_text())
    assert set(principals) == {"dev", "staging", "prod"}
    assert len({p["client_id"] for p in principals.values()}) == 3
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for name in ("dev", "staging", "prod"):
        conn_id = config["environments"][name]["databricks_conn_id"]
        conn = json.loads(env[f"AIRFLOW_CONN_{conn_id.upper()}"])
        # Production's shape: service principal sign-in; only the host differs.
        assert conn["extra"] == {"service_principal_oauth": True} and "schema" not in conn
        assert conn["login"] == principals[name]["client_id"]
        hook = DatabricksHook(databricks_conn_id=conn_id, retry_limit=1)
        me = hook._do_api_call(("GET", "2.0/preview/scim/v2/Me"), {})
        assert (me["userName"], me["displayName"]) == (principals[name]["client_id"], f"mlops-{name}")
        assert isinstance(hook.list_jobs(), list)
    # Each principal is added to its own workspace only.
    dev_conn = json.loads(env[f"AIRFLOW_CONN_{config['environments']['dev']['databricks_conn_id'].upper()}"])
    prod_url = stack["workspaces"]["prod"]["url"]
    token = requests.post(
        f"{prod_url}/oidc/v1/token",
        data={"grant_type": "client_credentials", "scope": "all-apis"},
        auth=(dev_conn["login"], dev_conn["password"]),
        timeout=10,
    )
    assert token.status_code == 401 and "no service principal" in token.json()["error_description"]


def test_a_restart_reuses_the_service_principals(state_dir):
    before = json.loads((state_dir / devstack.SERVICE_PRINCIPALS).read_text())
    devstack.down(state_dir, quiet=True)

    _up(state_dir)

    after = json.loads((state_dir / devstack.SERVICE_PRINCIPALS).read_text())
    assert {n: p["client_id"] for n, p in after.items()} == {n: p["client_id"] for n, p in before.items()}
    assert {n: p["oauth_secret"] for n, p in after.items()} == {
        n: p["oauth_secret"] for n, p in before.items()
    }
