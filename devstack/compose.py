"""What docker-compose.yaml shares with `python -m devstack up`.

The compose stack takes the road ``devstack up`` takes: an Entra ID stand-in, workspaces that
speak TLS with certificates from the devstack CA (on the ``tls`` volume) and trust the stand-in's
tenant, one Unity Catalog metastore and the config's storage accounts on the ``lake`` volume, and
Airflow signing in to each workspace as that environment's service principal (OAuth M2M).

Compose cannot run code to learn a secret before Airflow starts, so the principals' client ids
and secrets are compose variables with local defaults (:class:`Variable`); the connections are
static environment entries, rendered by ``compose_connection_env()`` with the same function
``devstack up`` uses (:func:`devstack.stack.connection_env`), and tests/devstack/test_compose_file.py
checks that the file says exactly that. ``python -m devstack.compose init`` is the one-shot
``devstack-init``: it registers those principals (Entra application, workspace service principal,
Databricks OAuth secret of the given value), writes the CA bundle Airflow trusts, creates the
Unity Catalog objects, seeds the lake, imports the notebooks, and checks both sign-in roads.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from devstack import tls
from devstack.stack import ENVIRONMENTS, azure_resource_id, connection_env, import_notebooks, seed_lake

# Inside the compose network every service listens on its image's port.
WORKSPACE_PORT = 8000
MLFLOW_PORT = 5000
ENTRA_PORT = 8400
# Where the volumes are mounted in the containers.
LAKE = "/lake"
TLS_DIR = "/tls"
ENTRA_DIR = "/entra"
CA_BUNDLE = f"{TLS_DIR}/{tls.BUNDLE}"
ENTRA_URL = f"https://entra:{ENTRA_PORT}"


@dataclass(frozen=True)
class Variable:
    """A compose variable with its local default: ``${NAME:-default}`` in the file."""

    name: str
    default: str

    def __str__(self) -> str:
        return f"${{{self.name}:-{self.default}}}"

    def value(self, environ: Mapping[str, str] | None = None) -> str:
        """What compose substitutes: the variable when set and not empty, else the default."""
        environ = os.environ if environ is None else environ
        return environ.get(self.name) or self.default


TENANT_ID = Variable("ENTRA_TENANT_ID", "de7e1057-0000-4000-8000-00000000000a")


def token(name: str) -> Variable:
    """The personal access token of workspace ``name``'s admin (health checks and init only)."""
    return Variable(f"DEVSTACK_TOKEN_{name.upper()}", f"dapi-devstack-{name}")


def sp_client_id(name: str) -> Variable:
    """The application (client) id of environment ``name``'s service principal."""
    return Variable(
        f"DEVSTACK_SP_CLIENT_ID_{name.upper()}",
        f"5e1f0000-0000-4000-8000-{ENVIRONMENTS.index(name) + 1:012d}",
    )


def sp_oauth_secret(name: str) -> Variable:
    """Its Databricks OAuth secret: what Airflow's connection signs in with (OAuth M2M)."""
    return Variable(f"DEVSTACK_SP_OAUTH_SECRET_{name.upper()}", f"dose-devstack-{name}-local-only")


def sp_entra_secret(name: str) -> Variable:
    """Its Entra client secret: for a connection that signs in through Entra ID instead."""
    return Variable(f"DEVSTACK_SP_ENTRA_SECRET_{name.upper()}", f"{name[:3]}8Q~devstack-entra-local-only")


def compose_stack() -> dict:
    """A stack record, as ``devstack up`` writes one, for the compose services."""
    return {
        "lake": LAKE,
        "git_sha": "${GIT_SHA:-unknown}",
        "mlflow": {"host": "mlflow", "port": MLFLOW_PORT},
        "entra": {"host": "entra", "port": ENTRA_PORT, "tenant_id": str(TENANT_ID)},
        "ca_bundle": CA_BUNDLE,
        "workspaces": {
            name: {
                "host": f"workspace-{name}",
                "port": WORKSPACE_PORT,
                "token": str(token(name)),
                "service_principal": {
                    "client_id": str(sp_client_id(name)),
                    "oauth_secret": str(sp_oauth_secret(name)),
                },
            }
            for name in ENVIRONMENTS
        },
    }


