"""Run the Entra ID stand-in in the foreground.

    python -m devstack.entra --port 8400 --data-dir DIR [--tenant-id GUID] [--tls-dir DIR]

Prints ``entra ready https://HOST:PORT tenant <id>`` once it accepts requests. The same port
speaks plain HTTP too (the managed-identity endpoint is http on Azure's hosts as well).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from devstack import tls
from devstack.entra.api import serve
from devstack.entra.backend import Directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.entra", description=__doc__.split("\n")[1])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--data-dir", type=Path, required=True, help="tenant, identities and signing key")
    parser.add_argument("--tenant-id", default=None, help="the tenant GUID (default: generated once)")
    parser.add_argument(
        "--tls-dir", type=Path, default=None, help="the devstack CA's directory (default: <data-dir>/tls)"
    )
    parser.add_argument("--tls-name", action="append", default=[], help="extra host name for the certificate")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    data_dir = args.data_dir.resolve()
    directory = Directory(data_dir, args.tenant_id)
    tls_dir = (args.tls_dir or data_dir / "tls").resolve()
    cert, key = tls.issue_server_cert(
        tls_dir, data_dir / "cert", [*tls.DEFAULT_NAMES, args.host, *args.tls_name]
    )
    server = serve(args.host, args.port, directory, tls.server_context(cert, key))
    port = server.server_address[1]

    def _stop(signum, _frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"entra ready https://{args.host}:{port} tenant {directory.tenant_id}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    print("entra stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
