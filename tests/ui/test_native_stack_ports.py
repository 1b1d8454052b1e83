"""`make up` (python -m devstack up --with-airflow) refuses a busy port by name, starting nothing."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from devstack.processes import free_port
from tests.ui.conftest import ROOT, _our_processes


@pytest.fixture
def busy_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def _up(state_dir, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "devstack", "--state-dir", str(state_dir), "up", "--with-airflow", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def _free_workspace_ports() -> str:
    return ",".join(str(free_port()) for _ in range(3))


def test_busy_airflow_port_is_named_and_nothing_starts(tmp_path, busy_port):
    proc = _up(
        tmp_path,
        "--airflow-port",
        str(busy_port),
        "--mlflow-port",
        str(free_port()),
        "--workspace-ports",
        _free_workspace_ports(),
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"Port {busy_port} (Airflow api-server) is already in use" in proc.stderr
    assert "--airflow-port" in proc.stderr  # ...and says how to choose another
    assert not (tmp_path / "stack.json").exists() and not (tmp_path / "airflow.json").exists()
    assert not _our_processes(str(tmp_path))


def test_busy_mlflow_port_is_named_and_nothing_starts(tmp_path, busy_port):
    proc = _up(
        tmp_path,
        "--airflow-port",
        str(free_port()),
        "--mlflow-port",
        str(busy_port),
        "--workspace-ports",
        _free_workspace_ports(),
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{busy_port} (mlflow)" in proc.stderr and "already in use" in proc.stderr
    assert not (tmp_path / "stack.json").exists() and not (tmp_path / "airflow.json").exists()
    assert not _our_processes(str(tmp_path))
