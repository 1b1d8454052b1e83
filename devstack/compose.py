"""What docker-compose.yaml shares with `python -m devstack up`.

``compose_connection_env()`` renders the Airflow connections of the compose stack with the
same function ``devstack up`` uses (:func:`devstack.stack.connection_env`), pointed at the
compose service names; tests/devstack/test_compose_file.py checks that the file says exactly
that. ``python -m devstack.compose init`` is the compose one-shot ``devstack-init``: it seeds
the lake volume and imports the notebooks into every workspace, as ``devstack up`` does.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from devstack.stack import ENVIRONMENTS, connection_env, import_notebooks, seed_lake

# Inside the compose network every service listens on its image's port.
WORKSPACE_PORT = 8000
MLFLOW_PORT = 5000
LAKE = "/lake"


def token_variable(name: str) -> str:
    """The compose variable (with its local default) holding workspace ``name``'s token."""
    return f"${{DEVSTACK_TOKEN_{name.upper()}:-dapi-devstack-{name}}}"


def compose_stack() -> dict:
    """A stack record, as ``devstack up`` writes one, for the compose services."""
    return {
        "lake": LAKE,
        "git_sha": "${GIT_SHA:-unknown}",
        "mlflow": {"host": "mlflow", "port": MLFLOW_PORT},
        "workspaces": {
            name: {"host": f"workspace-{name}", "port": WORKSPACE_PORT, "token": token_variable(name)}
            for name in ENVIRONMENTS
        },
    }


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


def _wait(url: str, token: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    req = urllib.request.Request(f"{url}/api/2.0/clusters/list", headers={"Authorization": f"Bearer {token}"})
    while True:
        try:
            urllib.request.urlopen(req, timeout=5).close()
            return
        except (OSError, urllib.error.HTTPError) as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"workspace {url} did not answer within {timeout:.0f}s: {exc}") from exc
            time.sleep(2)


def init(lake: Path) -> None:
    """Seed the lake and import include/notebooks into each workspace (tokens from the env)."""
    from devstack.lake import ensure_unity_catalog
    from include.config import load_config

    os.environ.setdefault("DEVSTACK_LAKE", str(lake))
    config = load_config(overlay="devstack")
    folder = config["jobs"]["notebook_dir"]
    for name in ENVIRONMENTS:
        url = f"http://workspace-{name}:{WORKSPACE_PORT}"
        token = os.environ.get(f"DEVSTACK_TOKEN_{name.upper()}", f"dapi-devstack-{name}")
        _wait(url, token)
        if name == ENVIRONMENTS[0]:  # one metastore: the catalogs, schemas, volumes the config names
            ensure_unity_catalog(url, token, config)
        count = import_notebooks(url, token, folder)
        print(f"{name}: {count} files imported into {folder}", flush=True)
    seed_lake(lake, config, lake / "metastore")
    print(f"lake seeded at {lake}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.compose", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    init_cmd = sub.add_parser("init", help="seed the lake and import the notebooks (compose one-shot)")
    init_cmd.add_argument("--lake", type=Path, default=Path(LAKE))
    sub.add_parser("env", help="print the Airflow connection environment of the compose stack")
    args = parser.parse_args(argv)
    if args.command == "init":
        init(args.lake)
    else:
        for key, value in compose_connection_env().items():
            print(f"{key}: '{value}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
