"""`python -m devstack up|down|status`: the local stand-in for the cloud, as background processes.

``up`` starts an MLflow server (PostgreSQL backend when one answers on 127.0.0.1:5432, SQLite
otherwise), the Entra ID stand-in and one emulated workspace per environment of include/config
(dev, staging, prod), creates one service principal per environment (added to its workspace,
with an OAuth secret; ``<state>/service-principals.json``), copies the sample data into a local
"lake", imports the notebooks into every workspace, and writes the Airflow connections
(service-principal sign-in, as in production) to ``<state>/airflow.env``. ``down`` stops every process it
started, children included. State (registry, runs, lake) survives a ``down``/``up`` cycle.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from devstack import lake as lake_layout
from devstack import tls
from devstack.processes import group_alive, port_in_use, stop_group
from devstack.services import (
    Service,
    create_postgres_database,
    drop_postgres_database,
    postgres_available,
    start_entra,
    start_mlflow_server,
    start_workspace,
)

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS = ("dev", "staging", "prod")
DEFAULT_PORTS = {"mlflow": 5500, "dev": 8001, "staging": 8002, "prod": 8003}
NOTEBOOKS = ROOT / "include" / "notebooks"
SAMPLE_DATA = ROOT / "include" / "data"


class StackError(RuntimeError):
    """The devstack cannot start (busy port, broken state) or is not running."""


@dataclass
class StackState:
    """What ``up`` started, as written to ``<state>/stack.json``."""

    state_dir: Path

    @property
    def file(self) -> Path:
        return self.state_dir / "stack.json"

    @property
    def env_file(self) -> Path:
        return self.state_dir / "airflow.env"

    @property
    def lake(self) -> Path:
        return self.state_dir / "lake"

    @property
    def metastore(self) -> Path:
        """The Unity Catalog metastore every workspace shares (catalogs, volumes, model storage)."""
        return self.state_dir / "metastore"

    def read(self) -> dict | None:
        if not self.file.exists():
            return None
        return json.loads(self.file.read_text())

    def write(self, data: dict) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.file.write_text(json.dumps(data, indent=2))
        self.file.chmod(0o600)  # it holds the workspaces' tokens and the principals' secrets


def connection_env(stack: dict, config: dict) -> dict[str, str]:
    """AIRFLOW_CONN_* and settings that point the lifecycle DAGs at a running devstack.

    Entries of ``stack`` may name a ``host`` (docker-compose service names); 127.0.0.1 otherwise.
    """
    env: dict[str, str] = {}
    for name in ENVIRONMENTS:
        ws = stack["workspaces"][name]
        conn_id = config["environments"][name]["databricks_conn_id"]
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(_databricks_connection(ws))
    mlflow_conn = config["registry"]["mlflow_conn_id"]
    env[f"AIRFLOW_CONN_{mlflow_conn.upper()}"] = json.dumps(
        {
            "conn_type": "http",
            "host": stack["mlflow"].get("host", "127.0.0.1"),
            "port": stack["mlflow"]["port"],
            "schema": "http",
        }
    )
    if stack.get("ca_bundle"):
        # The workspaces' TLS certificates come from the devstack CA (see devstack.tls).
        env["REQUESTS_CA_BUNDLE"] = env["SSL_CERT_FILE"] = stack["ca_bundle"]
    env["MLOPS_CONFIG_OVERLAY"] = "devstack"
    env["AIRFLOW_VAR_MLOPS_GIT_SHA"] = stack.get("git_sha", "unknown")
    return env


def _databricks_connection(ws: dict) -> dict:
    """A workspace's Databricks connection: its service principal's OAuth M2M sign-in when it has one.

    As a production connection: host, the principal's client id and Databricks OAuth secret,
    ``service_principal_oauth``. The port rides in the host because the provider fetches its
    token from ``https://{host}/oidc/v1/token`` (no port, no schema of its own); the workspace's
    port speaks TLS for it. Without a service principal (docker-compose today): the token.
    """
    sp = ws.get("service_principal")
    if sp:
        return {
            "conn_type": "databricks",
            "host": f"{ws.get('host', '127.0.0.1')}:{ws['port']}",
            "login": sp["client_id"],
            "password": sp["oauth_secret"],
            "extra": {"service_principal_oauth": True},
        }
    return {
        "conn_type": "databricks",
        "host": ws.get("host", "127.0.0.1"),
        "port": ws["port"],
        "schema": "http",
        "password": ws["token"],
    }


def _git_sha() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def seed_lake(lake: Path, config: dict | None = None, metastore_dir: Path | None = None) -> dict[str, Path]:
    """Copy include/data's sample trees to where include/config's paths point (see devstack.lake)."""
    from devstack import lake as lake_layout

    config = config if config is not None else load_project_config_for(lake)
    return lake_layout.seed_lake(lake, config, metastore_dir)


def import_notebooks(url: str, token: str, folder: str) -> int:
    """Import include/notebooks (notebooks and the lifecycle package as workspace files)."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.workspace import ImportFormat

    client = WorkspaceClient(host=url, token=token)
    count = 0
    for path in sorted(NOTEBOOKS.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        relative = path.relative_to(NOTEBOOKS)
        target = f"{folder.rstrip('/')}/{relative.as_posix()}"
        client.workspace.mkdirs(target.rsplit("/", 1)[0])
        # AUTO: a .py with the notebook header becomes a notebook (named without .py), others files.
        client.workspace.import_(
            target,
            content=base64.b64encode(path.read_bytes()).decode(),
            format=ImportFormat.AUTO,
            overwrite=True,
        )
        count += 1
    return count


def _check_ports(ports: dict[str, int]) -> None:
    busy = [f"{port} ({what})" for what, port in ports.items() if port_in_use(port)]
    if busy:
        raise StackError(
            f"Port(s) {', '.join(busy)} already in use on 127.0.0.1. Stop what listens there "
            "(`python -m devstack status` shows whether it is an earlier devstack; `python -m devstack down` "
            "stops it) or choose other ports with --mlflow-port / --workspace-ports."
        )


def status(state_dir: Path) -> dict | None:
    """The recorded stack with, for each process, whether it is alive."""
    stack = StackState(state_dir).read()
    if stack is None:
        return None
    for _, entry in _processes(stack):
        entry["alive"] = group_alive(entry["pgid"])
    return stack


def _processes(stack: dict) -> list[tuple[str, dict]]:
    """(name, record) of every process the stack runs."""
    rows = [("mlflow", stack["mlflow"])] if stack.get("mlflow") else []
    if stack.get("entra"):
        rows.append(("entra", stack["entra"]))
    return rows + list(stack.get("workspaces", {}).items())


def up(
    state_dir: Path,
    *,
    ports: dict[str, int] | None = None,
    use_postgres: bool | None = None,
    cluster_start_seconds: float = 0.0,
    fault_rate: float = 0.0,
    quiet: bool = False,
) -> dict:
    """Start the devstack in the background; return the stack record (see :func:`connection_env`)."""
    say = (lambda *a: None) if quiet else print
    state = StackState(state_dir)
    current = status(state_dir)
    if current and all(e["alive"] for _, e in _processes(current)):
        say(f"devstack already running (state in {state_dir}); refreshing notebooks, data and env file")
        sync(state, current, say)
        return current
    if current:
        down(state_dir, quiet=True)

    ports = {**DEFAULT_PORTS, **(ports or {})}
    _check_ports(ports)
    started: list[Service] = []
    try:
        if use_postgres is None:
            use_postgres = postgres_available()
        backend = create_postgres_database(_mlflow_database(state_dir)) if use_postgres else None
        mlflow = start_mlflow_server(
            state_dir / "mlflow", port=ports["mlflow"], backend_store_uri=backend, detached=True
        )
        started.append(mlflow)
        say(f"  MLflow             {mlflow.url}  ({'PostgreSQL' if use_postgres else 'SQLite'} backend)")
        tls_dir = state_dir / "tls"
        # Entra's port is whatever is free unless given: clients find it in stack.json.
        entra = start_entra(state_dir / "entra", port=ports.get("entra"), tls_dir=tls_dir, detached=True)
        started.append(entra)
        tenant_id = _entra_directory(state_dir).tenant_id
        say(f"  Entra ID stand-in  {entra.url}  (tenant {tenant_id})")
        cert, key = tls.issue_server_cert(tls_dir, tls_dir / "workspaces")
        tokens = _tokens(state_dir)
        workspaces = {}
        extra = ["--cluster-start-seconds", str(cluster_start_seconds), "--fault-rate", str(fault_rate)]
        # One Unity Catalog metastore for all workspaces; a lake dir per storage account of the config.
        extra += lake_layout.workspace_args(state.lake, state.metastore, load_project_config_for(state.lake))
        for name in ENVIRONMENTS:
            signin = [
                *("--entra-url", entra.url, "--entra-tenant-id", tenant_id),
                *("--entra-ca-file", str(tls_dir / tls.CA_CERT)),
                *("--azure-resource-id", azure_resource_id(name)),
                *("--tls-cert", str(cert), "--tls-key", str(key)),
            ]
            ws = start_workspace(
                name,
                state_dir / f"workspace-{name}",
                token=tokens[name],
                port=ports[name],
                mlflow_tracking_uri=mlflow.url,
                extra_args=extra + signin,
                detached=True,
            )
            started.append(ws)
            workspaces[name] = ws
            say(f"  {name + ' workspace':18} {ws.url}")
        stack = {
            "state_dir": str(state_dir),
            "lake": str(state.lake),
            "git_sha": _git_sha(),
            "mlflow": {
                "url": mlflow.url,
                "port": mlflow.port,
                "pgid": mlflow.process.pid,
                "backend": "postgresql" if use_postgres else "sqlite",
            },
            "entra": {
                "url": entra.url,
                "port": entra.port,
                "pgid": entra.process.pid,
                "tenant_id": tenant_id,
            },
            "ca_bundle": str(tls.ca_bundle(tls_dir)),
            "workspaces": {
                name: {"url": ws.url, "port": ws.port, "token": ws.token, "pgid": ws.process.pid}
                for name, ws in workspaces.items()
            },
        }
        principals = ensure_service_principals(state_dir, stack)
        for name, sp in principals.items():
            stack["workspaces"][name]["service_principal"] = {
                "client_id": sp["client_id"],
                "oauth_secret": sp["oauth_secret"],
            }
        say(
            f"  service principals {state_dir / SERVICE_PRINCIPALS}  (one per environment, added to its workspace)"
        )
        state.write(stack)
        sync(state, stack, say)
        return stack
    except BaseException:
        for service in reversed(started):
            service.stop()
        state.file.unlink(missing_ok=True)
        raise


def sync(state: StackState, stack: dict, say=print) -> None:
    """Bring a running stack up to date with the project: notebooks, sample data, env file."""
    config = load_project_config_for(state.lake)
    first = next(iter(stack["workspaces"].values()))
    created = lake_layout.ensure_unity_catalog(first["url"], first["token"], config)
    if created:
        say(f"  Unity Catalog      created {', '.join(created)} (one metastore: {state.metastore})")
    seed_lake(state.lake, config, state.metastore)
    folder = config["jobs"]["notebook_dir"]
    imported = 0
    for ws in stack["workspaces"].values():
        imported = import_notebooks(ws["url"], ws["token"], folder)
    say(f"  notebooks          {imported} files imported into {folder} of each workspace")
    env = connection_env(stack, config)
    state.env_file.write_text("".join(f"{k}='{v}'\n" for k, v in env.items()))
    state.env_file.chmod(0o600)
    say(f"  lake               {state.lake}")
    say(f"  Airflow env        {state.env_file}  ({', '.join(sorted(env))})")


def load_project_config_for(lake: Path) -> dict:
    """include/config as the devstack's Airflow reads it (the overlay changes tuning only; the
    data paths are environments.yaml's volumes, which ``lake`` backs)."""
    from include.config import load_config

    return load_config(overlay="devstack")


def _mlflow_database(state_dir: Path) -> str:
    """The PostgreSQL database of this state dir's MLflow (new state dir, new database)."""
    path = state_dir / "mlflow-database"
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(f"mlops_devstack_{secrets.token_hex(4)}")
    return path.read_text().strip()


SERVICE_PRINCIPALS = "service-principals.json"


def azure_resource_id(name: str) -> str:
    """The Azure resource id the devstack gives workspace ``name`` (management-token headers)."""
    return (
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/devstack/providers/"
        f"Microsoft.Databricks/workspaces/{name}"
    )


def _entra_directory(state_dir: Path):
    from devstack.entra.backend import Directory

    return Directory(state_dir / "entra")


def ensure_service_principals(state_dir: Path, stack: dict) -> dict[str, dict]:
    """One Entra service principal per environment, added to its workspace with a Databricks OAuth secret.

    Kept in ``<state>/service-principals.json`` (mode 600): per environment the Entra client id,
    client secret and tenant (the Entra road), and the Databricks OAuth secret (the M2M road the
    connections use). What is missing - a principal the tenant or workspace no longer knows, a
    deleted secret - is created again; what exists is reused.
    """
    from databricks.sdk import WorkspaceClient

    path = state_dir / SERVICE_PRINCIPALS
    known = json.loads(path.read_text()) if path.exists() else {}
    directory = _entra_directory(state_dir)
    principals = {}
    for name in ENVIRONMENTS:
        ws = stack["workspaces"][name]
        sp = dict(known.get(name) or {})
        if (
            sp.get("tenant_id") != directory.tenant_id
            or directory.application(sp.get("client_id", "")) is None
        ):
            created = directory.create_service_principal(f"mlops-{name}")
            sp = created.as_dict()
        admin = WorkspaceClient(host=ws["url"], token=ws["token"])
        added = list(admin.service_principals.list(filter=f'applicationId eq "{sp["client_id"]}"'))
        if not added:
            added = [
                admin.service_principals.create(
                    application_id=sp["client_id"], display_name=sp["display_name"]
                )
            ]
        sp["workspace_id"] = added[0].id
        secret_ids = {s.id for s in admin.service_principal_secrets_proxy.list(added[0].id)}
        if sp.get("oauth_secret_id") not in secret_ids:
            secret = admin.service_principal_secrets_proxy.create(added[0].id)
            sp.update(oauth_secret=secret.secret, oauth_secret_id=secret.id)
        sp.update(workspace_url=ws["url"], azure_resource_id=azure_resource_id(name))
        principals[name] = sp
    path.write_text(json.dumps(principals, indent=2))
    path.chmod(0o600)
    return principals


def _tokens(state_dir: Path) -> dict[str, str]:
    """One bearer token per workspace, kept across restarts of the stack."""
    path = state_dir / "tokens.json"
    if path.exists():
        return json.loads(path.read_text())
    tokens = {name: "dapi" + secrets.token_hex(16) for name in ENVIRONMENTS}
    state_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(tokens))
    path.chmod(0o600)
    return tokens