def workspace_signin_args(name: str) -> str:
    """The TLS and Entra flags of compose workspace ``name`` (those ``devstack up`` gives it)."""
    return " ".join(
        [
            *("--tls-ca-dir", TLS_DIR, "--tls-name", f"workspace-{name}"),
            *("--entra-url", ENTRA_URL, "--entra-tenant-id", str(TENANT_ID)),
            *("--entra-ca-file", f"{TLS_DIR}/{tls.CA_CERT}"),
            *("--azure-resource-id", azure_resource_id(name)),
        ]
    )


def workspace_storage_args() -> str:
    """The storage flags every compose workspace needs: the shared metastore and the lake's
    storage accounts, on the ``lake`` volume (see :mod:`devstack.lake`)."""
    from devstack import lake
    from include.config import load_config

    args = ["--metastore-dir", f"{LAKE}/metastore"]
    for account in lake.storage_accounts(load_config(overlay="")):
        args += ["--storage-account", f"{account}={LAKE}/{account}"]
    return " ".join(args)


def compose_connection_env() -> dict[str, str]:
    from include.config import load_config

    return connection_env(compose_stack(), load_config(overlay=""))


def _wait(url: str, admin_token: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    req = urllib.request.Request(
        f"{url}/api/2.0/clusters/list", headers={"Authorization": f"Bearer {admin_token}"}
    )
    while True:
        try:
            urllib.request.urlopen(req, timeout=5).close()
            return
        except (OSError, urllib.error.HTTPError) as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"workspace {url} did not answer within {timeout:.0f}s: {exc}") from exc
            time.sleep(2)


def register_service_principal(name: str, url: str, directory, environ: Mapping[str, str]) -> dict[str, str]:
    """Environment ``name``'s principal, with the client id and secrets the compose variables give:
    an Entra application, added to its workspace (SCIM) with a Databricks OAuth secret. Idempotent."""
    from databricks.sdk import WorkspaceClient

    client_id = sp_client_id(name).value(environ).lower()
    display_name = f"mlops-{name}"
    directory.add_service_principal(client_id, sp_entra_secret(name).value(environ), display_name)
    admin = WorkspaceClient(host=url, token=token(name).value(environ))
    added = list(admin.service_principals.list(filter=f'applicationId eq "{client_id}"'))
    if not added:
        added = [admin.service_principals.create(application_id=client_id, display_name=display_name)]
    admin.api_client.do(
        "POST",
        f"/api/2.0/devstack/service-principals/{added[0].id}/secrets",
        body={"secret": sp_oauth_secret(name).value(environ)},
    )
    return {"client_id": client_id, "workspace_id": added[0].id}


def check_signin(name: str, url: str, entra_url: str, bundle: Path, environ: Mapping[str, str]) -> None:
    """Sign in to workspace ``name`` over TLS as its principal, both ways Airflow can: Databricks
    OAuth M2M (the connection's way) and an Entra ID token. Raises naming what failed."""
    import requests

    from devstack.entra.backend import DATABRICKS_RESOURCE

    https = "https://" + url.split("://", 1)[1]
    client_id = sp_client_id(name).value(environ).lower()
    roads = {
        "Databricks OAuth M2M": (
            f"{https}/oidc/v1/token",
            {"grant_type": "client_credentials", "scope": "all-apis"},
            (client_id, sp_oauth_secret(name).value(environ)),
        ),
        "Entra ID": (
            f"{entra_url}/{TENANT_ID.value(environ)}/oauth2/v2.0/token",
            {"grant_type": "client_credentials", "scope": f"{DATABRICKS_RESOURCE}/.default"},
            (client_id, sp_entra_secret(name).value(environ)),
        ),
    }
    for road, (token_url, form, auth) in roads.items():
        answer = requests.post(token_url, data=form, auth=auth, verify=str(bundle), timeout=30)
        if answer.status_code != 200:
            raise SystemExit(
                f"{name}: {road} token from {token_url} refused: {answer.status_code} {answer.text}"
            )
        me = requests.get(
            f"{https}/api/2.0/preview/scim/v2/Me",
            headers={"Authorization": f"Bearer {answer.json()['access_token']}"},
            verify=str(bundle),
            timeout=30,
        )
        if me.status_code != 200 or me.json().get("userName") != client_id:
            raise SystemExit(f"{name}: {road} sign-in to {https} failed: {me.status_code} {me.text}")


