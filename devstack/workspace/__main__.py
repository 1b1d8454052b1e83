"""Run one emulated Databricks workspace in the foreground.

    python -m devstack.workspace --name dev --host 127.0.0.1 --port 8001 --data-dir DIR --token TOKEN

Prints ``ready http://HOST:PORT`` once it accepts requests; SIGTERM or SIGINT stops it and
every driver process it started.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path

from devstack.workspace.app import Workspace
from devstack.workspace.context import WorkspaceContext
from devstack.workspace.http.server import serve
from devstack.workspace.store import Store


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devstack.workspace", description=__doc__.split("\n")[1])
    parser.add_argument("--name", required=True, help="workspace name, e.g. dev, staging, prod")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument(
        "--data-dir", type=Path, required=True, help="state, notebooks, DBFS and logs live here"
    )
    parser.add_argument("--token", required=True, help="the bearer token clients must send")
    parser.add_argument(
        "--mlflow-tracking-uri",
        default=None,
        help="the MLflow server behind this workspace's MLflow API (tracking and the Unity Catalog registry)",
    )
    parser.add_argument(
        "--cluster-start-seconds", type=float, default=0.0, help="extra delay of each cluster start (PENDING)"
    )
    parser.add_argument(
        "--max-parallel-runs", type=int, default=8, help="task runs executing at once; the rest queue"
    )
    parser.add_argument(
        "--fault-rate", type=float, default=0.0, help="fraction of API calls answered 429/503"
    )
    parser.add_argument(
        "--config", type=Path, default=None, help='JSON file: {"clusters": [all-purpose cluster specs]}'
    )
    parser.add_argument(
        "--public-url",
        default=None,
        help="URL browsers reach this workspace at, for run_page_url (e.g. behind a published port)",
    )
    parser.add_argument(
        "--metastore-dir",
        type=Path,
        default=None,
        help="Unity Catalog metastore shared by workspaces (default: <data-dir>/metastore)",
    )
    parser.add_argument(
        "--storage-account",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="map abfss://<container>@NAME.dfs.core.windows.net/<path> to DIR/<container>/<path> (repeatable)",
    )
    parser.add_argument(
        "--serving-idle-seconds",
        type=float,
        default=1800.0,
        help="Model Serving: idle seconds before a scale-to-zero served entity stops (cold start next)",
    )
    _add_signin_args(parser)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if not 0 <= args.fault_rate < 1:
        parser.error("--fault-rate must be in [0, 1)")
    if args.max_parallel_runs < 1:
        parser.error("--max-parallel-runs must be at least 1")
    if args.cluster_start_seconds < 0:
        parser.error("--cluster-start-seconds must not be negative")
    return args


def _add_signin_args(parser: argparse.ArgumentParser) -> None:
    """Sign-in beyond --token: Entra ID tokens of one tenant (devstack.workspace.iam) and TLS."""
    parser.add_argument(
        "--entra-url",
        default=None,
        help="Entra ID authority whose JWKS signs accepted tokens (the devstack's stand-in)",
    )
    parser.add_argument("--entra-tenant-id", default=None, help="the tenant whose tokens are accepted")
    parser.add_argument("--entra-ca-file", default=None, help="CA file to trust for an https --entra-url")
    parser.add_argument(
        "--azure-resource-id",
        default=None,
        help="this workspace's Azure resource id, checked against X-Databricks-Azure-Workspace-Resource-Id",
    )
    parser.add_argument(
        "--tls-cert", default=None, help="PEM certificate chain: the port then also speaks TLS"
    )
    parser.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    parser.add_argument(
        "--tls-ca-dir",
        default=None,
        help="without --tls-cert: issue this workspace's certificate from the devstack CA in this directory",
    )
    parser.add_argument(
        "--tls-name", action="append", default=[], help="host name for the issued certificate (repeatable)"
    )


def _issue_certificate(args: argparse.Namespace, data_dir: Path) -> None:
    """--tls-ca-dir: a certificate for 127.0.0.1, localhost and --tls-name, signed by the devstack CA."""
    if args.tls_ca_dir and not args.tls_cert:
        from devstack import tls

        names = [*tls.DEFAULT_NAMES, *args.tls_name]
        cert, key = tls.issue_server_cert(Path(args.tls_ca_dir), data_dir / "tls", names)
        args.tls_cert, args.tls_key = str(cert), str(key)


def _attach_storage(ctx: WorkspaceContext, args: argparse.Namespace) -> None:
    """Open the shared Unity Catalog metastore and the abfss:// storage accounts of the workspace."""
    from devstack.workspace.runtime.fs import abfss_to_local, parse_storage_accounts
    from devstack.workspace.unity_catalog.backend import Metastore

    try:
        ctx.storage_accounts = parse_storage_accounts(args.storage_account)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    metastore_dir = (args.metastore_dir or ctx.data_dir / "metastore").resolve()
    ctx.metastore = Metastore(metastore_dir, lambda url: abfss_to_local(url, ctx.storage_accounts))
    ctx.on_shutdown.append(ctx.metastore.close)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    data_dir = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    config = json.loads(args.config.read_text()) if args.config else {}
    _issue_certificate(args, data_dir)
    ctx = WorkspaceContext(
        name=args.name,
        host=args.host,
        port=args.port,
        data_dir=data_dir,
        token=args.token,
        store=Store(data_dir / "workspace.db"),
        mlflow_tracking_uri=args.mlflow_tracking_uri,
        cluster_start_seconds=args.cluster_start_seconds,
        max_parallel_runs=args.max_parallel_runs,
        fault_rate=args.fault_rate,
        clusters=config.get("clusters", []),
        public_url=args.public_url,
        entra_url=args.entra_url,
        entra_tenant_id=args.entra_tenant_id,
        entra_ca_file=args.entra_ca_file,
        azure_resource_id=args.azure_resource_id,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        serving_idle_seconds=args.serving_idle_seconds,
    )
    _attach_storage(ctx, args)
    workspace = Workspace(ctx)
    server = serve(workspace)

    stopping = threading.Event()

    def _stop(signum, _frame):
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"workspace {ctx.name} ready {ctx.base_url}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        workspace.close()
    print(f"workspace {ctx.name} stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