def down(state_dir: Path, *, quiet: bool = False, purge: bool = False) -> bool:
    """Stop every process ``up`` started (whole process groups). False if nothing was recorded.

    ``purge`` also deletes the state: the state dir and the MLflow PostgreSQL database.
    """
    state = StackState(state_dir)
    stack = state.read()
    if stack is None and not quiet:
        print(f"devstack is not running (no {state.file})")
    for name, entry in reversed(_processes(stack or {})):
        if entry:
            stop_group(entry["pgid"])
            if not quiet:
                print(f"  stopped {name} (process group {entry['pgid']})")
    state.file.unlink(missing_ok=True)
    if purge:
        database = state_dir / "mlflow-database"
        if database.exists() and postgres_available():
            drop_postgres_database(database.read_text().strip())
        shutil.rmtree(state_dir, ignore_errors=True)
        if not quiet:
            print(f"  deleted {state_dir}")
    return stack is not None


def print_status(state_dir: Path) -> int:
    stack = status(state_dir)
    if stack is None:
        print(f"devstack is not running (no {StackState(state_dir).file})")
        return 1
    rows = _processes(stack)
    for name, entry in rows:
        print(
            f"  {name:8} {entry['url']:28} {'running' if entry['alive'] else 'STOPPED'}  (pgid {entry['pgid']})"
        )
    print(f"  env file {StackState(state_dir).env_file}")
    return 0 if all(entry["alive"] for _, entry in rows) else 1