def init(
    lake: Path,
    *,
    tls_dir: Path = Path(TLS_DIR),
    entra_dir: Path = Path(ENTRA_DIR),
    entra_url: str = ENTRA_URL,
    workspaces: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """The compose one-shot: principals, CA bundle, Unity Catalog, lake, notebooks, sign-in check.

    ``workspaces`` maps environment -> plain-http URL (default: the compose service names);
    ``environ`` holds the compose variables (default: this process's environment).
    """
    from devstack import lake as lake_layout
    from devstack.entra.backend import Directory
    from devstack.stack import load_project_config_for

    environ = os.environ if environ is None else environ
    urls = dict(workspaces or {n: f"http://workspace-{n}:{WORKSPACE_PORT}" for n in ENVIRONMENTS})
    # Airflow runs as uid 50000 and reads the bundle; the CA key stays 0600 (devstack.tls).
    bundle = tls.ca_bundle(tls_dir)
    tls_dir.chmod(0o755)
    bundle.chmod(0o644)
    print(f"CA bundle {bundle}", flush=True)
    directory = Directory(entra_dir, TENANT_ID.value(environ))

    config = load_project_config_for(lake)
    folder = config["jobs"]["notebook_dir"]
    for name, url in urls.items():
        _wait(url, token(name).value(environ))
        sp = register_service_principal(name, url, directory, environ)
        print(f"{name}: service principal {sp['client_id']} (workspace id {sp['workspace_id']})", flush=True)
        if name == next(iter(urls)):  # one metastore: the catalogs, schemas, volumes the config names
            lake_layout.ensure_unity_catalog(url, token(name).value(environ), config)
        count = import_notebooks(url, token(name).value(environ), folder)
        print(f"{name}: {count} files imported into {folder}", flush=True)
    for account_dir in lake_layout.account_dirs(lake, config).values():
        account_dir.mkdir(parents=True, exist_ok=True)
    seed_lake(lake, config, lake / "metastore")
    print(f"lake seeded at {lake}", flush=True)
    for name, url in urls.items():
        check_signin(name, url, entra_url, bundle, environ)
        print(f"{name}: its service principal signs in over TLS (OAuth M2M and Entra ID)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.compose", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    init_cmd = sub.add_parser("init", help="register the principals, seed the lake, import the notebooks")
    init_cmd.add_argument("--lake", type=Path, default=Path(LAKE))
    init_cmd.add_argument("--tls-dir", type=Path, default=Path(TLS_DIR), help="the devstack CA's directory")
    init_cmd.add_argument(
        "--entra-dir", type=Path, default=Path(ENTRA_DIR), help="the Entra stand-in's data dir"
    )
    init_cmd.add_argument("--entra-url", default=ENTRA_URL)
    sub.add_parser("env", help="print the Airflow connection environment of the compose stack")
    args = parser.parse_args(argv)
    if args.command == "init":
        init(args.lake, tls_dir=args.tls_dir, entra_dir=args.entra_dir, entra_url=args.entra_url)
    else:
        for key, value in compose_connection_env().items():
            print(f"{key}: '{value}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
