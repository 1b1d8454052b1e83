"""Airflow itself as native processes next to the devstack (`make up` / `make down`).

``up`` starts the devstack (MLflow + workspaces, see :mod:`devstack.stack`) and then the four
Airflow 3 components - api-server, scheduler, dag-processor, triggerer (LocalExecutor) - each
in its own process group, on 127.0.0.1. The metadata DB is PostgreSQL when it answers on
127.0.0.1:5432, SQLite otherwise. Login goes through the SimpleAuthManager with one local
user whose password is in ``<state>/airflow/passwords.json``. ``down`` stops every group.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from devstack import stack as devstack
from devstack.airflow_runner import ROOT, VENV_BIN, AirflowRunner
from devstack.processes import ProcessStartError, group_alive, port_in_use, start_process, stop_group
from devstack.services import create_postgres_database, drop_postgres_database, postgres_available

DEFAULT_PORT = 8080
DEFAULT_USER = "admin"
DEFAULT_PASSWORD = "admin"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# What /api/v2/monitor/health reports for each component besides the api-server itself.
HEALTH_KEYS = ("metadatabase", "scheduler", "triggerer", "dag_processor")


@dataclass
class AirflowState:
    state_dir: Path

    @property
    def home(self) -> Path:
        return self.state_dir / "airflow"

    @property
    def file(self) -> Path:
        return self.state_dir / "airflow.json"

    def read(self) -> dict | None:
        return json.loads(self.file.read_text()) if self.file.exists() else None


def _persistent_secret(path: Path) -> str:
    """A random secret kept in the state dir, so restarts keep logins and task tokens valid."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _database_url(state: AirflowState, use_postgres: bool) -> str:
    if not use_postgres:
        return f"sqlite:///{state.home / 'airflow.db'}"
    name_file = state.state_dir / "airflow-database"
    if not name_file.exists():
        name_file.write_text(f"mlops_airflow_{secrets.token_hex(4)}")
    return create_postgres_database(name_file.read_text().strip())


def airflow_env(
    state: AirflowState, stack: dict, *, port: int, db_url: str, user: str, password: str
) -> dict:
    """The environment of every Airflow component: settings, auth, devstack connections."""
    home = state.home
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({user: password}))
    passwords.chmod(0o600)
    config = devstack.load_project_config_for(Path(stack["lake"]))
    base_url = f"http://127.0.0.1:{port}"
    extra = {
        **devstack.connection_env(stack, config),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{user}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__SECRET_KEY": _persistent_secret(home / "secret_key"),
        "AIRFLOW__API_AUTH__JWT_SECRET": _persistent_secret(home / "jwt_secret"),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        # A local stack is live: the asset chain train -> release -> batch_score needs the
        # downstream DAGs unpaused, and nobody should have to click them on first.
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        # New DAG files show up within seconds while developing.
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
    }
    return AirflowRunner(home, db_url).env(ROOT / "dags", extra)


def check_port(port: int) -> None:
    if port_in_use(port):
        raise devstack.StackError(
            f"Port {port} (Airflow api-server) is already in use on 127.0.0.1. Stop what listens "
            f"there (`make down` if it is an earlier `make up`) or choose another port with "
            f"`python -m devstack up --with-airflow --airflow-port PORT`."
        )


def health(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=3) as resp:
            return json.load(resp)
    except (OSError, ValueError, urllib.error.HTTPError):
        return None


