"""Launchers for the devstack's services, shared by the tests and `python -m devstack`."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from devstack.processes import ManagedProcess, free_port, start_process, wait_for_http

POSTGRES_DSN = os.environ.get("DEVSTACK_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def _bin(name: str) -> str:
    """The console script ``name`` of the interpreter running us (the project's .venv)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def postgres_available(dsn: str = POSTGRES_DSN) -> bool:
    """True when a PostgreSQL server answers at ``dsn`` (trust auth on loopback)."""
    try:
        import psycopg2
    except ImportError:
        return False
    try:
        psycopg2.connect(dsn, connect_timeout=2).close()
    except psycopg2.OperationalError:
        return False
    return True


def create_postgres_database(name: str, dsn: str = POSTGRES_DSN, *, drop_existing: bool = False) -> str:
    """Create database ``name`` on the server of ``dsn``; return a SQLAlchemy URL for it.

    The URL names the psycopg2 driver: SQLAlchemy 2.1 would otherwise pick psycopg 3.
    """
    import psycopg2

    conn = psycopg2.connect(dsn, connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            if drop_existing:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
    base = dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg2://", 1)
    return f"{base}/{name}"


def drop_postgres_database(name: str, dsn: str = POSTGRES_DSN) -> None:
    """Drop database ``name`` (closing its connections first)."""
    import psycopg2

    conn = psycopg2.connect(dsn, connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()


@dataclass
class Service:
    """A started devstack service: its URL and the process behind it."""

    name: str
    url: str
    process: ManagedProcess
    data_dir: Path
    token: str | None = None

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self) -> None:
        self.process.stop()


def start_mlflow_server(
    data_dir: Path,
    *,
    port: int | None = None,
    backend_store_uri: str | None = None,
    name: str = "mlflow",
    startup_timeout: float = 90.0,
    detached: bool = False,
) -> Service:
    """Run a real ``mlflow server`` on 127.0.0.1 with a SQLite (default) or given backend store."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    backend = backend_store_uri or f"sqlite:///{data_dir / 'mlflow.db'}"
    cmd = [
        _bin("mlflow"),
        "server",
        "--backend-store-uri",
        backend,
        "--artifacts-destination",
        str(data_dir / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = start_process(
        name, cmd, log_path=data_dir / f"{name}.log", env=env, cwd=data_dir, detached=detached
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/health", startup_timeout, proc)
    except Exception:
        proc.stop()
        raise
    return Service(name=name, url=url, process=proc, data_dir=data_dir)


def start_workspace(
    name: str,
    data_dir: Path,
    *,
    token: str,
    port: int | None = None,
    mlflow_tracking_uri: str | None = None,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    startup_timeout: float = 60.0,
    detached: bool = False,
) -> Service:
    """Run ``python -m devstack.workspace`` and wait for its ``ready`` line."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    cmd = [
        sys.executable,
        "-m",
        "devstack.workspace",
        "--name",
        name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--token",
        token,
    ]
    if mlflow_tracking_uri:
        cmd += ["--mlflow-tracking-uri", mlflow_tracking_uri]
    cmd += extra_args or []
    project_root = Path(__file__).resolve().parent.parent
    proc_env = {**os.environ, **(env or {})}
    proc_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(project_root), proc_env.get("PYTHONPATH", "")) if p
    )
    proc = start_process(
        f"workspace-{name}",
        cmd,
        log_path=data_dir / "workspace.log",
        env=proc_env,
        cwd=project_root,
        detached=detached,
    )
    try:
        match = proc.wait_for_line(r"ready (http://\S+)", startup_timeout)
    except Exception:
        proc.stop()
        raise
    return Service(name=name, url=match.group(1), process=proc, data_dir=data_dir, token=token)


def start_entra(
    data_dir: Path,
    *,
    port: int | None = None,
    tenant_id: str | None = None,
    tls_dir: Path | None = None,
    tls_names: list[str] | None = None,
    startup_timeout: float = 30.0,
    detached: bool = False,
) -> Service:
    """Run ``python -m devstack.entra`` (the Entra ID stand-in) and wait for its ``ready`` line.

    The returned service's ``url`` is https (TLS from the devstack CA in ``tls_dir``); the same
    port answers plain http, which the managed-identity endpoint uses.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    cmd = [sys.executable, "-m", "devstack.entra", "--port", str(port), "--data-dir", str(data_dir)]
    if tenant_id:
        cmd += ["--tenant-id", tenant_id]
    if tls_dir:
        cmd += ["--tls-dir", str(tls_dir)]
    for name in tls_names or []:
        cmd += ["--tls-name", name]
    project_root = Path(__file__).resolve().parent.parent
    env = {**os.environ}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(project_root), env.get("PYTHONPATH", "")) if p)
    proc = start_process(
        "entra", cmd, log_path=data_dir / "entra.log", env=env, cwd=project_root, detached=detached
    )
    try:
        proc.wait_for_line(r"entra ready (https://\S+) tenant (\S+)", startup_timeout)
    except Exception:
        proc.stop()
        raise
    return Service(name="entra", url=f"https://127.0.0.1:{port}", process=proc, data_dir=data_dir)
