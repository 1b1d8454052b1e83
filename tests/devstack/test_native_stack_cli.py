"""`python -m devstack up` (and `make up`): the Entra stand-in's port, and the CA Airflow trusts."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from devstack.processes import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_a_busy_entra_port_is_named_and_nothing_starts(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        workspaces = ",".join(str(free_port()) for _ in range(3))
        proc = subprocess.run(
            [
                *(sys.executable, "-m", "devstack", "--state-dir", str(tmp_path), "up"),
                *("--entra-port", str(port), "--mlflow-port", str(free_port())),
                *("--workspace-ports", workspaces),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"{port} (entra)" in proc.stderr and "already in use" in proc.stderr
    assert not (tmp_path / "stack.json").exists()


def test_airflow_components_trust_the_devstack_ca(tmp_path, monkeypatch):
    """`make up`'s Airflow reaches the workspaces over TLS: its env carries the CA bundle."""
    from devstack.airflow_stack import AirflowState, airflow_env

    state = AirflowState(tmp_path)
    state.home.mkdir(parents=True)
    bundle = tmp_path / "tls" / "ca-bundle.pem"
    stack = {
        "lake": str(tmp_path / "lake"),
        "ca_bundle": str(bundle),
        "mlflow": {"port": 5500},
        "workspaces": {
            name: {
                "port": 8001 + i,
                "token": "dapi-x",
                "service_principal": {"client_id": f"id-{name}", "oauth_secret": "dose-x"},
            }
            for i, name in enumerate(("dev", "staging", "prod"))
        },
    }
    env = airflow_env(state, stack, port=8080, db_url="sqlite://", user="admin", password="admin")
    assert env["REQUESTS_CA_BUNDLE"] == env["SSL_CERT_FILE"] == str(bundle)
    assert '"service_principal_oauth": true' in env["AIRFLOW_CONN_DATABRICKS_DEV"]