def wait_healthy(port: int, procs: dict, timeout: float) -> None:
    """Until the api-server reports every component healthy; a component that dies fails fast."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if not proc.alive():
                raise ProcessStartError(f"Airflow {name} exited; see {proc.log_path}:\n{proc.tail()}")
        last = health(port)
        if last and all((last.get(k) or {}).get("status") == "healthy" for k in HEALTH_KEYS):
            return
        time.sleep(1)
    raise ProcessStartError(
        f"Airflow on 127.0.0.1:{port} was not healthy within {timeout:.0f}s (last health: {last}); "
        f"logs in {next(iter(procs.values())).log_path.parent}"
    )


def up(
    state_dir: Path,
    *,
    port: int = DEFAULT_PORT,
    ports: dict[str, int] | None = None,
    use_postgres: bool | None = None,
    user: str = DEFAULT_USER,
    password: str = DEFAULT_PASSWORD,
    timeout: float = 240,
    quiet: bool = False,
    extra_env: dict[str, str] | None = None,
) -> dict:
    """Start the devstack and Airflow; return the record written to ``<state>/airflow.json``.

    ``extra_env`` goes last into every component's environment (e.g. another config overlay).
    """
    say = (lambda *a: None) if quiet else print
    state = AirflowState(state_dir)
    if (current := state.read()) and all(group_alive(p) for p in current["pgids"].values()):
        say(f"Airflow already running at {current['url']}")
        return current
    stop(state_dir)
    # Check every port before starting anything, so a busy one leaves nothing behind.
    check_port(port)
    stack = devstack.up(state_dir, ports=ports, use_postgres=use_postgres, quiet=quiet)
    procs = {}
    try:
        if use_postgres is None:
            use_postgres = postgres_available()
        state.home.mkdir(parents=True, exist_ok=True)
        db_url = _database_url(state, use_postgres)
        env = airflow_env(state, stack, port=port, db_url=db_url, user=user, password=password)
        env.update(extra_env or {})
        say(f"  Airflow DB         {'PostgreSQL' if use_postgres else 'SQLite'} (migrating...)")
        migrate = subprocess.run(
            [str(VENV_BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True, cwd=ROOT
        )
        if migrate.returncode != 0:
            raise ProcessStartError(
                f"airflow db migrate failed:\n{migrate.stdout[-2000:]}{migrate.stderr[-2000:]}"
            )
        for name in COMPONENTS:
            cmd = [str(VENV_BIN / "airflow"), name]
            if name == "api-server":
                cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
            procs[name] = start_process(
                f"airflow-{name}",
                cmd,
                log_path=state.home / "logs" / f"{name}.log",
                env=env,
                cwd=ROOT,
                detached=True,
            )
        record = {
            "url": f"http://127.0.0.1:{port}",
            "port": port,
            "user": user,
            "password": password,
            "password_file": str(state.home / "passwords.json"),
            "database": "postgresql" if use_postgres else "sqlite",
            "pgids": {name: p.pid for name, p in procs.items()},
        }
        state.file.write_text(json.dumps(record, indent=2))
        wait_healthy(port, procs, timeout)
    except BaseException:
        for proc in procs.values():
            proc.stop()
        state.file.unlink(missing_ok=True)
        devstack.down(state_dir, quiet=True)
        raise
    say(f"  Airflow            {record['url']}  (api-server, scheduler, dag-processor, triggerer)")
    say(f"  login              {user} / {password}")
    return record


def print_status(state_dir: Path) -> int | None:
    """One line per Airflow component; None when `up --with-airflow` is not recorded."""
    record = AirflowState(state_dir).read()
    if record is None:
        return None
    alive = {name: group_alive(pgid) for name, pgid in record["pgids"].items()}
    for name, pgid in record["pgids"].items():
        print(f"  {name:13} {record['url']:28} {'running' if alive[name] else 'STOPPED'}  (pgid {pgid})")
    return 0 if all(alive.values()) else 1


def stop(state_dir: Path, *, quiet: bool = True) -> bool:
    """Stop the Airflow process groups only (the devstack keeps running)."""
    state = AirflowState(state_dir)
    record = state.read()
    if record is None:
        return False
    for name, pgid in record["pgids"].items():
        stop_group(pgid, timeout=20)
        if not quiet:
            print(f"  stopped airflow {name} (process group {pgid})")
    state.file.unlink(missing_ok=True)
    return True


def down(state_dir: Path, *, purge: bool = False, quiet: bool = False) -> None:
    """Stop Airflow and the devstack; ``purge`` also drops their databases and state."""
    stop(state_dir, quiet=quiet)
    name_file = state_dir / "airflow-database"
    if purge and name_file.exists() and postgres_available():
        drop_postgres_database(name_file.read_text().strip())
    devstack.down(state_dir, purge=purge, quiet=quiet)
    if purge:
        shutil.rmtree(state_dir, ignore_errors=True)
