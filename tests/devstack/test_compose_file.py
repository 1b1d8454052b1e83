"""docker-compose.yaml cannot run here (no Docker engine): check what can be checked."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def test_every_service_has_a_healthcheck_and_loopback_ports():
    for name, service in COMPOSE["services"].items():
        assert "healthcheck" in service, name
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)


def test_one_workspace_per_environment_of_the_config():
    from include.config import load_config

    environments = set(load_config(overlay="")["environments"])
    workspaces = {n.removeprefix("workspace-") for n in COMPOSE["services"] if n.startswith("workspace-")}
    assert workspaces == environments
    for name in environments:
        command = COMPOSE["services"][f"workspace-{name}"]["command"]
        assert f"--name {name}" in command and "--mlflow-tracking-uri http://mlflow:5000" in command


def test_published_ports_match_the_native_devstack():
    from devstack.stack import DEFAULT_PORTS

    for name, port in DEFAULT_PORTS.items():
        service = COMPOSE["services"]["mlflow" if name == "mlflow" else f"workspace-{name}"]
        published = re.match(r"127\.0\.0\.1:\$\{\w+:-(\d+)\}:", service["ports"][0]).group(1)
        assert int(published) == port, name
